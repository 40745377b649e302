#!/usr/bin/env python3
"""Reference generator: render an eval set with the diffusers pipelines (the Swift engine is
expected to produce the same kind of folder: PNGs + manifest.jsonl).

  python tools/embedded/generate_diffusers.py --sets tools/embedded/eval_sets/indist.jsonl \
      tools/embedded/eval_sets/heldout.jsonl --out /work/train/eval/base

Writes <out>/<id>.png and <out>/manifest.jsonl (the set entries + "file"). Uses
DPMSolverMultistepScheduler built from the folder's scheduler config, the entry's steps /
guidance / seed (torch.Generator().manual_seed(seed) per image), LoRAs through
pipe.load_lora_weights (kohya files), ControlNet through StableDiffusionControlNetPipeline.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_rows(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(l) for l in f if l.strip()]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default=os.path.join(REPO, "models/shapes-sd"))
    ap.add_argument("--controlnet", default=os.path.join(REPO, "models/shapes-sd-controlnet-canny"))
    ap.add_argument("--bs", type=int, default=10)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--lora-root", default=REPO, help="directory the manifest's lora 'file' paths are relative to")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import (ControlNetModel, DPMSolverMultistepScheduler, StableDiffusionControlNetPipeline,
                           StableDiffusionPipeline)
    dt = getattr(torch, args.dtype)
    rows = load_rows(args.sets)
    if args.limit:
        rows = rows[: args.limit]
    os.makedirs(args.out, exist_ok=True)
    pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=dt, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    cpipe = None
    if any(r.get("control") for r in rows):
        cn = ControlNetModel.from_pretrained(args.controlnet, torch_dtype=dt)
        cpipe = StableDiffusionControlNetPipeline(**{k: v for k, v in pipe.components.items()
                                                     if k not in ("image_encoder",)}, controlnet=cn)
        cpipe.set_progress_bar_config(disable=True)
    loaded = set()
    manifest = []
    t0 = time.time()
    # group by (lora, scale, control?, steps, guidance) to batch
    def key(r):
        lo = r.get("lora") or {}
        return (lo.get("name"), lo.get("scale"), bool(r.get("control")), r["steps"], r["guidance"])
    groups = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    for (lname, lscale, ctrl, steps, guid), grp in groups.items():
        p = cpipe if ctrl else pipe
        if lname:
            if lname not in loaded:
                pipe.load_lora_weights(os.path.join(args.lora_root, grp[0]["lora"]["file"]), adapter_name=lname)
                loaded.add(lname)
            pipe.set_adapters([lname], [lscale])
            pipe.enable_lora()
        elif loaded:
            pipe.disable_lora()
        for k in range(0, len(grp), args.bs):
            b = grp[k:k + args.bs]
            kw = dict(prompt=[r["prompt"] for r in b], negative_prompt=[r.get("negative_prompt", "") for r in b],
                      num_inference_steps=steps, guidance_scale=guid, height=b[0]["height"], width=b[0]["width"],
                      generator=[torch.Generator().manual_seed(r["seed"]) for r in b])
            if ctrl:
                kw["image"] = [Image.open(os.path.join(REPO, r["control"]["image"])).convert("RGB") for r in b]
                kw["controlnet_conditioning_scale"] = b[0]["control"].get("scale", 1.0)
            with torch.no_grad():
                ims = p(**kw).images
            for r, im in zip(b, ims):
                fn = r["id"] + ".png"
                im.save(os.path.join(args.out, fn))
                manifest.append(dict(r, file=fn))
        print(f"group lora={lname} control={ctrl}: {len(grp)} images, {time.time() - t0:.0f}s", flush=True)
    with open(os.path.join(args.out, "manifest.jsonl"), "w") as f:
        for m in manifest:
            f.write(json.dumps(m) + "\n")
    print(f"{len(manifest)} images in {time.time() - t0:.0f}s -> {args.out}")


if __name__ == "__main__":
    main()
