#!/usr/bin/env python3
"""Train a LoRA (kohya/sd-scripts key format) on top of the exported base model.

  # style LoRA: outlined shapes, same captions as the base data (no trigger word), UNet only
  python tools/embedded/train_lora.py --name outline --cache /work/train/cache/outline.pt \
      --out /work/train/lora_outline --steps 800
  # concept LoRA: hearts (a shape and a word the base model never saw), UNet + text encoder,
  # with 25% base images as regularisation
  python tools/embedded/train_lora.py --name heart --cache /work/train/cache/heart.pt \
      --reg-cache /work/train/cache/base.pt --reg-frac 0.25 --te-lora 1 --out /work/train/lora_heart --steps 800

LoRA on nn.Linear layers: UNet attention to_q/to_k/to_v/to_out.0 and ff.net.0.proj/ff.net.2
(attn1 + attn2 of every transformer block); text encoder q/k/v/out_proj, fc1, fc2 (if --te-lora).
Resumable from <out>/ckpt.pt. Export: tools/embedded/export.py lora.
"""
import argparse
import os
import time

import torch

from common import EMA, load_ckpt, log, lr_factor, rng_state, save_ckpt, seed_all, set_rng_state, setup_threads
from encode_latents import tokenize
from lora import TE_TARGETS, UNET_CONV_TARGETS, UNET_TARGETS, inject, kohya_state, lora_params
from train_unet import alphas_cumprod

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--base", default=os.path.join(REPO, "models/shapes-sd"))
    ap.add_argument("--cache", required=True)
    ap.add_argument("--reg-cache", default=None)
    ap.add_argument("--reg-frac", type=float, default=0.0)
    ap.add_argument("--reg-n", type=int, default=4000)
    ap.add_argument("--te-lora", type=int, default=0)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--conv", type=int, default=0, help="1: also LoCon on the resnet 3x3 convs and proj_in/proj_out")
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--te-lr", type=float, default=5e-4)
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--offset-noise", type=float, default=0.1)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--trigger", default="")
    ap.add_argument("--description", default="")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads(2)
    os.makedirs(args.out, exist_ok=True)
    seed_all(args.seed)
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel
    unet = UNet2DConditionModel.from_pretrained(args.base, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(args.base, subfolder="text_encoder", torch_dtype=torch.float32)
    unet.requires_grad_(False)
    te.requires_grad_(False)
    mods = inject(unet, UNET_TARGETS, args.rank, args.alpha, "lora_unet_", UNET_CONV_TARGETS if args.conv else ())
    te_mods = inject(te, TE_TARGETS, args.rank, args.alpha, "lora_te_") if args.te_lora else {}
    log(f"LoRA modules: unet {len(mods)}, te {len(te_mods)}; params "
        f"{sum(p.numel() for p in lora_params(mods)) + sum(p.numel() for p in lora_params(te_mods))}")

    cache = torch.load(args.cache, weights_only=False)
    sf = cache["scaling_factor"]
    lat, ids, single = cache["latents"].float() * sf, cache["ids"], cache["single"]
    if args.reg_cache and args.reg_frac > 0:
        reg = torch.load(args.reg_cache, weights_only=False)
        n = args.reg_n
        rlat, rids, rsingle = reg["latents"][:n].float() * sf, reg["ids"][:n], reg["single"][:n]
    else:
        rlat = None
    empty = tokenize([""])

    params = [dict(params=lora_params(mods), lr=args.lr)]
    if te_mods:
        params.append(dict(params=lora_params(te_mods), lr=args.te_lr))
    all_lora = [p for g in params for p in g["params"]]
    for p in all_lora:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, weight_decay=0.0)
    base_lrs = [g["lr"] for g in params]
    ema = EMA(all_lora, args.ema)

    emb_cache = None
    if not te_mods:  # frozen text encoder: pre-compute hidden states
        with torch.no_grad():
            allids = [ids.view(-1, 77)] + ([rids.view(-1, 77)] if rlat is not None else []) + [empty]
            flat = torch.cat(allids)
            uniq, inv = torch.unique(flat, dim=0, return_inverse=True)
            embs = torch.cat([te(uniq[k:k + 256].long()).last_hidden_state for k in range(0, len(uniq), 256)])
        emb_cache = (embs, inv)
        n1 = ids.shape[0] * ids.shape[1]
        main_ix = inv[:n1].view(ids.shape[0], ids.shape[1])
        reg_ix = inv[n1:n1 + (rids.shape[0] * rids.shape[1] if rlat is not None else 0)]
        reg_ix = reg_ix.view(rids.shape[0], rids.shape[1]) if rlat is not None else None
        empty_ix = inv[-1]

    step = 0
    ck = load_ckpt(os.path.join(args.out, "ckpt.pt"))
    if ck:
        for p, v in zip(all_lora, ck["params"]):
            p.data.copy_(v)
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema_state"])
        step = ck["step"]
        set_rng_state(ck["rng"])
        log("resumed at", step)
    ab = alphas_cumprod()
    unet.train()
    t0, acc, n_acc = time.time(), 0.0, 0
    while step < args.steps:
        f = lr_factor(step, 50, args.steps, const_frac=0.7, floor=0.1)
        for g, b in zip(opt.param_groups, base_lrs):
            g["lr"] = b * f
        n_reg = int(round(args.bs * args.reg_frac)) if rlat is not None else 0
        n_main = args.bs - n_reg
        i1 = torch.randint(0, len(lat), (n_main,))
        a1 = torch.where(single[i1], torch.randint(0, ids.shape[1], (n_main,)), torch.zeros(n_main, dtype=torch.long))
        x0 = [lat[i1]]
        if n_reg:
            i2 = torch.randint(0, len(rlat), (n_reg,))
            a2 = torch.where(rsingle[i2], torch.randint(0, rids.shape[1], (n_reg,)), torch.zeros(n_reg, dtype=torch.long))
            x0.append(rlat[i2])
        x0 = torch.cat(x0)
        drop = torch.rand(args.bs) < args.p_uncond
        if emb_cache is not None:
            embs, _ = emb_cache
            ix = [main_ix[i1, a1]] + ([reg_ix[i2, a2]] if n_reg else [])
            ix = torch.cat(ix)
            ix[drop] = empty_ix
            h = embs[ix]
        else:
            bid = [ids[i1, a1]] + ([rids[i2, a2]] if n_reg else [])
            bid = torch.cat(bid).long()
            bid[drop] = empty.long()
        noise = torch.randn_like(x0) + args.offset_noise * torch.randn(args.bs, x0.shape[1], 1, 1)
        t = torch.randint(0, 1000, (args.bs,))
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if emb_cache is None:
                h = te(bid).last_hidden_state
            pred = unet(xt, t, h).sample
        pred = pred.float()
        snr = ab[t] / (1 - ab[t])
        w = torch.clamp(snr, max=args.snr_gamma) / snr
        mse = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (w * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(all_lora, 1.0)
        opt.step()
        ema.update(step)
        step += 1
        acc += mse.mean().item()
        n_acc += 1
        if step % 25 == 0:
            log(f"step {step} mse {acc / n_acc:.4f} lr {opt.param_groups[0]['lr']:.1e} {(time.time() - t0) / n_acc:.2f}s/step")
            acc, n_acc, t0 = 0.0, 0, time.time()
        if step % 100 == 0 or step == args.steps:
            allmods = {**mods, **te_mods}
            raw = kohya_state(allmods, torch.float32)
            bk = [p.detach().clone() for p in all_lora]
            ema.copy_to(all_lora)
            emas = kohya_state(allmods, torch.float32)
            for p, b in zip(all_lora, bk):
                p.data.copy_(b)
            save_ckpt(os.path.join(args.out, "ckpt.pt"), dict(
                params=[p.detach().clone() for p in all_lora], opt=opt.state_dict(), ema_state=ema.state_dict(),
                step=step, rng=rng_state(), args=vars(args), lora=raw, lora_ema=emas, rank=args.rank,
                alpha=args.alpha, trigger=args.trigger, description=args.description))
    log("done", step)


if __name__ == "__main__":
    main()
