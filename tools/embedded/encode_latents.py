#!/usr/bin/env python3
"""Encode generated images into a latent cache (posterior mode, fp16) + tokenized captions.

For single-object images, A-1 extra captions are drawn with shapes_data.recaption
(text augmentation); ids/labels are stored for every alternative (77 tokens, padded with
<|endoftext|> exactly like the pipeline). Optionally stores packed canny maps
(cv2.Canny(rgb_uint8, 100, 200)) for ControlNet training.

  python tools/embedded/encode_latents.py --vae /work/train/vae/ckpt.pt --kind base --n 20000 \
      --out /work/train/cache/base.pt [--canny] [--scaling-from-this]

The first (base) run computes scaling_factor = 1/std(latents) and stores it in the cache;
later runs read it from --scaling-from (the base cache).
"""
import argparse
import os
import time

import numpy as np
import torch

from common import VAE_CONFIG, load_ckpt, log, setup_threads, to_tensor_img
import shapes_data as sd

A = 4
TOKENIZER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "shapes-sd", "tokenizer")
LABEL_KEYS = ["bg", "fg", "shape", "size", "pos", "count", "fg2", "shape2", "pos2"]


def load_vae(path, use_ema=True):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(**VAE_CONFIG)
    ck = load_ckpt(path)
    vae.load_state_dict(ck["model"])
    if use_ema and "ema" in ck:
        for p, s in zip(vae.parameters(), ck["ema"]):
            p.data.copy_(s)
    vae.eval()
    return vae


def tokenize(captions, tokenizer_dir=TOKENIZER):
    from transformers import CLIPTokenizer
    tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
    return torch.tensor(tok(captions, padding="max_length", max_length=77, truncation=True).input_ids, dtype=torch.int32)


def captions_for(seed, kind, s=None):
    s = s or sd.sample(seed, kind, render_image=False)
    caps, labs = [s["caption"]], [s["labels"]]
    for k in range(1, A):
        c, l = sd.recaption(seed, s, k) if s["layout"] == "single" else (s["caption"], s["labels"])
        caps.append(c)
        labs.append(l)
    return caps, [[l[k] for k in LABEL_KEYS] for l in labs], s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", default="/work/train/vae/ckpt.pt")
    ap.add_argument("--kind", default="base")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--out", default="/work/train/cache/base.pt")
    ap.add_argument("--canny", action="store_true")
    ap.add_argument("--scaling-from", default=None)
    ap.add_argument("--bs", type=int, default=64)
    args = ap.parse_args()
    setup_threads(2)
    import cv2
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    vae = load_vae(args.vae)
    seeds = list(range(args.start, args.start + args.n))
    lat, caps, labs, objs, cannies, layouts = [], [], [], [], [], []
    t0 = time.time()
    for b in range(0, len(seeds), args.bs):
        ims = []
        for seed in seeds[b:b + args.bs]:
            s = sd.sample(seed, args.kind)
            c, l, _ = captions_for(seed, args.kind, s)
            caps.append(c)
            labs.append(l)
            objs.append(dict(bg=s["bg"], objects=s["objects"], layout=s["layout"]))
            layouts.append(s["layout"])
            ims.append(s["image"])
            if args.canny:
                cannies.append(np.packbits(cv2.Canny(s["image"], 100, 200) > 0))
        with torch.no_grad():
            z = vae.encode(to_tensor_img(np.stack(ims))).latent_dist.mode()
        lat.append(z.half())
        if (b // args.bs) % 20 == 0:
            log(f"{b + len(ims)}/{len(seeds)}  {(time.time() - t0) / (b + len(ims)) * 1000:.1f} ms/img")
    lat = torch.cat(lat)
    flat = lat.float()
    stats = dict(mean=flat.mean().item(), std=flat.std().item(), ch_mean=flat.mean((0, 2, 3)).tolist(),
                 ch_std=flat.std((0, 2, 3)).tolist())
    if args.scaling_from:
        scaling = torch.load(args.scaling_from, weights_only=False)["scaling_factor"]
    else:
        scaling = 1.0 / stats["std"]
    log("latent stats", stats, "scaling_factor", scaling)
    ids = tokenize([c for cs in caps for c in cs]).view(len(seeds), A, 77)
    out = dict(latents=lat, seeds=torch.tensor(seeds), captions=caps, ids=ids,
               labels=torch.tensor(labs, dtype=torch.int64), objects=objs, kind=args.kind,
               single=torch.tensor([l == "single" for l in layouts]), scaling_factor=scaling, stats=stats,
               label_keys=LABEL_KEYS)
    if args.canny:
        out["canny_packed"] = torch.from_numpy(np.stack(cannies))
    torch.save(out, args.out)
    log("saved", args.out, lat.shape, f"{time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
