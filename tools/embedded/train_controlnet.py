#!/usr/bin/env python3
"""Train a canny-edge ControlNet (diffusers ControlNetModel.from_unet) on the frozen base model.

Control image = cv2.Canny(render_rgb_uint8, 100, 200) as a 3-channel image in [0, 1]
(white edges on black, 128x128), exactly what StableDiffusionControlNetPipeline feeds.
Captions: cached frozen text-encoder states; dropped to "" with p=0.3 so the edges alone
are enough.  Same noise/loss as the base (epsilon MSE, min-SNR 5, offset noise 0.1).

  python tools/embedded/train_controlnet.py --cache /work/train/cache/base.pt --out /work/train/controlnet --steps 2000
Resumable from <out>/ckpt.pt. Export: tools/embedded/export.py controlnet.
"""
import argparse
import os
import time

import numpy as np
import torch

from common import EMA, UNET_CONFIG, load_ckpt, log, lr_factor, rng_state, save_ckpt, seed_all, set_rng_state, setup_threads
from encode_latents import tokenize
from train_unet import alphas_cumprod

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def build_controlnet(unet=None):
    from diffusers import ControlNetModel, UNet2DConditionModel
    if unet is None:
        unet = UNet2DConditionModel(**UNET_CONFIG)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256))


def unpack_canny(packed):
    """packed: uint8 [B, 2048] (np.packbits of 128x128 bool) -> float [B, 3, 128, 128] in {0, 1}."""
    e = np.unpackbits(packed.numpy(), axis=1)[:, : 128 * 128].reshape(-1, 1, 128, 128).astype(np.float32)
    return torch.from_numpy(e).expand(-1, 3, -1, -1).contiguous()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=os.path.join(REPO, "models/shapes-sd"))
    ap.add_argument("--cache", default="/work/train/cache/base.pt")
    ap.add_argument("--out", default="/work/train/controlnet")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--bs", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--p-uncond", type=float, default=0.3)
    ap.add_argument("--offset-noise", type=float, default=0.1)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--const-frac", type=float, default=1.0,
                    help="constant learning rate until this fraction of --steps, then cosine decay")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    setup_threads(2)
    os.makedirs(args.out, exist_ok=True)
    seed_all(args.seed)
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel
    unet = UNet2DConditionModel.from_pretrained(args.base, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(args.base, subfolder="text_encoder", torch_dtype=torch.float32)
    unet.requires_grad_(False).eval()
    te.requires_grad_(False).eval()
    cn = build_controlnet(unet)
    cn.train()
    log("ControlNet params", sum(p.numel() for p in cn.parameters()))
    cache = torch.load(args.cache, weights_only=False)
    assert "canny_packed" in cache, "encode the base cache with --canny"
    sf = cache["scaling_factor"]
    lat, ids, single, canny = cache["latents"].float() * sf, cache["ids"], cache["single"], cache["canny_packed"]
    N = min(len(lat), len(canny))
    empty = tokenize([""])
    with torch.no_grad():
        flat = torch.cat([ids.view(-1, 77), empty])
        uniq, inv = torch.unique(flat, dim=0, return_inverse=True)
        embs = torch.cat([te(uniq[k:k + 256].long()).last_hidden_state.half() for k in range(0, len(uniq), 256)])
    cap_ix = inv[:-1].view(ids.shape[0], ids.shape[1])
    empty_ix = inv[-1]
    opt = torch.optim.AdamW(cn.parameters(), lr=args.lr, weight_decay=0.0)
    ema = EMA(cn.parameters(), args.ema)
    step = 0
    ck = load_ckpt(os.path.join(args.out, "ckpt.pt"))
    if ck:
        cn.load_state_dict(ck["controlnet"])
        opt.load_state_dict(ck["opt"])
        ema.load_state_dict(ck["ema"])
        step = ck["step"]
        set_rng_state(ck["rng"])
        log("resumed at", step)
    ab = alphas_cumprod()
    t0, acc, n_acc = time.time(), 0.0, 0
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = args.lr * lr_factor(step, 100, args.steps, args.const_frac)
        idx = torch.randint(0, N, (args.bs,))
        alt = torch.where(single[idx], torch.randint(0, ids.shape[1], (args.bs,)), torch.zeros(args.bs, dtype=torch.long))
        ix = cap_ix[idx, alt]
        ix[torch.rand(args.bs) < args.p_uncond] = empty_ix
        h = embs[ix].float()
        cond = unpack_canny(canny[idx])
        x0 = lat[idx]
        noise = torch.randn_like(x0) + args.offset_noise * torch.randn(args.bs, x0.shape[1], 1, 1)
        t = torch.randint(0, 1000, (args.bs,))
        a = ab[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast("cpu", dtype=torch.bfloat16):
            down, mid = cn(xt, t, encoder_hidden_states=h, controlnet_cond=cond, return_dict=False)
            pred = unet(xt, t, h, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        pred = pred.float()
        snr = ab[t] / (1 - ab[t])
        w = torch.clamp(snr, max=args.snr_gamma) / snr
        mse = ((pred - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (w * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(cn.parameters(), 1.0)
        opt.step()
        ema.update(step)
        step += 1
        acc += mse.mean().item()
        n_acc += 1
        if step % 25 == 0:
            log(f"step {step} mse {acc / n_acc:.4f} lr {opt.param_groups[0]['lr']:.1e} {(time.time() - t0) / n_acc:.2f}s/step")
            acc, n_acc, t0 = 0.0, 0, time.time()
        if step % 100 == 0 or step == args.steps:
            save_ckpt(os.path.join(args.out, "ckpt.pt"), dict(controlnet=cn.state_dict(), opt=opt.state_dict(),
                                                              ema=ema.state_dict(), step=step, rng=rng_state(),
                                                              args=vars(args)))
    log("done", step)


if __name__ == "__main__":
    main()
