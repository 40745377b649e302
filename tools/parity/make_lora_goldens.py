#!/usr/bin/env python3
"""LoRA parity goldens -> Tests/Fixtures/lora/.

Takes the tiny SD 1.x UNet of Tests/Fixtures/components/unet_sd1.safetensors (run make_component_goldens.py
first), attaches two PEFT LoRA adapters with random weights through diffusers (`unet.add_adapter`):
  a: rank 4, alpha 8, on attention q/k/v/out, feed-forward, proj_in/proj_out (1x1 convs in SD 1.x),
     resnet convs (3x3, LoCon), conv shortcuts, time-embedding projections and conv_in;
  b: rank 2, alpha 1, on to_k, to_v and resnet conv2;
and writes adapter `a` in the three layouts users have:
  a_kohya.safetensors        lora_unet_<path>.lora_down.weight / .lora_up.weight / .alpha
  a_diffusers.safetensors    unet.<path>.lora_A.weight / lora_B.weight + lora_adapter_metadata (save_lora_weights)
  a_peft/adapter_model.safetensors + adapter_config.json   base_model.model.<path>.lora_A.weight
and `b` as b_kohya.safetensors. reference.safetensors holds the UNet outputs computed by diffusers/PEFT on the
unet_sd1 golden's inputs: output.base (no LoRA), output.a (a at weight 1), output.ab (a at 0.7, b at -0.4).
Usage: /work/venv/bin/python tools/parity/make_lora_goldens.py
"""

import json
import os
import shutil
import sys

import torch
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")
OUT = os.path.join(FIXTURES, "lora")

TARGETS_A = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1", "conv2",
             "conv_shortcut", "time_emb_proj", "conv_in"]
TARGETS_B = ["to_k", "to_v", "conv2"]


def load_unet():
    path = os.path.join(FIXTURES, "components", "unet_sd1.safetensors")
    with safe_open(path, "pt") as f:
        config = json.loads(f.metadata()["config"])
        params = {k[len("param."):]: f.get_tensor(k) for k in f.keys() if k.startswith("param.")}
        inputs = {k[len("input."):]: f.get_tensor(k) for k in f.keys() if k.startswith("input.")}
    unet = UNet2DConditionModel(**config).eval()
    unet.load_state_dict(params)
    return unet, inputs


def randomize_adapter(unet, name, g, std):
    with torch.no_grad():
        for pname, p in unet.named_parameters():
            if f".{name}." in pname and "lora_" in pname:
                p.copy_(gio.randn(g, *p.shape, std=std))


def forward(unet, inputs):
    with torch.no_grad():
        return unet(inputs["sample"], inputs["timestep"], inputs["encoder_hidden_states"]).sample


def write_plain(path, tensors, metadata=None):
    """Deterministic safetensors (sorted keys, fixed metadata order) via golden_io's writer."""
    gio.write_safetensors(path, tensors, metadata or {})


def main():
    gio.setup_torch()
    g = gio.make_generator("lora")
    unet, inputs = load_unet()
    base = forward(unet, inputs)

    unet.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS_A, init_lora_weights=False), adapter_name="a")
    unet.add_adapter(LoraConfig(r=2, lora_alpha=1, target_modules=TARGETS_B, init_lora_weights=False), adapter_name="b")
    randomize_adapter(unet, "a", g, 0.15)
    randomize_adapter(unet, "b", g, 0.3)

    unet.set_adapters(["a"], [1.0])
    out_a = forward(unet, inputs)
    unet.set_adapters(["a", "b"], [0.7, -0.4])
    out_ab = forward(unet, inputs)

    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    state_a = get_peft_model_state_dict(unet, adapter_name="a")
    state_b = get_peft_model_state_dict(unet, adapter_name="b")

    def kohya(state, alpha):
        tensors = {}
        for key, value in state.items():
            module, kind = key.rsplit(".lora_", 1)
            stem = "lora_unet_" + module.replace(".", "_")
            tensors[stem + (".lora_down.weight" if kind.startswith("A") else ".lora_up.weight")] = value
            tensors[stem + ".alpha"] = torch.tensor(float(alpha))
        return tensors

    write_plain(os.path.join(OUT, "a_kohya.safetensors"), kohya(state_a, 8))
    write_plain(os.path.join(OUT, "b_kohya.safetensors"), kohya(state_b, 1))

    # diffusers' own writer, then re-written deterministically with the same keys and metadata.
    scratch = os.path.join(OUT, "_scratch")
    StableDiffusionPipeline.save_lora_weights(
        scratch, unet_lora_layers=state_a, unet_lora_adapter_metadata=unet.peft_config["a"].to_dict(),
        weight_name="a.safetensors")
    with safe_open(os.path.join(scratch, "a.safetensors"), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata() or {}
    shutil.rmtree(scratch)
    metadata = {k: json.dumps(json.loads(v), sort_keys=True) if k == "lora_adapter_metadata" else v
                for k, v in metadata.items()}
    write_plain(os.path.join(OUT, "a_diffusers.safetensors"), tensors, metadata)

    peft_dir = os.path.join(OUT, "a_peft")
    os.makedirs(peft_dir)
    write_plain(os.path.join(peft_dir, "adapter_model.safetensors"),
                {"base_model.model." + k: v for k, v in state_a.items()})
    with open(os.path.join(peft_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": TARGETS_A}, f, indent=2, sort_keys=True)

    gio.write_golden(
        os.path.join(OUT, "reference.safetensors"), case="lora_reference", module="diffusers+peft",
        attrs={"a": {"r": 4, "alpha": 8, "weight": 1.0}, "ab": {"a": 0.7, "b": -0.4}},
        inputs={}, params={}, outputs={"base": base, "a": out_a, "ab": out_ab},
        extra_metadata={"forward": "UNet of components/unet_sd1 on its inputs, with adapters set by set_adapters"})
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print("wrote", sorted(os.listdir(OUT)), f"total {gio.fmt_size(total)}")
    print("max |a - base| =", (out_a - base).abs().max().item(), " max |ab - base| =", (out_ab - base).abs().max().item())


if __name__ == "__main__":
    main()
