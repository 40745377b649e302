#!/usr/bin/env python3
"""Export training checkpoints to the shipped formats.

  # base model -> diffusers folder (fp16 safetensors), EMA weights
  python tools/embedded/export.py base --vae /work/train/vae/ckpt.pt --unet /work/train/unet/ckpt.pt \
      --out models/shapes-sd
  # LoRA (peft state in a training checkpoint) -> kohya/sd-scripts safetensors (fp16)
  python tools/embedded/export.py lora --ckpt /work/train/lora_heart/ckpt.pt --out models/shapes-sd-loras/heart.safetensors
  # ControlNet -> diffusers ControlNetModel folder (fp16)
  python tools/embedded/export.py controlnet --ckpt /work/train/controlnet/ckpt.pt --out models/shapes-sd-controlnet-canny
"""
import argparse
import json
import os
import shutil
import sys

import torch

from common import SCHED, TEXT_CONFIG, UNET_CONFIG, VAE_CONFIG, load_ckpt, log

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def load_vae(path, scaling_factor):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=scaling_factor)
    ck = load_ckpt(path)
    vae.load_state_dict(ck["model"])
    for p, s in zip(vae.parameters(), ck["ema"]):
        p.data.copy_(s)
    return vae.eval()


def load_unet_te(path, use_ema=True):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    ck = load_ckpt(path)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    te = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    if "unet" in ck:
        unet.load_state_dict(ck["unet"])
    if "te" in ck:
        te.load_state_dict(ck["te"])
    if use_ema:
        params = list(unet.parameters()) + list(te.parameters())
        for p, s in zip(params, ck["ema"]):
            p.data.copy_(s)
    return unet.eval(), te.eval(), ck.get("scaling_factor")


def scheduler():
    # The model's recommended sampler (what tools/embedded/evaluate.py scores): DPM++ 2M, configured exactly as
    # DPMSolverMultistepScheduler.from_config() of SD 1.5's PNDM config (leading spacing, steps_offset 1).
    from diffusers import DPMSolverMultistepScheduler
    return DPMSolverMultistepScheduler(num_train_timesteps=SCHED["num_train_timesteps"], beta_start=SCHED["beta_start"],
                                       beta_end=SCHED["beta_end"], beta_schedule="scaled_linear", steps_offset=1,
                                       timestep_spacing="leading", prediction_type="epsilon")


def export_base(args):
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer
    unet, te, sf = load_unet_te(args.unet)
    vae = load_vae(args.vae, sf)
    tok_dir = os.path.join(args.out, "tokenizer")
    tok = CLIPTokenizer.from_pretrained(tok_dir if os.path.isdir(tok_dir) else args.tokenizer)
    keep_tok = None
    if os.path.isdir(tok_dir):  # keep the tokenizer files written by make_clip_tokenizer.py byte-exact
        keep_tok = tok_dir + ".keep"
        shutil.rmtree(keep_tok, ignore_errors=True)
        shutil.copytree(tok_dir, keep_tok)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=scheduler(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16)
    pipe.save_pretrained(args.out, safe_serialization=True)
    if keep_tok:
        shutil.rmtree(tok_dir)
        shutil.move(keep_tok, tok_dir)
    # model_index: no safety checker / feature extractor entries pointing at missing folders
    mi_path = os.path.join(args.out, "model_index.json")
    mi = json.load(open(mi_path))
    for k in ("safety_checker", "feature_extractor", "image_encoder"):
        if k in mi and (mi[k] is None or mi[k] == [None, None]):
            mi[k] = [None, None]
    json.dump(mi, open(mi_path, "w"), indent=2)
    # transformers 5 writes CLIPTextModel keys without the "text_model." prefix; the SD 1.x layout (and the
    # Swift engine) expect "text_model.<...>", which transformers also loads. Rewrite the file that way.
    from safetensors.torch import save_file
    te_sd = {k if k.startswith("text_model.") else "text_model." + k: v.to(torch.float16).contiguous()
             for k, v in te.state_dict().items()}
    save_file(te_sd, os.path.join(args.out, "text_encoder", "model.safetensors"), metadata={"format": "pt"})
    log("exported base ->", args.out, "scaling_factor", sf)
    check_keys(args.out)


def check_keys(folder):
    from safetensors import safe_open
    te_file = os.path.join(folder, "text_encoder", "model.safetensors")
    with safe_open(te_file, "pt") as f:
        keys = list(f.keys())
        dt = {f.get_tensor(k).dtype for k in keys}
    assert all(k.startswith("text_model.") for k in keys), [k for k in keys if not k.startswith("text_model.")][:5]
    log("text encoder keys ok:", len(keys), "dtypes", dt)
    for sub in ("unet", "vae"):
        with safe_open(os.path.join(folder, sub, "diffusion_pytorch_model.safetensors"), "pt") as f:
            dt = {f.get_tensor(k).dtype for k in f.keys()}
        log(sub, "dtypes", dt)


# ----------------------------------------------------------------------------- LoRA -> kohya
def export_lora(args):
    """train_lora.py stores the LoRA already in kohya naming (fp32); write it as fp16 safetensors."""
    from safetensors.torch import save_file
    ck = load_ckpt(args.ckpt)
    state = ck["lora_ema"] if args.ema else ck["lora"]
    kohya = {k: v.to(torch.float16).contiguous() for k, v in state.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(ck["rank"]),
            "ss_network_alpha": str(ck["alpha"]), "ss_base_model_version": "sd_v1", "ss_base_model": "shapes-sd",
            "ss_training_steps": str(ck["step"]), "trigger": args.trigger if args.trigger is not None else ck.get("trigger", ""),
            "description": args.description if args.description is not None else ck.get("description", "")}
    save_file(kohya, args.out, metadata=meta)
    log("exported", len(kohya), "tensors ->", args.out, f"{os.path.getsize(args.out) / 1e6:.2f} MB")


def export_controlnet(args):
    from train_controlnet import build_controlnet
    ck = load_ckpt(args.ckpt)
    cn = build_controlnet(None)
    cn.load_state_dict(ck["controlnet"])
    if args.ema and "ema" in ck:
        for p, s in zip(cn.parameters(), ck["ema"]):
            p.data.copy_(s)
    cn.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    log("exported controlnet ->", args.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("base")
    b.add_argument("--vae", default="/work/train/vae/ckpt.pt")
    b.add_argument("--unet", default="/work/train/unet/ckpt.pt")
    b.add_argument("--tokenizer", default=os.path.join(REPO, "models/shapes-sd/tokenizer"))
    b.add_argument("--out", default=os.path.join(REPO, "models/shapes-sd"))
    lo = sub.add_parser("lora")
    lo.add_argument("--ckpt", required=True)
    lo.add_argument("--out", required=True)
    lo.add_argument("--ema", type=int, default=1)
    lo.add_argument("--trigger", default=None, help="trigger word for the metadata (default: the one trained with)")
    lo.add_argument("--description", default=None)
    c = sub.add_parser("controlnet")
    c.add_argument("--ckpt", default="/work/train/controlnet/ckpt.pt")
    c.add_argument("--out", default=os.path.join(REPO, "models/shapes-sd-controlnet-canny"))
    c.add_argument("--ema", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(2)
    dict(base=export_base, lora=export_lora, controlnet=export_controlnet)[args.cmd](args)


if __name__ == "__main__":
    main()
