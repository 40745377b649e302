#!/usr/bin/env python3
"""Goldens for the model-free ControlNet preprocessors and the resamplers -> Tests/Fixtures/preprocessors/.

What the Swift Imaging tests compare against:
- `cv2.Canny(image, low, high)` (apertureSize 3, L1 gradient) as AUTOMATIC1111's ControlNet extension and the
  diffusers ControlNet examples call it: on the 8-bit RGB array for colour images (OpenCV's per-pixel
  "channel with the largest gradient" path), on the 2-D array for grayscale ones;
- `cv2.GaussianBlur(image, ksize, sigma)` on 8-bit images (BORDER_REFLECT_101, OpenCV's bit-exact fixed point);
- `PIL.Image.resize(size, filter)` on RGB images (LANCZOS as diffusers' VaeImageProcessor uses, BICUBIC,
  BILINEAR, NEAREST). Pillow 13 changed the order of the two passes for strong vertical shrinks; the goldens
  follow the pinned Pillow (see manifest.json's pillow_version).

Every image is a PNG (inputs RGB or L; Canny edges and blurred grayscale images L), listed in
`manifest.json` with the parameters of each case. Inputs are drawn procedurally and deterministically.
Usage: /work/venv/bin/python tools/parity/make_preprocessor_goldens.py
"""

import json
import os
import zlib

import cv2
import numpy as np
import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "preprocessors")

CANNY_THRESHOLDS = [(100, 200), (50, 150), (200, 100), (0, 0)]
# (kernel width/height, sigma, low, high): blur then Canny; ksize 0 derives the size from sigma.
BLUR_CANNY = [(5, 1.4, 100, 200), (5, 1.4, 30, 90)]
# Blur-only cases, to check the fixed-point Gaussian on its own.
BLURS = [(5, 1.4), (3, 0.0), (0, 2.0), (7, 0.0)]
RESIZES = [
    # (source image, width, height, filter)
    ("colour_120x90", 64, 64, "lanczos"),
    ("colour_120x90", 64, 64, "bicubic"),
    ("colour_120x90", 64, 64, "bilinear"),
    ("colour_120x90", 64, 64, "nearest"),
    ("shapes_97x61", 64, 64, "lanczos"),
    ("photo_256x256", 128, 128, "lanczos"),
    ("photo_256x256", 200, 96, "lanczos"),
    ("tiny_37x23", 80, 48, "lanczos"),
    ("tiny_37x23", 80, 48, "bicubic"),
    ("tiny_37x23", 80, 48, "bilinear"),
    ("tiny_37x23", 80, 48, "nearest"),
    ("tiny_37x23", 37, 48, "lanczos"),
    ("tiny_37x23", 111, 69, "lanczos"),
    # Pillow >= 13 runs the vertical pass first when the height shrinks by > 2x the width's shrink.
    ("colour_120x90", 100, 30, "lanczos"),
    ("colour_120x90", 100, 30, "bicubic"),
    ("tiny_37x23", 30, 8, "bilinear"),
]
PIL_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()) & 0x7FFFFFFF)


def shapes_97x61():
    """Gray shapes: filled and outlined circles, a star, anti-aliased lines, a rectangle (grayscale)."""
    img = np.full((61, 97), 40, np.uint8)
    cv2.circle(img, (25, 30), 18, 200, -1, cv2.LINE_AA)
    cv2.circle(img, (25, 30), 8, 90, 2, cv2.LINE_AA)
    star = []
    for k in range(10):
        r = 20 if k % 2 == 0 else 8
        a = np.pi / 2 + k * np.pi / 5
        star.append((70 + r * np.cos(a), 32 - r * np.sin(a)))
    cv2.fillPoly(img, [np.round(np.array(star) * 16).astype(np.int32)], 160, cv2.LINE_AA, shift=4)
    cv2.line(img, (2, 58), (95, 3), 255, 1, cv2.LINE_AA)
    cv2.line(img, (5, 5), (60, 55), 120, 2, cv2.LINE_AA)
    cv2.rectangle(img, (48, 44), (58, 58), 230, -1)
    return img


def text_128x80():
    """Text-like strokes: Hershey glyphs, anti-aliased, dark on light (grayscale)."""
    img = np.full((80, 128), 235, np.uint8)
    cv2.putText(img, "Swift", (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 20, 2, cv2.LINE_AA)
    cv2.putText(img, "ctrl 42", (6, 62), cv2.FONT_HERSHEY_COMPLEX, 0.8, 70, 1, cv2.LINE_AA)
    cv2.ellipse(img, (100, 60), (20, 12), 30, 0, 270, 0, 3, cv2.LINE_AA)
    return img


def photo_256x256():
    """A noisy photo-like gradient with soft blobs and a hard-edged object (grayscale, 256x256)."""
    rng = rng_for("photo_256x256")
    y, x = np.mgrid[0:256, 0:256].astype(np.float64)
    base = 60 + 0.4 * x + 0.25 * y + 25 * np.sin(x / 17) * np.cos(y / 23)
    for cx, cy, r, amp in [(80, 90, 30, 60), (180, 160, 45, -50), (200, 60, 20, 80)]:
        base += amp * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
    base[150:220, 30:110] = 230
    base += rng.normal(0, 6, size=base.shape)
    img = np.clip(np.round(base), 0, 255).astype(np.uint8)
    cv2.circle(img, (140, 200), 25, 15, -1, cv2.LINE_AA)
    return img


def colour_120x90():
    """Colour shapes with edges that exist in one channel only (isoluminant-ish), plus noise (RGB)."""
    rng = rng_for("colour_120x90")
    img = np.zeros((90, 120, 3), np.uint8)
    img[:, :] = (90, 140, 60)
    cv2.circle(img, (35, 40), 25, (200, 60, 60), -1, cv2.LINE_AA)
    cv2.circle(img, (35, 40), 10, (200, 60, 200), -1, cv2.LINE_AA)  # edge only in blue
    cv2.rectangle(img, (70, 10), (110, 50), (90, 220, 60), -1)  # edge only in green
    cv2.line(img, (5, 85), (115, 60), (30, 30, 250), 2, cv2.LINE_AA)
    cv2.putText(img, "RGB", (62, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (250, 250, 0), 2, cv2.LINE_AA)
    noise = rng.integers(-8, 9, size=img.shape)
    return np.clip(img.astype(np.int32) + noise, 0, 255).astype(np.uint8)


def tiny_37x23():
    """A small colour gradient with noise and a bright square (RGB); also the resampling source."""
    rng = rng_for("tiny_37x23")
    y, x = np.mgrid[0:23, 0:37]
    img = np.stack([x * 255 // 36, y * 255 // 22, (x * 7 + y * 11) % 256], -1)
    img = img + rng.integers(-30, 31, size=img.shape)
    img[5:12, 20:30] = (255, 255, 255)
    img[14:18, 3:9] = (0, 0, 0)
    return np.clip(img, 0, 255).astype(np.uint8)


def noise_7x5():
    """Pure noise, smaller than the blur kernels (grayscale): border handling everywhere."""
    return rng_for("noise_7x5").integers(0, 256, size=(5, 7)).astype(np.uint8)


def noise_64x48():
    """Colour noise at two contrasts (RGB): every gradient direction, ties between channels, busy hysteresis."""
    rng = rng_for("noise_64x48")
    img = rng.integers(0, 256, size=(48, 64, 3))
    img[:, 32:] = img[:, 32:] // 8 + 100
    img[20:28, :, 1] = img[20:28, :, 0]  # equal channels: magnitude ties
    return img.astype(np.uint8)


IMAGES = {
    "shapes_97x61": shapes_97x61,
    "text_128x80": text_128x80,
    "photo_256x256": photo_256x256,
    "colour_120x90": colour_120x90,
    "tiny_37x23": tiny_37x23,
    "noise_7x5": noise_7x5,
    "noise_64x48": noise_64x48,
}


def save(array, name):
    mode = "L" if array.ndim == 2 else "RGB"
    Image.fromarray(array, mode).save(os.path.join(OUT, name), optimize=True)
    return name


def threshold_tag(value):
    return f"{value:g}".replace(".", "p")


def main():
    os.makedirs(OUT, exist_ok=True)
    for stale in os.listdir(OUT):
        if stale.endswith(".png") or stale == "manifest.json":
            os.remove(os.path.join(OUT, stale))
    images = {name: make() for name, make in IMAGES.items()}
    manifest = {
        "generator": "tools/parity/make_preprocessor_goldens.py",
        "opencv_version": cv2.__version__,
        "pillow_version": PIL.__version__,
        "images": [],
        "canny": [],
        "blur": [],
        "resize": [],
    }
    for name, array in images.items():
        manifest["images"].append({"name": name, "file": save(array, f"{name}.png"), "channels": 1 if array.ndim == 2 else 3})
        for low, high in CANNY_THRESHOLDS:
            edges = cv2.Canny(array, low, high)
            case = f"{name}.canny_{low}_{high}"
            manifest["canny"].append({"image": name, "low": low, "high": high, "blur": None, "file": save(edges, case + ".png")})
        for ksize, sigma, low, high in BLUR_CANNY:
            blurred = cv2.GaussianBlur(array, (ksize, ksize), sigma)
            edges = cv2.Canny(blurred, low, high)
            case = f"{name}.blur{ksize}_{threshold_tag(sigma)}.canny_{low}_{high}"
            blur = {"ksize": ksize, "sigma": sigma}
            manifest["canny"].append({"image": name, "low": low, "high": high, "blur": blur, "file": save(edges, case + ".png")})
        for ksize, sigma in BLURS:
            if array.ndim == 3 and ksize != 5:
                continue  # one colour blur case is enough; the channels are independent
            blurred = cv2.GaussianBlur(array, (ksize, ksize), sigma)
            case = f"{name}.blur{ksize}_{threshold_tag(sigma)}"
            manifest["blur"].append({"image": name, "ksize": ksize, "sigma": sigma, "file": save(blurred, case + ".png")})
    for source, width, height, filter_name in RESIZES:
        array = images[source]
        pil = Image.fromarray(array).convert("RGB")
        resized = np.asarray(pil.resize((width, height), PIL_FILTERS[filter_name]))
        case = f"{source}.resize_{width}x{height}_{filter_name}"
        manifest["resize"].append(
            {"image": source, "width": width, "height": height, "filter": filter_name, "file": save(resized, case + ".png")}
        )
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1024:.1f} KiB, to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
