#!/usr/bin/env python3
"""Write the deterministic evaluation prompt sets (JSONL) and held-out control outlines.

  python tools/embedded/make_eval_sets.py            # -> tools/embedded/eval_sets/

Each line: {"id", "set", "prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height",
            "lora": null | {"name", "file", "scale"}, "control": null | {"image", "scale"},
            "expect": {...}, "pair": <id shared by the with/without-LoRA twins>}
Sets
  indist.jsonl       100 single-object prompts, (shape, fg, bg) triples seen in training, unseen seeds
  heldout.jsonl       48 prompts over the 24 held-out (shape, fg, bg) triples (2 each)
  lora_outline.jsonl  50 prompts (large shapes) x {without, with outline LoRA}; effect = outlined shape
  lora_heart.jsonl    50 "heart" prompts x {without, with heart LoRA}; effect = heart shape
  controlnet.jsonl    50 held-out canny outlines (controlnet/NNN.png, white on black 128x128;
                      cv2.Canny(render, 100, 200) of renders with unseen seeds) + their captions
"""
import json
import os
import random

import cv2
import numpy as np
from PIL import Image

import shapes_data as sd

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "eval_sets")
GEN = dict(negative_prompt="", steps=20, guidance=7.0, width=128, height=128, scheduler="DPMSolverMultistepScheduler")


def canon(size, fg, shape, pos, bg):
    return f"{sd.article(size)} {size} {fg} {shape} {sd.CANON_POS[pos]}, {bg} background"


def entry(id_, set_, prompt, seed, expect, lora=None, control=None, pair=None):
    e = dict(id=id_, set=set_, prompt=prompt, seed=seed, **GEN, lora=lora, control=control, expect=expect)
    if pair:
        e["pair"] = pair
    return e


def rand_attrs(rng, shapes, allow_holdout):
    while True:
        shape, fg, bg = rng.choice(shapes), rng.choice(sd.COLOR_NAMES), rng.choice(sd.COLOR_NAMES)
        if fg != bg and (allow_holdout or (shape, fg, bg) not in sd.HOLDOUT_SET):
            return shape, fg, bg, rng.choice(sd.SIZE_NAMES), rng.choice(sd.POS_NAMES)


def main():
    os.makedirs(os.path.join(OUT, "controlnet"), exist_ok=True)
    sets = {}
    rng = random.Random("eval-indist-v1")
    sets["indist"] = []
    for i in range(100):
        shape, fg, bg, size, pos = rand_attrs(rng, sd.SHAPES, False)
        sets["indist"].append(entry(f"indist_{i:03d}", "indist", canon(size, fg, shape, pos, bg), 10_000 + i,
                                    dict(bg=bg, fg=fg, shape=shape, size=size, pos=pos)))
    rng = random.Random("eval-heldout-v1")
    sets["heldout"] = []
    for k, (shape, fg, bg) in enumerate(sd.HOLDOUT):
        for j in range(2):
            size, pos = rng.choice(sd.SIZE_NAMES), rng.choice(sd.POS_NAMES)
            i = 2 * k + j
            sets["heldout"].append(entry(f"heldout_{i:03d}", "heldout", canon(size, fg, shape, pos, bg), 20_000 + i,
                                         dict(bg=bg, fg=fg, shape=shape, size=size, pos=pos)))
    for name, shapes, seed0, effect in (("outline", sd.SHAPES, 30_000, "outline"), ("heart", ["heart"], 40_000, "heart")):
        rng = random.Random(f"eval-lora-{name}-v1")
        rows = []
        for i in range(50):
            shape, fg, bg, size, pos = rand_attrs(rng, shapes, False)
            if name == "outline":
                # the f=8 VAE fills in the hole of SMALL outlined shapes (checker on VAE reconstructions of
                # true small outlined renders: ~50%), so the style is scored on large shapes only
                size = "large"
            p = canon(size, fg, shape, pos, bg)
            ex = dict(bg=bg, fg=fg, shape=shape, size=size, pos=pos, effect=effect)
            pid = f"{name}_{i:03d}"
            rows.append(entry(pid + "_without", f"lora_{name}", p, seed0 + i, ex, None, pair=pid))
            rows.append(entry(pid + "_with", f"lora_{name}", p, seed0 + i, ex,
                              dict(name=name, file=f"models/shapes-sd-loras/{name}.safetensors", scale=1.0), pair=pid))
        sets[f"lora_{name}"] = rows
    sets["controlnet"] = []
    for i in range(50):
        seed = 8_000_000 + i
        s = sd.sample(seed, "base")
        edges = cv2.Canny(s["image"], 100, 200)
        fn = f"controlnet/{i:03d}.png"
        Image.fromarray(np.stack([edges] * 3, -1)).save(os.path.join(OUT, fn))
        o = s["objects"][0]
        sets["controlnet"].append(entry(f"controlnet_{i:03d}", "controlnet", s["caption"], 50_000 + i,
                                        dict(bg=s["bg"], fg=o["color"], shape=o["shape"], layout=s["layout"],
                                             source=f"shapes_data.sample({seed}, 'base')"),
                                        control=dict(image=f"tools/embedded/eval_sets/{fn}", scale=1.0)))
    for k, rows in sets.items():
        with open(os.path.join(OUT, f"{k}.jsonl"), "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        print(k, len(rows))


if __name__ == "__main__":
    main()
