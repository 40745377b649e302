#!/usr/bin/env python3
"""PyTorch (diffusers) baseline for `swiftdiffusion bench pipeline`: seconds per image of a whole
StableDiffusionPipeline (CLIP text encoder, UNet with classifier-free guidance, VAE decode to a PIL image) built
from the SD 1.5 configs with random weights, on CPU, and peak RSS. fp32, or bf16 autocast (`--autocast bf16`:
`torch.autocast("cpu", dtype=torch.bfloat16)`, what PyTorch users run on processors with AVX512-BF16/AMX).

Usage: /work/venv/bin/python tools/bench/torch_pipeline.py [--resolution 512] [--steps 20] [--repetitions 1]
       [--threads 2] [--autocast bf16] [--tokenizer models/shapes-sd/tokenizer] [--json]
One untimed 1-step image first (warm-up), as the Swift side does. Prints one JSON line with --json.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

from process_memory import peak_rss_mib  # noqa: E402
import torch
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_unet_step import SD15_UNET  # noqa: E402
from torch_vae import SD15_VAE  # noqa: E402

# OpenAI CLIP ViT-L/14's text tower, as in SD 1.5's text_encoder/config.json.
SD15_TEXT_ENCODER = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
)
# SD 1.5's scheduler_config.json (diffusers' DPM++ 2M built from it, as `--sampler dpmpp_2m` does in Swift).
SD15_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="epsilon", set_alpha_to_one=False, steps_offset=1, skip_prk_steps=True, clip_sample=False,
)
PROMPT = "a photograph of an astronaut riding a horse"
GUIDANCE = 7.5


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--autocast", choices=["none", "bf16"], default="none")
    parser.add_argument("--tokenizer", default=os.path.join(root, "models/shapes-sd/tokenizer"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**SD15_VAE).eval(),
        text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT_ENCODER)).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(args.tokenizer),
        unet=UNet2DConditionModel(**SD15_UNET).eval(),
        scheduler=DPMSolverMultistepScheduler.from_config(SD15_SCHEDULER),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if args.autocast == "bf16" else contextlib.nullcontext()

    def image(steps, seed):
        return pipe(PROMPT, negative_prompt="", height=args.resolution, width=args.resolution, num_inference_steps=steps,
                    guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(seed), output_type="pil").images[0]

    times = []
    with torch.inference_mode(), autocast:
        image(1, 0)  # warm-up
        for repetition in range(args.repetitions):
            start = time.perf_counter()
            image(args.steps, repetition)
            times.append(time.perf_counter() - start)
    peak_mib = peak_rss_mib()
    import diffusers
    result = {
        "torch": torch.__version__, "diffusers": diffusers.__version__, "threads": args.threads,
        "resolution": args.resolution, "steps": args.steps, "autocast": args.autocast,
        "median_seconds": statistics.median(times), "all_seconds": times, "peak_rss_mib": peak_mib,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"diffusers {diffusers.__version__} (torch {torch.__version__}), {args.threads} threads, "
              f"autocast {args.autocast}: SD 1.5 pipeline {args.resolution}px {args.steps} steps: "
              f"median {result['median_seconds']:.2f} s/image, peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
