#!/usr/bin/env python3
"""Convert a diffusers Stable Diffusion pipeline folder (SD 1.x, SD 2.x, SDXL base) into ONE `.safetensors`
file in the original LDM / CompVis / SGM key layout -- the layout of most community checkpoints.

    model.diffusion_model.*                       UNet (input_blocks / middle_block / output_blocks)
    first_stage_model.*                           VAE (encoder.down.N.block.M, decoder.up.N (reversed), mid.attn_1 as 1x1 convs)
    cond_stage_model.transformer.text_model.*     SD 1.x text encoder (Hugging Face CLIPTextModel names)
    cond_stage_model.model.*                      SD 2.x text encoder (OpenCLIP names, q/k/v fused in in_proj_weight)
    conditioner.embedders.0.transformer.text_model.*   SDXL text encoder 1 (CLIP-L, HF names)
    conditioner.embedders.1.model.*               SDXL text encoder 2 (OpenCLIP bigG names, text_projection as x @ P)

The mapping is the exact inverse of diffusers' `loaders/single_file_utils.py` (convert_ldm_unet_checkpoint,
convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint); make_tiny_models.py
proves it by loading the result with `from_single_file` and comparing every tensor with the folder.

Optionally (`--embed-configs`) the component configs are recorded in the header's `__metadata__` as JSON
strings under `swiftdiffusion.<component>.config` (unet, vae, text_encoder, text_encoder_2, scheduler,
tokenizer, tokenizer_2) and `swiftdiffusion.model_index`: a SwiftDiffusion extension that lets the Swift
loader build non-standard architectures (the tiny test models). Real community checkpoints never have it.

Usage:
    python tools/parity/convert_diffusers_to_ldm.py FOLDER OUT.safetensors [--dtype fp16|fp32|bf16] [--embed-configs]
    python tools/parity/convert_diffusers_to_ldm.py --dump-standard-layouts DIR   # full-size key/shape lists (see README)

The file is written deterministically (sorted keys, sorted metadata), unlike `safetensors.save_file`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_CLIP_PREFIX = "cond_stage_model.transformer."
SD2_OPENCLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."

# ---------------------------------------------------------------------------------------------------------
# Deterministic safetensors writer (F16 / BF16 / F32 / I64)
# ---------------------------------------------------------------------------------------------------------

_DTYPE_NAMES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
}


def _raw_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.reshape(-1).view(torch.int16).numpy().astype("<i2").tobytes()
    array = t.reshape(-1).numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write `tensors` (any of the dtypes above, kept as they are) with sorted names and sorted metadata;
    the header is padded with spaces to a multiple of 8 bytes. Returns the file size. Read back and checked
    with the reference `safetensors` implementation."""
    header: dict = {}
    if metadata:
        header["__metadata__"] = {k: str(metadata[k]) for k in sorted(metadata)}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _DTYPE_NAMES:
            raise TypeError(f"{name}: unsupported dtype {t.dtype}")
        if t.is_floating_point() and not torch.isfinite(t.float()).all():
            raise ValueError(f"{name} has non-finite values")
        data = _raw_bytes(t)
        header[name] = {"dtype": _DTYPE_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hbytes = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)

    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        if (f.metadata() or {}) != (header.get("__metadata__") or {}):
            raise AssertionError(f"{path}: metadata mismatch on read-back")
        if sorted(f.keys()) != sorted(tensors):
            raise AssertionError(f"{path}: key mismatch on read-back")
        for k, t in tensors.items():
            r = f.get_tensor(k)
            if r.dtype != t.dtype or not torch.equal(r, t.detach().cpu()):
                raise AssertionError(f"{path}: tensor {k} mismatch on read-back")
    return os.path.getsize(path)


def read_safetensors(path: str) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# ---------------------------------------------------------------------------------------------------------
# UNet
# ---------------------------------------------------------------------------------------------------------

UNET_TOP_LEVEL = {  # diffusers module -> LDM module
    "conv_in": "input_blocks.0.0",
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}

UNET_RESNET = {  # diffusers ResnetBlock2D -> LDM ResBlock
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}


def _per_block(value, count):
    return list(value) if isinstance(value, (list, tuple)) else [value] * count


def _split_module(key: str) -> tuple[str, str]:
    module, _, param = key.rpartition(".")
    return module, param


def unet_key_map(config: dict, keys) -> dict[str, str]:
    """diffusers UNet2DConditionModel key -> LDM key (without the model.diffusion_model. prefix)."""
    levels = len(config["block_out_channels"])
    layers = _per_block(config["layers_per_block"], levels)

    # diffusers (block, layer) -> LDM input_blocks index; downsampler index per block.
    down_index, down_sampler = {}, {}
    index = 1
    for block in range(levels):
        for layer in range(layers[block]):
            down_index[(block, layer)] = index
            index += 1
        if block != levels - 1:
            down_sampler[block] = index
            index += 1
    up_layers = list(reversed(layers))
    up_index = {}
    index = 0
    for block in range(levels):
        for layer in range(up_layers[block] + 1):
            up_index[(block, layer)] = index
            index += 1
    up_has_attention = ["CrossAttn" in t for t in config["up_block_types"]]

    def resnet(rest: str) -> str:
        module, param = _split_module(rest)
        if module not in UNET_RESNET:
            raise KeyError(rest)
        return f"{UNET_RESNET[module]}.{param}"

    out = {}
    for key in keys:
        module, param = _split_module(key)
        if module in UNET_TOP_LEVEL:
            out[key] = f"{UNET_TOP_LEVEL[module]}.{param}"
            continue
        m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
        if m:
            b, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = down_index[(b, l)]
            out[key] = f"input_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
            continue
        m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key)
        if m:
            out[key] = f"input_blocks.{down_sampler[int(m[1])]}.0.op.{m[2]}"
            continue
        m = re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key)
        if m:
            kind, l, rest = m[1], int(m[2]), m[3]
            out[key] = f"middle_block.{2 * l}.{resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
            continue
        m = re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
        if m:
            b, kind, l, rest = int(m[1]), m[2], int(m[3]), m[4]
            i = up_index[(b, l)]
            out[key] = f"output_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
            continue
        m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key)
        if m:
            b = int(m[1])
            i = up_index[(b, up_layers[b])]
            out[key] = f"output_blocks.{i}.{2 if up_has_attention[b] else 1}.conv.{m[2]}"
            continue
        raise KeyError(f"no LDM name for UNet key {key}")
    return out


# ---------------------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------------------

VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_key_map(config: dict, keys) -> dict[str, str]:
    levels = len(config["block_out_channels"])
    fixed = {
        "conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out",
    }
    out = {}
    for key in keys:
        module, param = _split_module(key)
        if module in ("quant_conv", "post_quant_conv"):
            out[key] = key
            continue
        side, _, rest = module.partition(".")
        if side not in ("encoder", "decoder"):
            raise KeyError(key)
        if rest in fixed:
            out[key] = f"{side}.{fixed[rest]}.{param}"
            continue
        m = re.fullmatch(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)", rest)
        if m:
            b = int(m[2]) if m[1] == "down" else levels - 1 - int(m[2])
            sub = "nin_shortcut" if m[4] == "conv_shortcut" else m[4]
            out[key] = f"{side}.{m[1]}.{b}.block.{m[3]}.{sub}.{param}"
            continue
        m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", rest)
        if m:
            out[key] = f"{side}.down.{m[1]}.downsample.conv.{param}"
            continue
        m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", rest)
        if m:
            out[key] = f"{side}.up.{levels - 1 - int(m[1])}.upsample.conv.{param}"
            continue
        m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(\w+)", rest)
        if m:
            sub = "nin_shortcut" if m[2] == "conv_shortcut" else m[2]
            out[key] = f"{side}.mid.block_{int(m[1]) + 1}.{sub}.{param}"
            continue
        m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", rest)
        if m and m[1] in VAE_ATTENTION:
            out[key] = f"{side}.mid.attn_1.{VAE_ATTENTION[m[1]]}.{param}"
            continue
        raise KeyError(f"no LDM name for VAE key {key}")
    return out


# ---------------------------------------------------------------------------------------------------------
# Text encoders
# ---------------------------------------------------------------------------------------------------------

OPENCLIP_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _with_text_model_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers >= 5.6 saves CLIPTextModel without the `text_model.` prefix; older files (and every
    original checkpoint) have it."""
    return {(k if k.startswith("text_model.") or k == "text_projection.weight" else "text_model." + k): v for k, v in sd.items()}


def clip_to_ldm(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    sd = _with_text_model_prefix(sd)
    out = {prefix + k: v for k, v in sd.items() if k.startswith("text_model.")}
    extra = sorted(set(sd) - {k for k in sd if k.startswith("text_model.")})
    if extra:
        raise KeyError(f"unexpected CLIP text encoder keys {extra}")
    positions = sd["text_model.embeddings.position_embedding.weight"].shape[0]
    out[prefix + "text_model.embeddings.position_ids"] = torch.arange(positions, dtype=torch.int64)[None]
    return out


def openclip_to_ldm(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    sd = _with_text_model_prefix(sd)
    out = {}
    fixed = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
    }
    fused: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        if key in fixed:
            out[prefix + fixed[key]] = value
            continue
        if key == "text_projection.weight":  # Linear [proj, hidden] -> OpenCLIP parameter [hidden, proj] (x @ P)
            out[prefix + "text_projection"] = value.t().contiguous()
            continue
        m = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
        if not m:
            raise KeyError(f"no OpenCLIP name for text encoder key {key}")
        layer, module, param = int(m[1]), m[2], m[3]
        q = re.fullmatch(r"self_attn\.(q|k|v)_proj", module)
        if q:
            fused.setdefault((layer, param), {})[q[1]] = value
            continue
        if module not in OPENCLIP_LAYER:
            raise KeyError(f"no OpenCLIP name for text encoder key {key}")
        out[f"{prefix}transformer.resblocks.{layer}.{OPENCLIP_LAYER[module]}.{param}"] = value
    for (layer, param), parts in fused.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{param}"] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)
    return out


# ---------------------------------------------------------------------------------------------------------
# Pipeline folder -> single file
# ---------------------------------------------------------------------------------------------------------

def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _component_weights(folder: str, name: str) -> dict[str, torch.Tensor]:
    for candidate in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
        path = os.path.join(folder, name, candidate)
        if os.path.exists(path):
            return read_safetensors(path)
    raise FileNotFoundError(f"{folder}/{name}: no safetensors weights")


def family_of(folder: str) -> str:
    index = _load_json(os.path.join(folder, "model_index.json"))
    if "text_encoder_2" in index and index["text_encoder_2"][0] is not None:
        return "sdxl"
    te = _load_json(os.path.join(folder, "text_encoder", "config.json"))
    return "sd2" if te.get("hidden_act") == "gelu" else "sd1"


def convert_folder(folder: str) -> tuple[dict[str, torch.Tensor], str]:
    """All tensors of the folder under their LDM names, and the family ('sd1', 'sd2', 'sdxl')."""
    family = family_of(folder)
    out: dict[str, torch.Tensor] = {}

    unet = _component_weights(folder, "unet")
    for src, dst in unet_key_map(_load_json(os.path.join(folder, "unet", "config.json")), unet).items():
        out[UNET_PREFIX + dst] = unet[src]

    vae = _component_weights(folder, "vae")
    for src, dst in vae_key_map(_load_json(os.path.join(folder, "vae", "config.json")), vae).items():
        value = vae[src]
        if ".mid.attn_1." in dst and dst.endswith(".weight") and value.dim() == 2:
            value = value[:, :, None, None]  # Linear -> 1x1 conv, as the original AttnBlock stores it
        out[VAE_PREFIX + dst] = value

    te = _component_weights(folder, "text_encoder")
    if family == "sd1":
        out.update(clip_to_ldm(te, SD1_CLIP_PREFIX))
    elif family == "sd2":
        out.update(openclip_to_ldm(te, SD2_OPENCLIP_PREFIX))
    else:
        out.update(clip_to_ldm(te, SDXL_CLIP_PREFIX))
        out.update(openclip_to_ldm(_component_weights(folder, "text_encoder_2"), SDXL_OPENCLIP_PREFIX))
    return out, family


def config_metadata(folder: str) -> dict[str, str]:
    """`swiftdiffusion.<component>.config` -> the component's config file text (verbatim)."""
    meta = {"swiftdiffusion.model_index": _read_text(os.path.join(folder, "model_index.json"))}
    files = {
        "unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "text_encoder_2": "config.json",
        "scheduler": "scheduler_config.json", "tokenizer": "tokenizer_config.json", "tokenizer_2": "tokenizer_config.json",
    }
    for component, file in files.items():
        path = os.path.join(folder, component, file)
        if os.path.exists(path):
            meta[f"swiftdiffusion.{component}.config"] = _read_text(path)
    return meta


def convert(folder: str, out_path: str, dtype: torch.dtype = torch.float16, embed_configs: bool = False,
            extra_tensors: dict[str, torch.Tensor] | None = None) -> int:
    tensors, _ = convert_folder(folder)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    for k, v in (extra_tensors or {}).items():
        if k in tensors:
            raise KeyError(f"extra tensor {k} collides with a converted one")
        tensors[k] = v
    metadata = {"format": "pt"}
    if embed_configs:
        metadata.update(config_metadata(folder))
    return write_safetensors(out_path, tensors, metadata)


# The reference models' architectures (as Sources/Weights/Checkpoints/StandardConfigs.swift embeds them).
_STANDARD_UNETS = {
    "sd1": dict(attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, layers_per_block=2),
    "sd2": dict(attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=1024,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, layers_per_block=2, use_linear_projection=True),
    "sdxl": dict(addition_embed_type="text_time", addition_time_embed_dim=256, attention_head_dim=[5, 10, 20],
                 block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
                 down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], layers_per_block=2,
                 projection_class_embeddings_input_dim=2816, transformer_layers_per_block=[1, 2, 10],
                 use_linear_projection=True),
}


def dump_standard_layouts(out_dir: str) -> None:
    """Write `<family>.json` = {LDM key: shape} for the full-size SD 1.5 / SD 2.1 / SDXL base models, built on
    the meta device (no memory) and named by this script's mapping. The Swift tests compare their own
    full-size layouts with these when SWIFTDIFFUSION_LDM_LAYOUTS=<out_dir> is set."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def text_model(hidden, intermediate, heads, layers, act, projection=None):
        config = CLIPTextConfig(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads,
                                num_hidden_layers=layers, hidden_act=act, projection_dim=projection or 768)
        with init_empty_weights():
            return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).state_dict()

    os.makedirs(out_dir, exist_ok=True)
    for family, unet_config in _STANDARD_UNETS.items():
        layout: dict[str, list[int]] = {}
        with init_empty_weights():
            unet = UNet2DConditionModel(**unet_config)
            vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
                                up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, latent_channels=4)
        sd = unet.state_dict()
        for src, dst in unet_key_map(dict(unet.config), sd).items():
            layout[UNET_PREFIX + dst] = list(sd[src].shape)
        sd = vae.state_dict()
        for src, dst in vae_key_map(dict(vae.config), sd).items():
            shape = list(sd[src].shape)
            if ".mid.attn_1." in dst and dst.endswith(".weight") and len(shape) == 2:
                shape += [1, 1]
            layout[VAE_PREFIX + dst] = shape
        if family == "sd1":
            text = clip_to_ldm(text_model(768, 3072, 12, 12, "quick_gelu"), SD1_CLIP_PREFIX)
        elif family == "sd2":
            text = openclip_to_ldm(text_model(1024, 4096, 16, 23, "gelu"), SD2_OPENCLIP_PREFIX)
        else:
            text = clip_to_ldm(text_model(768, 3072, 12, 12, "quick_gelu"), SDXL_CLIP_PREFIX)
            text.update(openclip_to_ldm(text_model(1280, 5120, 20, 32, "gelu", 1280), SDXL_OPENCLIP_PREFIX))
        layout.update({k: list(v.shape) for k, v in text.items()})
        with open(os.path.join(out_dir, f"{family}.json"), "w", encoding="utf-8") as f:
            json.dump(layout, f, sort_keys=True)
        print(f"{out_dir}/{family}.json: {len(layout)} tensors")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--dump-standard-layouts":
        dump_standard_layouts(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("out")
    parser.add_argument("--dtype", choices=["fp16", "fp32", "bf16"], default="fp16")
    parser.add_argument("--embed-configs", action="store_true",
                        help="record the component configs in __metadata__ (swiftdiffusion.<component>.config)")
    args = parser.parse_args()
    dtype = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    size = convert(args.folder, args.out, dtype=dtype, embed_configs=args.embed_configs)
    print(f"wrote {args.out} ({size / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
