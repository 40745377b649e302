#!/usr/bin/env python3
"""The README's picture grid, drawn by the Swift engine (this script only writes the manifest and lays out
the PNGs that `swiftdiffusion batch` made; it never runs a model).

Rows: plain prompts; the same prompts and seeds with the outline LoRA; the heart LoRA; the canny ControlNet
with its input outline (first column: the canny map itself).

  .build/release/swiftdiffusion   # built first
  python tools/embedded/readme_grid.py [--swift .build/release/swiftdiffusion] [--out docs/images/embedded-grid.png]
"""
import argparse
import json
import os
import subprocess
import tempfile

from PIL import Image, ImageDraw

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

PLAIN = [
    ("a red circle on a blue background", 11),
    ("a large yellow star in the center, purple background", 12),
    ("a small white triangle on the left, green background", 13),
    ("two orange squares at the top, black background", 14),
    ("a large green circle on the right, yellow background", 15),
]
HEART = [
    ("a large red heart in the center, blue background", 21),
    ("a small white heart on the left, green background", 22),
    ("a yellow heart at the bottom, purple background", 23),
    ("two orange hearts at the top, black background", 24),
    ("a large green heart on the right, yellow background", 25),
]
CONTROL_PROMPTS = [
    ("blue background, a red circle at the left, a red triangle on the right", 31),
    ("black background, a yellow circle at the left, a white triangle on the right", 32),
    ("white background, a purple circle at the left, an orange triangle on the right", 33),
    ("green background, a blue circle at the left, a yellow triangle on the right", 34),
]


def draw_control(path):
    """An outline to follow: the canny edges (cv2.Canny(image, 100, 200), what the ControlNet was trained on) of a
    shapes picture the model never saw (seed 9000007: a circle on the left, a triangle on the right)."""
    import cv2
    import shapes_data as sd
    edges = cv2.Canny(sd.sample(9000007, "base")["image"], 100, 200)
    Image.fromarray(edges).convert("RGB").save(path)


def entry(i, prompt, seed, lora=None, control=None):
    return dict(id=f"grid_{i:02d}", prompt=prompt, seed=seed, negative_prompt="", steps=20, guidance=7.0,
                width=128, height=128, scheduler="DPMSolverMultistepScheduler", lora=lora, control=control)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swift", default=os.path.join(REPO, ".build", "release", "swiftdiffusion"))
    ap.add_argument("--out", default=os.path.join(REPO, "docs", "images", "embedded-grid.png"))
    ap.add_argument("--control-out", default=os.path.join(REPO, "docs", "images", "control-drawing.png"))
    args = ap.parse_args()
    draw_control(args.control_out)
    outline = dict(file=os.path.join(REPO, "models/shapes-sd-loras/outline.safetensors"), scale=1.0)
    heart = dict(file=os.path.join(REPO, "models/shapes-sd-loras/heart.safetensors"), scale=1.0)
    control = dict(image=args.control_out, scale=1.0)
    rows = [[entry(k, p, s) for k, (p, s) in enumerate(PLAIN)],
            [entry(10 + k, p, s, lora=outline) for k, (p, s) in enumerate(PLAIN)],
            [entry(20 + k, p, s, lora=heart) for k, (p, s) in enumerate(HEART)],
            [entry(30 + k, p, s, control=control) for k, (p, s) in enumerate(CONTROL_PROMPTS)]]
    labels = ["prompt only", "+ outline LoRA (style)", "+ heart LoRA (new concept)", "ControlNet (canny): edge map -> images"]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = os.path.join(tmp, "grid.jsonl")
        with open(manifest, "w") as f:
            for row in rows:
                for e in row:
                    f.write(json.dumps(e) + "\n")
        subprocess.run([args.swift, "batch", "--manifest", manifest, "--out", tmp], check=True)
        cell, label_h, pad = 128, 18, 4
        width = 5 * (cell + pad) + pad
        height = len(rows) * (cell + label_h + pad) + pad
        grid = Image.new("RGB", (width, height), (255, 255, 255))
        d = ImageDraw.Draw(grid)
        y = pad
        for r, row in enumerate(rows):
            d.text((pad, y + 3), labels[r], fill=(0, 0, 0))
            y += label_h
            images = [Image.open(os.path.join(tmp, e["id"] + ".png")).convert("RGB") for e in row]
            if r == 3:
                images = [Image.open(args.control_out).convert("RGB")] + images
            for c, im in enumerate(images):
                grid.paste(im, (pad + c * (cell + pad), y))
            y += cell + pad
        grid.save(args.out)
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        for row in rows:
            for e in row:
                extra = " + outline LoRA" if e["lora"] is outline else " + heart LoRA" if e["lora"] is heart else ""
                extra += " + ControlNet(control-drawing.png)" if e["control"] else ""
                f.write(f"{e['id']}: seed {e['seed']}: {e['prompt']}{extra}\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
