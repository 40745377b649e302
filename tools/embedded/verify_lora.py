#!/usr/bin/env python3
"""Check a kohya LoRA file against diffusers' loader.

Loads the base pipeline, applies the LoRA through `pipe.load_lora_weights(file)` and compares
UNet and text-encoder outputs with a reference that applies the same file by hand
(W x + alpha/rank * up(down(x)) on the named modules).  Also reports how much the LoRA changes
the outputs (so a file whose keys were silently ignored is caught: diff-vs-base would be 0).

  python tools/embedded/verify_lora.py --lora models/shapes-sd-loras/heart.safetensors
"""
import argparse
import os

import torch
from safetensors.torch import load_file

from lora import TE_TARGETS, UNET_TARGETS, inject

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=os.path.join(REPO, "models/shapes-sd"))
    ap.add_argument("--lora", required=True)
    ap.add_argument("--prompt", default="a large red heart in the center, blue background")
    args = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel
    sd = load_file(args.lora)
    names = sorted({k.split(".")[0] for k in sd})
    has_te = any(n.startswith("lora_te_") for n in names)
    pipe = StableDiffusionPipeline.from_pretrained(args.base, torch_dtype=torch.float32, safety_checker=None,
                                                   requires_safety_checker=False)
    ids = pipe.tokenizer(args.prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 16, 16, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        h0 = pipe.text_encoder(ids).last_hidden_state
        e0 = pipe.unet(x, t, h0).sample
    pipe.load_lora_weights(args.lora, adapter_name="x")
    with torch.no_grad():
        h1 = pipe.text_encoder(ids).last_hidden_state
        e1 = pipe.unet(x, t, h1).sample
    # reference: hand-applied
    unet = UNet2DConditionModel.from_pretrained(args.base, subfolder="unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(args.base, subfolder="text_encoder", torch_dtype=torch.float32)
    mods = {**inject(unet, UNET_TARGETS, 1, 1.0, "lora_unet_"), **inject(te, TE_TARGETS, 1, 1.0, "lora_te_")}
    used = 0
    for name, m in mods.items():
        if f"{name}.lora_down.weight" not in sd:
            m.lora_up.weight.data.zero_()
            continue
        down, up = sd[f"{name}.lora_down.weight"].float(), sd[f"{name}.lora_up.weight"].float()
        m.rank = down.shape[0]
        m.alpha = float(sd[f"{name}.alpha"])
        m.lora_down = torch.nn.Linear(down.shape[1], down.shape[0], bias=False)
        m.lora_up = torch.nn.Linear(up.shape[1], up.shape[0], bias=False)
        m.lora_down.weight.data.copy_(down)
        m.lora_up.weight.data.copy_(up)
        used += 1
    assert used == len(names), f"file has {len(names)} modules, matched {used}: names do not map onto the model"
    with torch.no_grad():
        h2 = te(ids).last_hidden_state
        e2 = unet(x, t, h2).sample
    print(f"modules in file: {len(names)} (text encoder: {has_te}); all mapped onto model modules")
    print(f"text states  : |diffusers - reference| max {(h1 - h2).abs().max():.2e}; LoRA effect |with - base| max {(h1 - h0).abs().max():.3f}")
    print(f"unet epsilon : |diffusers - reference| max {(e1 - e2).abs().max():.2e}; LoRA effect |with - base| max {(e1 - e0).abs().max():.3f}")
    ok = (e1 - e2).abs().max() < 1e-3 and (h1 - h2).abs().max() < 1e-3 and (e1 - e0).abs().max() > 1e-3
    print("VERIFY", "OK" if ok else "FAILED")


if __name__ == "__main__":
    main()
