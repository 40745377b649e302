#!/usr/bin/env python3
"""Conditioning check during UNet training: same seed, prompts differing in one word.

  python tools/embedded/sample_check.py --unet /work/train/unet/ckpt.pt --vae /work/train/vae/ckpt.pt \
      --out /work/train/samples/check.png

Rows: background word swapped (8 colours), foreground word swapped, shape word swapped +
position swapped.  Prints the checker's reading (bg/fg) of every image when a calibration
file exists, so "same image for every prompt" is caught numerically.
"""
import argparse
import os

import numpy as np
import torch
from PIL import Image

from common import SCHED
from export import load_unet_te, load_vae
import shapes_data as sd

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unet", default="/work/train/unet/ckpt.pt")
    ap.add_argument("--vae", default="/work/train/vae/ckpt.pt")
    ap.add_argument("--out", default="/work/train/samples/check.png")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--guidance", type=float, default=7.0)
    ap.add_argument("--raw", action="store_true", help="use raw weights instead of EMA")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer
    unet, te, sf = load_unet_te(args.unet, use_ema=not args.raw)
    vae = load_vae(args.vae, sf)
    tok = CLIPTokenizer.from_pretrained(os.path.join(REPO, "models/shapes-sd/tokenizer"))
    sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=SCHED["beta_start"],
                                        beta_end=SCHED["beta_end"], beta_schedule="scaled_linear", steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    rows = [
        [f"a large white circle in the center, {c} background" for c in sd.COLOR_NAMES],
        [f"a large {c} square in the center, black background" for c in sd.COLOR_NAMES],
        [f"a large red {s} {p}, blue background" for s, p in
         [("circle", "in the center"), ("square", "in the center"), ("triangle", "in the center"), ("star", "in the center"),
          ("circle", "on the left"), ("circle", "on the right"), ("circle", "at the top"), ("circle", "at the bottom")]],
    ]
    ims = []
    for r in rows:
        with torch.no_grad():
            out = pipe(prompt=r, num_inference_steps=20, guidance_scale=args.guidance, height=128, width=128,
                       generator=[torch.Generator().manual_seed(args.seed) for _ in r]).images
        ims.append(np.concatenate([np.asarray(o) for o in out], 1))
    sheet = np.concatenate(ims, 0)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    Image.fromarray(sheet).save(args.out)
    try:
        import checker as ck
        for ri, r in enumerate(rows):
            reads = []
            for ci in range(len(r)):
                im = sheet[ri * 128:(ri + 1) * 128, ci * 128:(ci + 1) * 128]
                bg, fg, _, _ = ck.colors(im)
                reads.append(f"{sd.COLOR_NAMES[bg]}/{sd.COLOR_NAMES[fg] if fg >= 0 else '-'}")
            print(f"row {ri}: " + "  ".join(reads))
    except Exception as e:  # noqa
        print("checker unavailable:", e)
    print("saved", args.out)


if __name__ == "__main__":
    main()
