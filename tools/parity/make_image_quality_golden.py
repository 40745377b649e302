#!/usr/bin/env python3
"""Golden for Imaging's ImageQuality (SSIM, PSNR): scikit-image's values on small uint8 RGB pairs.

  /work/venv/bin/python tools/parity/make_image_quality_golden.py   # writes Tests/Fixtures/images/image_quality.safetensors

SSIM as Wang et al. 2004 / ImageQuality.ssim: structural_similarity(a, b, channel_axis=-1, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255) (11x11 Gaussian window, K1 0.01, K2 0.03, per channel
averaged). PSNR: peak_signal_noise_ratio(a, b, data_range=255).
Cases (input.a<i>, input.b<i> as float32 HxWx3 holding 0...255 integers; output.ssim<i>, output.psnr<i>):
0: 24x20 random image vs the same + Gaussian noise (sigma 12); 1: a smooth gradient with a square vs a 2-px shifted
and brightened copy; 2: 16x16 random vs an unrelated random image.
"""
import os

import numpy as np
import skimage
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from golden_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "Fixtures", "images", "image_quality.safetensors")


def main():
    rng = np.random.default_rng(12)
    cases = []
    a = rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).round().astype(np.uint8)
    cases.append((a, b))
    yy, xx = np.mgrid[0:32, 0:32]
    g = np.stack([xx * 7, yy * 6, (xx + yy) * 3], -1).astype(np.float64)
    g[8:20, 10:22] = [200, 40, 90]
    a = np.clip(g, 0, 255).astype(np.uint8)
    b = np.clip(np.roll(g, 2, axis=1) + 15, 0, 255).astype(np.uint8)
    cases.append((a, b))
    a = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    cases.append((a, b))
    tensors = {}
    for i, (a, b) in enumerate(cases):
        s = structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255)
        p = peak_signal_noise_ratio(a, b, data_range=255)
        tensors[f"input.a{i}"] = torch.from_numpy(a.astype(np.float32))
        tensors[f"input.b{i}"] = torch.from_numpy(b.astype(np.float32))
        tensors[f"output.ssim{i}"] = torch.tensor([s], dtype=torch.float64).float()
        tensors[f"output.psnr{i}"] = torch.tensor([p], dtype=torch.float64).float()
        print(f"case {i}: {a.shape} ssim {s:.6f} psnr {p:.4f}")
    write_safetensors(OUT, tensors, {"case": "image_quality", "cases": str(len(cases)), "skimage": skimage.__version__})
    print("wrote", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
