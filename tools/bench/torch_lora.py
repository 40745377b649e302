#!/usr/bin/env python3
"""diffusers baseline for `swiftdiffusion bench lora`: load_lora_weights, fuse_lora and unfuse_lora of a kohya
LoRA file on a full-size SD 1.5 pipeline with random weights, or on --model's pipeline (fp32, CPU). Runs --warmup untimed rounds first (as the
Swift side does), then prints the medians of --repetitions timed rounds; --json for one JSON line. `swiftdiffusion bench
lora` passes its own thread count and warm-up.

Usage: python tools/bench/torch_lora.py --file LORA.safetensors [--model FOLDER_OR_CHECKPOINT] [--repetitions 3] [--warmup 1] [--threads 2] [--json]
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet_step import SD15_UNET  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def build_pipeline(model=None):
    if model:
        # A diffusers folder or a single-file checkpoint, as `swiftdiffusion bench lora --model` reads it.
        if os.path.isdir(model):
            return StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False)
        return StableDiffusionPipeline.from_single_file(model, safety_checker=None, requires_safety_checker=False)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15_UNET).eval()
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                                num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu"))
    vae = AutoencoderKL(block_out_channels=(32,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        norm_num_groups=8)
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(REPO, "models", "shapes-sd", "tokenizer"))
    scheduler = PNDMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, skip_prk_steps=True)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--model", help="a model folder or checkpoint (default: SD 1.5 with random weights)")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before the timed ones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = build_pipeline(args.model)
    def round_trip():
        pipe.load_lora_weights(os.path.dirname(args.file), weight_name=os.path.basename(args.file), adapter_name="bench")
        pipe.fuse_lora(components=["unet"], lora_scale=1.0)
        pipe.unfuse_lora(components=["unet"])
        pipe.unload_lora_weights()

    for _ in range(args.warmup):
        round_trip()
    loads, fuses, unfuses = [], [], []
    for _ in range(args.repetitions):
        start = time.perf_counter()
        pipe.load_lora_weights(os.path.dirname(args.file), weight_name=os.path.basename(args.file), adapter_name="bench")
        loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipe.fuse_lora(components=["unet"], lora_scale=1.0)
        fuses.append(time.perf_counter() - start)
        start = time.perf_counter()
        pipe.unfuse_lora(components=["unet"])
        unfuses.append(time.perf_counter() - start)
        pipe.unload_lora_weights()
    result = {"load_seconds": statistics.median(loads), "fuse_seconds": statistics.median(fuses),
              "unfuse_seconds": statistics.median(unfuses), "torch": torch.__version__, "threads": torch.get_num_threads(),
              "warmup": args.warmup}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"load_lora_weights {result['load_seconds'] * 1000:.0f} ms, fuse_lora {result['fuse_seconds'] * 1000:.0f} ms, "
              f"unfuse_lora {result['unfuse_seconds'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
