#!/usr/bin/env python3
"""PyTorch (diffusers) baseline for `swiftdiffusion bench vae`: seconds per VAE decode of the SD 1.5 AutoencoderKL
architecture with random weights (latents [1, 4, R/8, R/8] -> an R x R image), fp32 on CPU, and peak RSS.

Usage: /work/venv/bin/python tools/bench/torch_vae.py [--resolution 512] [--repetitions 3] [--threads 2] [--json]
Prints one JSON line with --json (what `swiftdiffusion bench vae --torch-python ...` reads). One untimed decode
first, as the Swift side does.
"""

import argparse
import json
import statistics
import time

from process_memory import peak_rss_mib  # noqa: E402
import torch
from diffusers import AutoencoderKL

SD15_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], in_channels=3, out_channels=3, latent_channels=4,
    layers_per_block=2, norm_num_groups=32, sample_size=512, scaling_factor=0.18215,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(**SD15_VAE).eval()
    latent = args.resolution // 8
    latents = torch.randn(1, 4, latent, latent)
    times = []
    with torch.inference_mode():
        vae.decode(latents)  # warm-up
        for _ in range(args.repetitions):
            start = time.perf_counter()
            vae.decode(latents)
            times.append(time.perf_counter() - start)
    peak_mib = peak_rss_mib()
    result = {
        "torch": torch.__version__, "threads": args.threads, "resolution": args.resolution,
        "median_seconds": statistics.median(times), "all_seconds": times, "peak_rss_mib": peak_mib,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PyTorch {torch.__version__}, {args.threads} threads: SD 1.5 VAE decode at {args.resolution}px: "
              f"median {result['median_seconds']:.2f} s, peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
