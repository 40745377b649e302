#!/usr/bin/env python3
"""Train the UNet2DConditionModel (jointly with the pre-trained text encoder) on the latent cache.

- epsilon prediction, DDPM scaled_linear betas 0.00085..0.012, 1000 steps, t ~ U{0..999}
- min-SNR-gamma loss weighting (gamma 5), offset noise 0.1 (lets the model choose flat
  background colours instead of inheriting the mean of the initial noise)
- caption dropped to "" with p=0.1 (classifier-free guidance); single-object images use one
  of 4 caption variants per step (text augmentation); token ids cached
- text encoder initialised from train_text_encoder.py, its auxiliary attribute loss kept on
  (weight --aux), its own LR (--te-lr)
- bf16 autocast, AdamW, constant LR after warm-up, EMA of UNet+text encoder
- every --diag-every steps: conditional vs unconditional epsilon gap on fixed cached latents
Resumable: re-running the same command continues from <out>/ckpt.pt.

  python tools/embedded/train_unet.py --cache /work/train/cache/base.pt --te /work/train/te/ckpt.pt \
      --out /work/train/unet --steps 12000
"""
import argparse
import os
import time

import torch
import torch.nn.functional as F

from common import (EMA, SCHED, TEXT_CONFIG, UNET_CONFIG, load_ckpt, log, lr_factor, rng_state, save_ckpt, seed_all,
                    set_rng_state, setup_threads)
from encode_latents import tokenize
from text_aux import AuxHeads


def alphas_cumprod():
    b = torch.linspace(SCHED["beta_start"] ** 0.5, SCHED["beta_end"] ** 0.5, SCHED["num_train_timesteps"]) ** 2
    return torch.cumprod(1 - b, 0)


def build_models(te_ckpt=None):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    unet = UNet2DConditionModel(**UNET_CONFIG)
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    heads = AuxHeads(TEXT_CONFIG["hidden_size"])
    if te_ckpt:
        ck = load_ckpt(te_ckpt)
        te.load_state_dict(ck["te"])
        heads.load_state_dict(ck["heads"])
    return unet, te, heads


@torch.no_grad()
def diag(unet, te, lat, ids, empty, ab, g_seed=7):
    """RMS(eps_cond - eps_uncond) and eps-MSE cond/uncond at a few timesteps."""
    unet.eval()
    te.eval()
    g = torch.Generator().manual_seed(g_seed)
    noise = torch.randn(lat.shape, generator=g)
    hc = te(ids.long()).last_hidden_state
    hu = te(empty.long().expand(len(ids), -1)).last_hidden_state
    res = []
    for t in (200, 500, 800, 950):
        a = ab[t]
        xt = a.sqrt() * lat + (1 - a).sqrt() * noise
        tt = torch.full((len(lat),), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ec = unet(xt, tt, hc).sample.float()
            eu = unet(xt, tt, hu).sample.float()
        res.append(f"t{t}: gap {((ec - eu) ** 2).mean().sqrt():.4f} Lc {F.mse_loss(ec, noise):.4f} Lu {F.mse_loss(eu, noise):.4f}")
    unet.train()
    te.train()
    return " | ".join(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", default="/work/train/cache/base.pt")
    ap.add_argument("--te", default="/work/train/te/ckpt.pt")
    ap.add_argument("--out", default="/work/train/unet")
    ap.add_argument("--steps", type=int, default=12000)
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--te-lr", type=float, default=3e-4)
    ap.add_argument("--aux", type=float, default=0.1)
    ap.add_argument("--p-uncond", type=float, default=0.1)
    ap.add_argument("--offset-noise", type=float, default=0.1)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--snap-every", type=int, default=2000)
    ap.add_argument("--diag-every", type=int, default=250)
    ap.add_argument("--freeze-te", type=int, default=1, help="1: frozen pre-trained text encoder, cached states")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads(2)
    os.makedirs(args.out, exist_ok=True)
    seed_all(args.seed)

    cache = torch.load(args.cache, weights_only=False)
    sf = cache["scaling_factor"]
    lat = cache["latents"].float() * sf
    ids, labels, single = cache["ids"], cache["labels"], cache["single"]
    N = len(lat)
    empty = tokenize([""])
    log(f"cache {N} latents, scaling {sf:.4f}, scaled std {lat.std():.3f} mean {lat.mean():.3f}")

    unet, te, heads = build_models(args.te)
    log("UNet params", sum(p.numel() for p in unet.parameters()), "TE params", sum(p.numel() for p in te.parameters()))
    frozen = bool(args.freeze_te)
    if frozen:
        # frozen text encoder (like SD's frozen CLIP): pre-compute the 77x128 hidden states of every caption
        te.eval().requires_grad_(False)
        flat = ids.view(-1, ids.shape[-1])
        uniq, inv = torch.unique(flat, dim=0, return_inverse=True)
        t_emb = time.time()
        emb_file = os.path.join(args.out, "te_states.pt")  # cache (same cache + same text encoder)
        cached = load_ckpt(emb_file)
        if cached is not None and cached["n"] == len(uniq) and torch.equal(cached["uniq"], uniq):
            embs, empty_emb = cached["embs"], cached["empty"]
        else:
            with torch.no_grad():
                embs = torch.cat([te(uniq[k:k + 256].long()).last_hidden_state.half() for k in range(0, len(uniq), 256)])
                empty_emb = te(empty.long()).last_hidden_state.half()
            save_ckpt(emb_file, dict(n=len(uniq), uniq=uniq, embs=embs, empty=empty_emb))
        cap_index = inv.view(ids.shape[0], ids.shape[1])
        log(f"frozen TE: {len(uniq)} unique captions embedded in {time.time() - t_emb:.0f}s")
        opt = torch.optim.AdamW([dict(params=list(unet.parameters()), lr=args.lr, weight_decay=0.01)],
                                betas=(0.9, 0.999))
        base_lrs = [args.lr]
        ema_params = list(unet.parameters())
    else:
        opt = torch.optim.AdamW([
            dict(params=list(unet.parameters()), lr=args.lr, weight_decay=0.01),
            dict(params=list(te.parameters()) + list(heads.parameters()), lr=args.te_lr, weight_decay=0.01),
        ], betas=(0.9, 0.999))
        base_lrs = [args.lr, args.te_lr]
        ema_params = list(unet.parameters()) + list(te.parameters())
    ema = EMA(ema_params, args.ema)
    step = 0
    ck = load_ckpt(os.path.join(args.out, "ckpt.pt"))
    if ck:
        unet.load_state_dict(ck["unet"])
        te.load_state_dict(ck["te"])
        heads.load_state_dict(ck["heads"])
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema"])
        step = ck["step"]
        set_rng_state(ck["rng"])
        log("resumed at step", step)
    ab = alphas_cumprod()
    dlat, dids = lat[:48], ids[:48, 0]
    t0, acc, accw, n_acc = time.time(), 0.0, 0.0, 0
    while step < args.steps:
        f = lr_factor(step, args.warmup, args.steps)
        for pg, b in zip(opt.param_groups, base_lrs):
            pg["lr"] = b * f
        idx = torch.randint(0, N, (args.bs,))
        alt = torch.where(single[idx], torch.randint(0, ids.shape[1], (args.bs,)), torch.zeros(args.bs, dtype=torch.long))
        bid = ids[idx, alt].long()
        blab = labels[idx, alt].clone()
        drop = torch.rand(args.bs) < args.p_uncond
        bid[drop] = empty.long()
        blab[drop] = -1
        x0 = lat[idx]
        noise = torch.randn_like(x0) + args.offset_noise * torch.randn(args.bs, x0.shape[1], 1, 1)
        t = torch.randint(0, 1000, (args.bs,))
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if frozen:
            h = embs[cap_index[idx, alt]].float()
            h[drop] = empty_emb.float()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                pred = unet(xt, t, h).sample
        else:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = te(bid)
                pred = unet(xt, t, out.last_hidden_state).sample
        pred = pred.float()
        snr = ab[t] / (1 - ab[t])
        w = torch.clamp(snr, max=args.snr_gamma) / snr
        mse = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss_d = (w * mse).mean()
        if frozen:
            loss_aux, accs = torch.zeros(()), {}
        else:
            loss_aux, accs = heads.loss(out.last_hidden_state.float(), out.pooler_output.float(), blab)
        loss = loss_d + args.aux * loss_aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        if not frozen:
            torch.nn.utils.clip_grad_norm_(list(te.parameters()) + list(heads.parameters()), 1.0)
        opt.step()
        ema.update(step)
        step += 1
        acc += mse.mean().item()
        accw += loss_d.item()
        n_acc += 1
        if step % 50 == 0:
            log(f"step {step} mse {acc / n_acc:.4f} wloss {accw / n_acc:.4f} aux {float(loss_aux):.3f} "
                f"bg/fg acc {accs.get('bg', 0):.2f}/{accs.get('fg', 0):.2f} lr {opt.param_groups[0]['lr']:.1e} "
                f"{(time.time() - t0) / n_acc:.2f}s/step")
            acc, accw, n_acc, t0 = 0.0, 0.0, 0, time.time()
        if step % args.diag_every == 0:
            log(f"DIAG step {step} {diag(unet, te, dlat, dids, empty, ab)}")
        if step % args.ckpt_every == 0 or step == args.steps:
            save_ckpt(os.path.join(args.out, "ckpt.pt"), dict(
                unet=unet.state_dict(), te=te.state_dict(), heads=heads.state_dict(), opt=opt.state_dict(),
                ema=ema.state_dict(), step=step, rng=rng_state(), args=vars(args), scaling_factor=sf,
                frozen_te=frozen))
        if step % args.snap_every == 0 or step == args.steps:
            save_ckpt(os.path.join(args.out, f"ema_{step:06d}.pt"), dict(ema=ema.state_dict(), step=step,
                                                                         te=te.state_dict(), frozen_te=frozen,
                                                                         scaling_factor=sf))
    log("done", step)


if __name__ == "__main__":
    main()
