#!/usr/bin/env python3
"""Small image fixtures for the Imaging tests -> Tests/Fixtures/images/.

Each encoded file comes with `<name>.expected.png`: the RGB pixels PIL decodes from it
(`Image.open(f).convert("RGB")`), written losslessly, so the Swift decoders are checked against PIL.
Usage: /work/venv/bin/python tools/parity/make_image_fixtures.py
"""

import os

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "images")


def gradient(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // max(w + h - 2, 1)], -1)
    noise = rng.integers(-20, 20, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def save_pair(name, image, **save_kwargs):
    path = os.path.join(OUT, name)
    image.save(path, **save_kwargs)
    decoded = Image.open(path).convert("RGB")
    decoded.save(os.path.join(OUT, name.replace(".", "_") + ".expected.png"))


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = gradient(37, 23, 0)
    save_pair("photo.jpg", Image.fromarray(rgb), quality=85)
    save_pair("photo_420.jpg", Image.fromarray(gradient(40, 30, 1)), quality=70, subsampling=2)
    save_pair("gray.jpg", Image.fromarray(gradient(16, 12, 2)[:, :, 0]), quality=90)
    save_pair("gray.png", Image.fromarray(gradient(19, 11, 3)[:, :, 1]))
    rgba = np.concatenate([gradient(13, 9, 4), gradient(13, 9, 5)[:, :, :1]], -1)
    save_pair("rgba.png", Image.fromarray(rgba, "RGBA"))
    save_pair("palette.png", Image.fromarray(gradient(12, 12, 6)).convert("P", palette=Image.ADAPTIVE, colors=16))
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
