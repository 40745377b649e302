#!/usr/bin/env python3
"""Procedural captioned 128x128 shape images (the embedded model's training data).

Every sample is a pure function of (kind, seed): `sample(seed, kind)` -> dict with
  image   uint8 HxWx3 (128x128, anti-aliased by 4x supersampling)
  caption str
  objects list of {shape, color, size, pos, r, cx, cy}
  bg      background colour name
  labels  caption-level attribute labels (for the text-encoder auxiliary loss)

kinds
  "base"    : 1-3 shapes (circle, square, triangle, star) in 8 named colours, 2 sizes,
              5 positions, on a coloured background; held-out (shape, fg, bg) triples are
              never drawn (not even as a second object).  This is what the UNet sees.
  "outline" : same distribution, shapes drawn as thick outlines, width max(4, 0.35 r) px
              (style-LoRA data; 3-px outlines did not survive the f=8 VAE).
  "heart"   : the same layouts but every shape is a heart (concept-LoRA data; the base
              model never sees a heart or the word "heart").
  "generic" : random polygons / ellipses / rings / thick lines (no hearts), used only to
              make the VAE a general codec for flat-colour drawings.

CLI (writes a contact sheet + captions to look at):
  python tools/embedded/shapes_data.py --kind base --n 64 --out /work/train/samples/base
"""
import argparse
import math
import os
import random

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SS = 4  # supersampling factor

COLORS = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "purple": (140, 40, 170),
    "orange": (250, 130, 20),
}
COLOR_NAMES = list(COLORS)
SHAPES = ["circle", "square", "triangle", "star"]
ALL_SHAPES = SHAPES + ["heart"]
PLURAL = {s: s + "s" for s in ALL_SHAPES}
SIZES = {"small": (12, 16), "large": (22, 27)}
SIZE_NAMES = list(SIZES)
POSITIONS = {"left": (34, 64), "right": (94, 64), "top": (64, 34), "bottom": (64, 94), "center": (64, 64)}
POS_NAMES = list(POSITIONS)
POS_PHRASES = {
    "left": ["on the left", "on the left side", "at the left"],
    "right": ["on the right", "on the right side", "at the right"],
    "top": ["at the top", "on the top", "near the top"],
    "bottom": ["at the bottom", "on the bottom", "near the bottom"],
    "center": ["in the center", "in the middle", "in the centre"],
}
CANON_POS = {p: v[0] for p, v in POS_PHRASES.items()}
JITTER = 4
NUMBERS = {2: "two", 3: "three"}


def _holdout():
    rng = random.Random("shapes-holdout-v1")
    triples = [(s, f, b) for s in SHAPES for f in COLOR_NAMES for b in COLOR_NAMES if f != b]
    return sorted(rng.sample(triples, 24))


HOLDOUT = _holdout()  # 24 of the 224 (shape, fg, bg) triples
HOLDOUT_SET = set(HOLDOUT)


def article(word):
    return "an" if word[0] in "aeiou" else "a"


# ----------------------------------------------------------------------------- geometry
def shape_polygon(shape, cx, cy, r):
    """Polygon (list of (x, y)) in 128-px units, bbox centred on (cx, cy); None for circle."""
    if shape == "square":
        h = 0.88 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        R = 1.18 * r
        pts = [(math.cos(math.radians(a)) * R, math.sin(math.radians(a)) * R) for a in (-90, 30, 150)]
    elif shape == "star":
        R, ri = 1.18 * r, 1.18 * r * 0.47
        pts = []
        for k in range(10):
            a = math.radians(-90 + 36 * k)
            rr = R if k % 2 == 0 else ri
            pts.append((math.cos(a) * rr, math.sin(a) * rr))
    elif shape == "heart":
        pts = []
        for k in range(72):
            t = 2 * math.pi * k / 72
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x, y))
        s = r * 1.08 / 16.0
        pts = [(x * s, y * s) for x, y in pts]
    else:
        raise ValueError(shape)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    ox, oy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [(cx + x - ox, cy + y - oy) for x, y in pts]


def shape_extent(shape, r):
    return {"circle": r, "square": 0.88 * r, "triangle": 1.18 * r, "star": 1.18 * r, "heart": 1.1 * r}.get(shape, r)


def draw_mask(shape, cx, cy, r):
    """Boolean mask at SS*128 resolution."""
    im = Image.new("L", (SIZE * SS, SIZE * SS), 0)
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse([(cx - r) * SS, (cy - r) * SS, (cx + r) * SS, (cy + r) * SS], fill=255)
    else:
        d.polygon([(x * SS, y * SS) for x, y in shape_polygon(shape, cx, cy, r)], fill=255)
    return np.asarray(im) > 127


def outline_width(r):
    """Outline style line width in px: thick enough (about a third of the radius) to survive the f=8 VAE."""
    return max(4, int(round(0.35 * r)))


def outline_of(mask, width_px=3):
    import cv2
    k = 2 * width_px * SS + 1
    er = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return mask & ~(er > 0)


def compose(bg, layers):
    """layers: list of (bool mask at SS res, rgb). Returns uint8 128x128x3 (box-filtered)."""
    canvas = np.empty((SIZE * SS, SIZE * SS, 3), np.float32)
    canvas[:] = bg
    for m, rgb in layers:
        canvas[m] = rgb
    img = canvas.reshape(SIZE, SS, SIZE, SS, 3).mean(axis=(1, 3))
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- sampling
def _clamp_center(shape, cx, cy, r):
    e = shape_extent(shape, r) + 2
    return min(max(cx, e), SIZE - e), min(max(cy, e), SIZE - e)


def _pick_obj(rng, bg, shapes, holdout=True):
    while True:
        s = rng.choice(shapes)
        f = rng.choice([c for c in COLOR_NAMES if c != bg])
        if not (holdout and (s, f, bg) in HOLDOUT_SET):
            return s, f


def _single(rng, bg, shapes, holdout):
    s, f = _pick_obj(rng, bg, shapes, holdout)
    size = rng.choice(SIZE_NAMES)
    r = rng.uniform(*SIZES[size])
    pos = rng.choice(POS_NAMES)
    ax, ay = POSITIONS[pos]
    cx, cy = _clamp_center(s, ax + rng.uniform(-JITTER, JITTER), ay + rng.uniform(-JITTER, JITTER), r)
    return [dict(shape=s, color=f, size=size, pos=pos, r=r, cx=cx, cy=cy)]


def _group(rng, bg, shapes, holdout):
    s, f = _pick_obj(rng, bg, shapes, holdout)
    n = rng.choice([2, 3])
    pos = rng.choice(POS_NAMES)
    ax, ay = POSITIONS[pos]
    r = rng.uniform(11, 14)
    step = 36 if n == 3 else 40
    offs = [(k - (n - 1) / 2) * step for k in range(n)]
    objs = []
    for o in offs:
        if pos in ("left", "right"):
            cx, cy = ax, 64 + o
        else:
            cx, cy = 64 + o, ay
        cx += rng.uniform(-2, 2)
        cy += rng.uniform(-2, 2)
        cx, cy = _clamp_center(s, cx, cy, r)
        objs.append(dict(shape=s, color=f, size="small", pos=pos, r=r, cx=cx, cy=cy))
    return objs


def _pair(rng, bg, shapes, holdout):
    axis = rng.choice(["lr", "tb"])
    p1, p2 = ("left", "right") if axis == "lr" else ("top", "bottom")
    if rng.random() < 0.5:
        p1, p2 = p2, p1
    while True:
        o1 = _pick_obj(rng, bg, shapes, holdout)
        o2 = _pick_obj(rng, bg, shapes, holdout)
        if o1 != o2:
            break
    objs = []
    for (s, f), p in ((o1, p1), (o2, p2)):
        r = rng.uniform(13, 19)
        ax, ay = POSITIONS[p]
        cx, cy = _clamp_center(s, ax + rng.uniform(-3, 3), ay + rng.uniform(-3, 3), r)
        objs.append(dict(shape=s, color=f, size=None, pos=p, r=r, cx=cx, cy=cy))
    return objs


SINGLE_TEMPLATES = [
    "{a} {S}{fg} {shape}{P}, {bg} background",
    "{a} {S}{fg} {shape}{P} on {abg} {bg} background",
    "{bg} background with {a} {S}{fg} {shape}{P}",
    "{a} {S}{shape} in {fg}{P}, {bg} background",
    "an image of {a} {S}{fg} {shape}{P}, the background is {bg}",
    "{S}{fg} {shape}{P}, {bg} backdrop",
    "a drawing of {a} {S}{fg} {shape}{P} against {abg} {bg} background",
    "{fg} {shape}, {S}{P}, on {bg}",
]


def caption_single(rng, o, bg, canonical=False):
    if canonical:
        return f"{article(o['size'])} {o['size']} {o['color']} {o['shape']} {CANON_POS[o['pos']]}, {bg} background", True, True
    use_size = rng.random() < 0.7
    use_pos = rng.random() < 0.8
    S = (o["size"] + " ") if use_size else ""
    P = (" " + rng.choice(POS_PHRASES[o["pos"]])) if use_pos else ""
    t = rng.choice(SINGLE_TEMPLATES)
    if t.startswith("{fg} {shape}, {S}{P}"):
        mid = ", ".join(x for x in [o["size"] if use_size else "", P.strip()] if x)
        cap = f"{o['color']} {o['shape']}, " + (mid + ", " if mid else "") + f"on {bg}"
        return cap, use_size, use_pos
    first = S.strip() or (o["color"] if "{fg} {shape}" in t.split("{S}")[1][:14] else o["shape"])
    cap = t.format(a=article(first), S=S, fg=o["color"], shape=o["shape"], P=P, bg=bg, abg=article(bg))
    return " ".join(cap.split()), use_size, use_pos


def caption_group(rng, objs, bg):
    o = objs[0]
    n = NUMBERS[len(objs)]
    S = "small " if rng.random() < 0.6 else ""
    P = rng.choice(POS_PHRASES[o["pos"]])
    if rng.random() < 0.5:
        cap = f"{n} {S}{o['color']} {PLURAL[o['shape']]} {P}, {bg} background"
    else:
        cap = f"{bg} background with {n} {S}{o['color']} {PLURAL[o['shape']]} {P}"
    return cap, bool(S), True


def caption_pair(rng, objs, bg):
    a, b = objs
    pa, pb = rng.choice(POS_PHRASES[a["pos"]]), rng.choice(POS_PHRASES[b["pos"]])
    if rng.random() < 0.6:
        cap = f"{article(a['color'])} {a['color']} {a['shape']} {pa} and {article(b['color'])} {b['color']} {b['shape']} {pb}, {bg} background"
    else:
        cap = f"{bg} background, {article(a['color'])} {a['color']} {a['shape']} {pa}, {article(b['color'])} {b['color']} {b['shape']} {pb}"
    return cap, False, True


def labels_for(objs, bg, layout, use_size, use_pos):
    """Caption-level labels for the text-encoder auxiliary heads (-1 = not stated)."""
    o = objs[0]
    shape_ix = ALL_SHAPES.index
    lab = {
        "bg": COLOR_NAMES.index(bg),
        "fg": COLOR_NAMES.index(o["color"]),
        "shape": shape_ix(o["shape"]) if o["shape"] in ALL_SHAPES else -1,
        "size": SIZE_NAMES.index(o["size"]) if (use_size and o["size"]) else -1,
        "pos": POS_NAMES.index(o["pos"]) if use_pos else -1,
        "count": len(objs) - 1 if layout != "pair" else 0,
        "fg2": -1, "shape2": -1, "pos2": -1,
    }
    if layout == "pair":
        b = objs[1]
        lab.update(fg2=COLOR_NAMES.index(b["color"]), shape2=shape_ix(b["shape"]), pos2=POS_NAMES.index(b["pos"]))
    return lab


def _generic(rng):
    bg = rng.choice(COLOR_NAMES)
    layers = []
    for _ in range(rng.randint(1, 4)):
        col = COLORS[rng.choice([c for c in COLOR_NAMES if c != bg])]
        im = Image.new("L", (SIZE * SS, SIZE * SS), 0)
        d = ImageDraw.Draw(im)
        cx, cy = rng.uniform(15, 113) * SS, rng.uniform(15, 113) * SS
        r = rng.uniform(6, 30) * SS
        kind = rng.random()
        if kind < 0.3:
            n = rng.randint(3, 9)
            angs = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
            pts = [(cx + math.cos(a) * r * rng.uniform(0.4, 1.0), cy + math.sin(a) * r * rng.uniform(0.4, 1.0)) for a in angs]
            d.polygon(pts, fill=255)
        elif kind < 0.5:
            d.ellipse([cx - r, cy - r * rng.uniform(0.4, 1), cx + r, cy + r * rng.uniform(0.4, 1)], fill=255)
        elif kind < 0.7:
            w = rng.uniform(2, 6) * SS
            d.line([(cx, cy), (rng.uniform(5, 123) * SS, rng.uniform(5, 123) * SS)], fill=255, width=int(w))
        elif kind < 0.85:
            n = rng.randint(3, 8)
            a0 = rng.uniform(0, 2 * math.pi)
            pts = [(cx + math.cos(a0 + 2 * math.pi * k / n) * r, cy + math.sin(a0 + 2 * math.pi * k / n) * r) for k in range(n)]
            d.polygon(pts, fill=255)
        else:
            h = r * rng.uniform(0.5, 1)
            d.rectangle([cx - r, cy - h, cx + r, cy + h], fill=255)
        m = np.asarray(im) > 127
        if rng.random() < 0.35:
            m = outline_of(m, rng.choice([2, 3, 4]))
        layers.append((m, col))
    return compose(COLORS[bg], layers), bg


def sample(seed, kind="base", canonical=False, render_image=True):
    """Deterministic sample for (kind, seed). render_image=False skips drawing (captions/labels only)."""
    rng = random.Random(f"{kind}:{seed}")
    if kind == "generic":
        img, bg = _generic(rng)
        return dict(image=img, caption="", objects=[], bg=bg, labels=None, layout="generic")
    shapes = ["heart"] if kind == "heart" else SHAPES
    holdout = kind != "heart"
    bg = rng.choice(COLOR_NAMES)
    u = rng.random()
    layout = "single" if (canonical or u < 0.70) else ("group" if u < 0.88 else "pair")
    if layout == "single":
        objs = _single(rng, bg, shapes, holdout)
        cap, us, up = caption_single(rng, objs[0], bg, canonical)
    elif layout == "group":
        objs = _group(rng, bg, shapes, holdout)
        cap, us, up = caption_group(rng, objs, bg)
    else:
        objs = _pair(rng, bg, shapes, holdout)
        cap, us, up = caption_pair(rng, objs, bg)
    img = render(objs, bg, style="outline" if kind == "outline" else "filled") if render_image else None
    return dict(image=img, caption=cap, objects=objs, bg=bg, labels=labels_for(objs, bg, layout, us, up), layout=layout)


def render(objs, bg, style="filled"):
    layers = []
    for o in objs:
        m = draw_mask(o["shape"], o["cx"], o["cy"], o["r"])
        if style == "outline":
            m = outline_of(m, outline_width(o["r"]))
        layers.append((m, COLORS[o["color"]]))
    return compose(COLORS[bg], layers)


def recaption(seed, s, k):
    """Re-draw the caption of a single-object sample (k-th alternative): free text augmentation."""
    if s["layout"] != "single":
        return s["caption"], s["labels"]
    rng = random.Random(f"recap:{seed}:{k}")
    cap, us, up = caption_single(rng, s["objects"][0], s["bg"])
    return cap, labels_for(s["objects"], s["bg"], "single", us, up)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", default="base")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--out", default="/work/train/samples/base")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    ims, caps = [], []
    for i in range(args.start, args.start + args.n):
        s = sample(i, args.kind)
        ims.append(s["image"])
        caps.append(f"{i}\t{s['caption']}")
    cols = 8
    rows = (len(ims) + cols - 1) // cols
    sheet = np.zeros((rows * SIZE, cols * SIZE, 3), np.uint8)
    for k, im in enumerate(ims):
        sheet[(k // cols) * SIZE:(k // cols + 1) * SIZE, (k % cols) * SIZE:(k % cols + 1) * SIZE] = im
    Image.fromarray(sheet).save(os.path.join(args.out, "sheet.png"))
    with open(os.path.join(args.out, "captions.txt"), "w") as f:
        f.write("\n".join(caps) + "\n")
    print("\n".join(caps[:24]))
    print("holdout:", HOLDOUT)


if __name__ == "__main__":
    main()
