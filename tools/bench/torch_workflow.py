#!/usr/bin/env python3
"""diffusers column of `swiftdiffusion bench workflow`: what a diffusers user does per request for a workload xC/yL on
one model (fp32, CPU): load_lora_weights + fuse_lora for each LoRA, a StableDiffusionControlNetPipeline with a
MultiControlNet of x ControlNets (the plain pipeline without), then unfuse_lora + unload_lora_weights. The same
model folder, ControlNet folder and LoRA files as the Swift run, the same size, steps, guidance and sampler
(DPM++ 2M), the same thread count; one untimed warm-up request per workload, then the median of --repetitions.

Prints one JSON object: {"xC/yL": {"total": s, "lora_load": s, "pipeline": s, "lora_unload": s}, ...}.

Usage: python tools/bench/torch_workflow.py --model DIR --controlnet DIR --loras A,B --workloads 0C/0L,1C/1L
       [--size 128] [--steps 10] [--cfg 7] [--repetitions 3] [--threads 2]
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from diffusers import (ControlNetModel, DPMSolverMultistepScheduler, MultiControlNetModel, StableDiffusionControlNetPipeline,
                       StableDiffusionPipeline)
from PIL import Image


def ring(side):
    y, x = np.mgrid[0:side, 0:side]
    radius = np.sqrt((x - side // 2) ** 2 + (y - side // 2) ** 2)
    edges = (np.abs(radius - side / 4) < 1).astype(np.uint8) * 255
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--controlnet", required=True)
    parser.add_argument("--loras", default="")
    parser.add_argument("--workloads", required=True)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--cfg", type=float, default=7)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loras = [path for path in args.loras.split(",") if path]
    base = StableDiffusionPipeline.from_pretrained(args.model, safety_checker=None, requires_safety_checker=False,
                                                   torch_dtype=torch.float32)
    base.scheduler = DPMSolverMultistepScheduler.from_config(base.scheduler.config)
    base.set_progress_bar_config(disable=True)
    workloads = [w.split("/") for w in args.workloads.split(",")]
    most = max(int(c[:-1]) for c, _ in workloads)
    controlnets = [ControlNetModel.from_pretrained(args.controlnet, torch_dtype=torch.float32) for _ in range(most)]
    image = ring(args.size)
    results = {}
    for c_text, l_text in workloads:
        count_c, count_l = int(c_text[:-1]), int(l_text[:-1])
        if count_c == 0:
            pipe, extra = base, {}
        else:
            net = controlnets[0] if count_c == 1 else MultiControlNetModel(controlnets[:count_c])
            pipe = StableDiffusionControlNetPipeline(**base.components, controlnet=net)
            pipe.set_progress_bar_config(disable=True)
            extra = {"image": image if count_c == 1 else [image] * count_c}
        samples = {"total": [], "lora_load": [], "pipeline": [], "lora_unload": []}
        for repetition in range(args.repetitions + 1):
            start = time.perf_counter()
            names = []
            for index, path in enumerate(loras[:count_l]):
                name = f"lora{index}"
                pipe.load_lora_weights(os.path.dirname(path), weight_name=os.path.basename(path), adapter_name=name)
                names.append(name)
            if names:
                pipe.set_adapters(names, adapter_weights=[0.8] * len(names))
                pipe.fuse_lora(components=["unet"], adapter_names=names)
            loaded = time.perf_counter()
            pipe("a red circle on a blue background", negative_prompt="", height=args.size, width=args.size,
                 num_inference_steps=args.steps, guidance_scale=args.cfg, generator=torch.Generator().manual_seed(repetition),
                 **extra)
            generated = time.perf_counter()
            if names:
                pipe.unfuse_lora(components=["unet"])
                pipe.unload_lora_weights()
            end = time.perf_counter()
            if repetition == 0:
                continue
            samples["total"].append(end - start)
            samples["lora_load"].append(loaded - start)
            samples["pipeline"].append(generated - loaded)
            samples["lora_unload"].append(end - generated)
        results[f"{c_text}/{l_text}"] = {key: statistics.median(values) for key, values in samples.items()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
