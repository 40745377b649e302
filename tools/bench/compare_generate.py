#!/usr/bin/env python3
"""Swift engine vs diffusers on the same model, in one run: seconds per complete image (prompt encoding,
denoising with classifier-free guidance, VAE decode), model loading excluded, median of N after a warm-up.

Usage: /work/venv/bin/python tools/bench/compare_generate.py [--model models/shapes-sd] [--size 128] [--steps 20]
       [--repetitions 5] [--threads 2] [--swift .build/release/swiftdiffusion]
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import torch
from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=os.path.join(REPO, "models", "shapes-sd"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=6.0)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--swift", default=os.path.join(REPO, ".build", "release", "swiftdiffusion"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    pipe = StableDiffusionPipeline.from_pretrained(args.model, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    times = []
    with torch.inference_mode():
        for repetition in range(args.repetitions + 1):
            start = time.perf_counter()
            pipe("a red circle on a blue background", negative_prompt="", num_inference_steps=args.steps,
                 guidance_scale=args.cfg, height=args.size, width=args.size, generator=torch.Generator().manual_seed(repetition))
            if repetition:
                times.append(time.perf_counter() - start)
    torch_median = statistics.median(times)

    env = dict(os.environ, SWIFTDIFFUSION_THREADS=str(args.threads))
    output = subprocess.run(
        [args.swift, "bench", "generate", "--model", args.model, "--size", str(args.size), "--steps", str(args.steps),
         "--sampler", "dpmpp_2m", "--cfg", str(args.cfg), "--repetitions", str(args.repetitions), "--json"],
        check=True, capture_output=True, text=True, env=env).stdout
    swift = json.loads(output.strip().splitlines()[-1])

    print(f"model {args.model}: {args.size}x{args.size}, {args.steps} steps DPM++ 2M, cfg {args.cfg}, {args.threads} threads")
    print(f"diffusers {torch.__version__}: median {torch_median:.3f} s/image ({', '.join(f'{t:.3f}' for t in times)})")
    print(f"swift:    median {swift['median_seconds']:.3f} s/image ({', '.join(f'{t:.3f}' for t in swift['all_seconds'])})")
    print(f"ratio swift / diffusers = {swift['median_seconds'] / torch_median:.2f} (below 1: the Swift engine is faster)")


if __name__ == "__main__":
    main()
