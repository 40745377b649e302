#!/usr/bin/env python3
"""Train the AutoencoderKL (f=8, 4 latent channels) on freshly generated images.

Data: 70% "base" shape images (seeds 1,000,000+) and 30% "generic" drawings (random
polygons, ellipses, rings, lines; no hearts); --outline-frac moves part of the base share to
outline-style pictures, random 64x64 crops on the 8-px grid,
random flips / 90-degree rotations. Every batch is a pure function of the step.
Loss: MSE + L1 on pixels in [-1,1] + kl_weight * KL; posterior sampling noise ramped in
over the first 300 steps. bf16 autocast (fp32 master weights), AdamW, EMA 0.999.
Resumable: re-running the same command continues from <out>/ckpt.pt.

  python tools/embedded/train_vae.py --out /work/train/vae --steps 4000
"""
import argparse
import os
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from common import (EMA, VAE_CONFIG, load_ckpt, log, lr_factor, psnr, rng_state, save_ckpt, seed_all,
                    set_rng_state, setup_threads, to_tensor_img, to_uint8)
import shapes_data as sd


def vae_batch(step, bs, crop, outline_frac=0.0):
    xs = []
    for i in range(bs):
        seed = step * bs + i
        r = random.Random(f"vaemix:{seed}")
        u = r.random()
        s = sd.sample(1_000_000 + seed, "generic" if u < 0.3 else "outline" if u < 0.3 + outline_frac else "base")
        im = s["image"]
        if crop < 128:
            oy, ox = r.randrange(0, 128 - crop + 1, 8), r.randrange(0, 128 - crop + 1, 8)
            im = im[oy:oy + crop, ox:ox + crop]
        if r.random() < 0.5:
            im = im[:, ::-1]
        im = np.rot90(im, r.randrange(4))
        xs.append(np.ascontiguousarray(im))
    return to_tensor_img(np.stack(xs))


class Batches(IterableDataset):
    def __init__(self, start, total, bs, crop, outline_frac=0.0):
        self.start, self.total, self.bs, self.crop, self.outline_frac = start, total, bs, crop, outline_frac

    def __iter__(self):
        for st in range(self.start, self.total):
            yield vae_batch(st, self.bs, self.crop, self.outline_frac)


def eval_set(n=32):
    ims = [sd.sample(i, "base")["image"] for i in range(5_000_000, 5_000_000 + n * 3 // 4)]
    ims += [sd.sample(i, "generic")["image"] for i in range(5_000_000, 5_000_000 + n // 4)]
    return np.stack(ims)


@torch.no_grad()
def eval_psnr(vae, ims):
    vae.eval()
    x = to_tensor_img(ims)
    out = []
    for k in range(0, len(x), 16):
        z = vae.encode(x[k:k + 16]).latent_dist.mode()
        out.append(to_uint8(vae.decode(z).sample))
    vae.train()
    rec = np.concatenate(out)
    nb = len(ims) * 3 // 4
    return psnr(ims[:nb], rec[:nb]), psnr(ims[nb:], rec[nb:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/train/vae")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--bf16", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decoder-only-from", default=None,
                    help="checkpoint to continue from with the ENCODER FROZEN (its EMA weights), so the latent "
                         "space (and a UNet trained on it) stays valid; keeps the AdamW state, new LR schedule")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--stop-at", type=int, default=0, help="stop (and save) at this step; the schedule still follows --steps")
    ap.add_argument("--const-frac", type=float, default=0.6)
    ap.add_argument("--outline-frac", type=float, default=0.0,
                    help="share of outline-style pictures in the batches (taken from the base share), so the "
                         "decoder learns to draw the rings of small outlined shapes")
    args = ap.parse_args()
    setup_threads(2)
    os.makedirs(args.out, exist_ok=True)
    seed_all(args.seed)
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(**VAE_CONFIG)
    log("VAE params", sum(p.numel() for p in vae.parameters()))
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ema = EMA(vae.parameters(), 0.999)
    step = 0
    ck = load_ckpt(os.path.join(args.out, "ckpt.pt"))
    if args.decoder_only_from:
        enc_params = list(vae.encoder.parameters()) + list(vae.quant_conv.parameters())
        if not ck:  # first start: EMA weights of the source run (the ones that encoded the latent cache)
            src = load_ckpt(args.decoder_only_from)
            vae.load_state_dict(src["model"])
            for p, sh in zip(vae.parameters(), src["ema"]):
                p.data.copy_(sh)
            opt.load_state_dict(src["opt"])
            ema = EMA(vae.parameters(), 0.999)
            log("decoder-only continuation from", args.decoder_only_from, "step", src["step"])
        for p in enc_params:
            p.requires_grad_(False)
    if ck:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema"])
        step = ck["step"]
        set_rng_state(ck["rng"])
        log("resumed at step", step)
    evims = eval_set()
    loader = DataLoader(Batches(step, args.steps, args.bs, args.crop, args.outline_frac), batch_size=None, num_workers=1,
                        prefetch_factor=4, persistent_workers=False)
    import time
    t0, acc, nacc = time.time(), 0.0, 0
    for x in loader:
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, args.warmup, args.steps, const_frac=args.const_frac, floor=0.05)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(args.bf16)):
            post = vae.encode(x).latent_dist
            ramp = 1.0 if args.decoder_only_from else min(1.0, step / 300)
            z = post.mean + ramp * post.std * torch.randn_like(post.mean)
            y = vae.decode(z).sample
        y = y.float()
        rec = ((y - x) ** 2).mean() + (y - x).abs().mean()
        kl = post.kl().float().mean()
        loss = rec + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        ema.update(step)
        step += 1
        acc += rec.item()
        nacc += 1
        if step % 50 == 0:
            log(f"step {step} rec {acc / nacc:.4f} kl {kl.item():.1f} lr {opt.param_groups[0]['lr']:.2e} "
                f"{(time.time() - t0) / nacc:.2f}s/step")
            acc, nacc, t0 = 0.0, 0, time.time()
        stop = bool(args.stop_at) and step >= args.stop_at
        if step % args.ckpt_every == 0 or step == args.steps or stop:
            save_ckpt(os.path.join(args.out, "ckpt.pt"), dict(model=vae.state_dict(), opt=opt.state_dict(),
                                                              ema=ema.state_dict(), step=step, rng=rng_state(),
                                                              args=vars(args)))
        if step % args.eval_every == 0 or step == args.steps:
            p_raw = eval_psnr(vae, evims)
            bk = [p.detach().clone() for p in vae.parameters()]
            ema.copy_to(vae.parameters())
            p_ema = eval_psnr(vae, evims)
            for p, b in zip(vae.parameters(), bk):
                p.data.copy_(b)
            log(f"EVAL step {step} PSNR base/generic raw {p_raw[0]:.2f}/{p_raw[1]:.2f}  ema {p_ema[0]:.2f}/{p_ema[1]:.2f}")
        if stop:
            break
    log("done", step)


if __name__ == "__main__":
    main()
