#!/usr/bin/env python3
"""PyTorch (diffusers) baseline for `swiftdiffusion bench unet`: seconds per UNet call of the full-size
SD 1.5 architecture with random weights, fp32 on CPU (or under torch.autocast("cpu", dtype=torch.bfloat16) with
--autocast bf16), and peak RSS.

Usage: /work/venv/bin/python tools/bench/torch_unet_step.py [--resolution 512] [--batch 2] [--repetitions 3]
       [--threads 2] [--autocast bf16] [--json]
Prints one JSON line with --json (what `swiftdiffusion bench unet --torch-python ...` reads).
"""

import argparse
import contextlib
import json
import statistics
import time

from process_memory import peak_rss_mib  # noqa: E402
import torch
from diffusers import UNet2DConditionModel

SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, out_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, sample_size=64,
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--autocast", choices=["none", "bf16"], default="none")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    latent = args.resolution // 8
    sample = torch.randn(args.batch, 4, latent, latent)
    context = torch.randn(args.batch, 77, 768)
    timestep = torch.tensor([500.0])
    times = []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        unet(sample, timestep, context)  # warm-up
        for _ in range(args.repetitions):
            start = time.perf_counter()
            unet(sample, timestep, context)
            times.append(time.perf_counter() - start)
    peak_mib = peak_rss_mib()
    result = {
        "torch": torch.__version__, "threads": args.threads, "resolution": args.resolution, "batch": args.batch, "autocast": args.autocast,
        "median_seconds": statistics.median(times), "all_seconds": times, "peak_rss_mib": peak_mib,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"PyTorch {torch.__version__}, {args.threads} threads: SD 1.5 UNet batch {args.batch} at "
              f"{args.resolution}px: median {result['median_seconds']:.2f} s/call ({', '.join(f'{t:.2f}' for t in times)}), "
              f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
