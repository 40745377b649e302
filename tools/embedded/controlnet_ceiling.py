#!/usr/bin/env python3
"""The best edge IoU the ControlNet evaluation can reach through this VAE: canny IoU (1-px tolerance) between each
control map of eval_sets/controlnet.jsonl and the VAE reconstruction of the render it was made from.

  python tools/embedded/controlnet_ceiling.py [--model models/shapes-sd]   (from any folder)
"""
import argparse
import json
import os
import re

import numpy as np
import torch
from PIL import Image

import checker as ck
import shapes_data as sd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(REPO, "models", "shapes-sd"))
    args = ap.parse_args()
    from diffusers import AutoencoderKL
    torch.set_num_threads(1)
    vae = AutoencoderKL.from_pretrained(args.model, subfolder="vae").float().eval()
    rows = [json.loads(l) for l in open(os.path.join(HERE, "eval_sets", "controlnet.jsonl"))]
    raw, rec = [], []
    for r in rows:
        seed = int(re.search(r"sample\((\d+)", r["expect"]["source"]).group(1))
        img = sd.sample(seed, "base")["image"]
        ctrl = np.asarray(Image.open(os.path.join(REPO, r["control"]["image"])).convert("L")) > 127
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            y = vae.decode(vae.encode(x).latent_dist.mode()).sample
        out = ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        raw.append(ck.edge_iou(ctrl, img)[1])
        rec.append(ck.edge_iou(ctrl, out)[1])
    print(f"edge IoU (1-px tol): true render {np.mean(raw):.3f}, "
          f"VAE reconstruction of the true render {np.mean(rec):.3f} (n={len(rows)})")


if __name__ == "__main__":
    main()
