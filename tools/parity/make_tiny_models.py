#!/usr/bin/env python3
"""Write the tiny random model family used by the Swift tests: three complete diffusers pipeline folders
and the same weights as original-layout (LDM) single-file checkpoints.

    Tests/Fixtures/models/sd1/         StableDiffusionPipeline   (SD 1.x shape: conv proj_in, CLIP quick_gelu, epsilon, PNDM)
    Tests/Fixtures/models/sd2/         StableDiffusionPipeline   (SD 2.x shape: linear proj_in, per-block heads, gelu,
                                                                  pad "!", v_prediction, DDIM)
    Tests/Fixtures/models/sdxl/        StableDiffusionXLPipeline (two text encoders, text_time added conditioning,
                                                                  transformer_layers_per_block [1, 2], Euler)
    Tests/Fixtures/models/sd1.safetensors, sd2.safetensors, sdxl.safetensors
                                       the same weights in the LDM layout (convert_diffusers_to_ldm.py), with the
                                       component configs in __metadata__ (swiftdiffusion.<component>.config)

Every weight is stored as F16 (the values are drawn in float32 and rounded to half precision once, so a
float32 model loaded from either file holds exactly the same numbers); everything else is as
`save_pretrained` writes it, except:
  * weight files are rewritten deterministically (sorted names; `safetensors.save_file` orders metadata randomly),
  * CLIPTextModel keys get their `text_model.` prefix back (transformers >= 5.6 drops it when saving; every
    Stable Diffusion repository on the Hub and every original checkpoint has it, and transformers loads both),
  * tokenizers are a 1000-entry cut of the real CLIP BPE vocabulary (models/shapes-sd/tokenizer): the 256 byte
    tokens, their 256 `</w>` forms, the first 486 merges and their tokens, <|startoftext|> (998) and
    <|endoftext|> (999), written as vocab.json + merges.txt like the Stable Diffusion repositories.

The single files also carry the extra tensors real checkpoints have and a loader must skip: CLIP
`position_ids` (I64), `alphas_cumprod` (SD1), and for OpenCLIP `logit_scale`, plus for SD2 the unused last
transformer layer and `text_projection` (SD 2.x uses the penultimate layer, so diffusers' text encoder has
one layer fewer than the OpenCLIP tower).

After writing, every family is checked with transformers/diffusers: the tokenizers load, the pipeline
`from_pretrained(folder)` runs 2 steps at 32x32, `from_single_file(file, config=folder)` loads tensors equal
to the folder's and produces the same image.

Usage (from the repository root, ~30 s):
    /work/venv/bin/python tools/parity/make_tiny_models.py [--out Tests/Fixtures/models] [--skip-verify]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io  # noqa: E402
from convert_diffusers_to_ldm import (  # noqa: E402
    SD1_CLIP_PREFIX,
    SD2_OPENCLIP_PREFIX,
    SDXL_OPENCLIP_PREFIX,
    convert,
    read_safetensors,
    write_safetensors,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
CLIP_TOKENIZER = os.path.join(REPO, "models", "shapes-sd", "tokenizer")
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "models")

MERGES = 486  # 256 bytes + 256 `</w>` bytes + 486 merges + 2 specials = 1000 tokens
VOCAB_SIZE = 512 + MERGES + 2
BOS, EOS = 512 + MERGES, 513 + MERGES
FAMILIES = ("sd1", "sd2", "sdxl")


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------

def write_tokenizer(out_dir: str, pad_token: str) -> None:
    with open(os.path.join(CLIP_TOKENIZER, "vocab.json"), encoding="utf-8") as f:
        full = json.load(f)
    with open(os.path.join(CLIP_TOKENIZER, "merges.txt"), encoding="utf-8") as f:
        lines = f.read().split("\n")
    assert lines[0].startswith("#version"), "merges.txt must start with its #version line"
    merges = lines[1 : 1 + MERGES]
    by_id = {i: t for t, i in full.items()}
    # The CLIP vocabulary is bytes, bytes + </w>, then one token per merge in merge order: check that, so
    # that the cut is a valid BPE model (every merge result is in the vocabulary).
    for i, merge in enumerate(merges):
        assert by_id[512 + i] == merge.replace(" ", ""), f"merge {i} ({merge}) is not token {512 + i}"
    vocab = {by_id[i]: i for i in range(512 + MERGES)}
    vocab["<|startoftext|>"] = BOS
    vocab["<|endoftext|>"] = EOS
    assert len(vocab) == VOCAB_SIZE

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join([lines[0]] + merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": pad_token,
               "unk_token": "<|endoftext|>"}
    config = dict(special, add_prefix_space=False, do_lower_case=True, errors="replace", model_max_length=77,
                  tokenizer_class="CLIPTokenizer")
    for name, content in (("special_tokens_map.json", special), ("tokenizer_config.json", config)):
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(content, f, indent=2, sort_keys=True)
            f.write("\n")


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------

def text_encoder(family: str, component: str, hidden: int, heads: int, act: str, projection_dim: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=heads, max_position_embeddings=77, hidden_act=act,
        projection_dim=projection_dim or hidden, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=1)
    model = (CLIPTextModelWithProjection if projection_dim else CLIPTextModel)(config)
    return randomize(model, family, component)


def vae(family: str, scaling_factor: float, force_upcast: bool):
    from diffusers import AutoencoderKL

    model = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=32, scaling_factor=scaling_factor, force_upcast=force_upcast)
    return randomize(model, family, "vae")


def unet(family: str, **kwargs):
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                 norm_num_groups=4, **kwargs)
    return randomize(model, family, "unet")


def randomize(model: torch.nn.Module, family: str, component: str) -> torch.nn.Module:
    """golden_io's non-trivial init from a per-(family, component) seed, then every value rounded to float16
    so that the F16 files hold exactly the float32 model."""
    golden_io.init_params(model, golden_io.make_generator(f"tiny-{family}-{component}"))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model.eval()


def build_pipeline(family: str, tokenizer_dirs: dict[str, str]):
    from diffusers import (DDIMScheduler, EulerDiscreteScheduler, PNDMScheduler, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from transformers import CLIPTokenizer

    betas = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)
    if family == "sd1":
        return StableDiffusionPipeline(
            vae=vae(family, 0.18215, True),
            text_encoder=text_encoder(family, "text_encoder", 32, 2, "quick_gelu"),
            tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dirs["tokenizer"]),
            unet=unet(family, layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2),
            scheduler=PNDMScheduler(**betas, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if family == "sd2":
        return StableDiffusionPipeline(
            vae=vae(family, 0.18215, True),
            text_encoder=text_encoder(family, "text_encoder", 32, 2, "gelu"),
            tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dirs["tokenizer"]),
            unet=unet(family, layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                      attention_head_dim=(2, 4), use_linear_projection=True, upcast_attention=True),
            scheduler=DDIMScheduler(**betas, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                    prediction_type="v_prediction"),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    # SDXL: text encoder 1 is CLIP-L-like (hidden 32), text encoder 2 OpenCLIP-bigG-like (hidden 40,
    # projection 32): context = 32 + 40 = 72, added conditioning = 6 time ids x 8 + pooled 32 = 80.
    return StableDiffusionXLPipeline(
        vae=vae(family, 0.13025, False),
        text_encoder=text_encoder(family, "text_encoder", 32, 2, "quick_gelu"),
        text_encoder_2=text_encoder(family, "text_encoder_2", 40, 2, "gelu", projection_dim=32),
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dirs["tokenizer"]),
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer_dirs["tokenizer_2"]),
        unet=unet(family, layers_per_block=1, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                  up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                  attention_head_dim=(1, 2), cross_attention_dim=72, use_linear_projection=True,
                  addition_embed_type="text_time", addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=80),
        scheduler=EulerDiscreteScheduler(**betas, steps_offset=1, timestep_spacing="leading",
                                         interpolation_type="linear", use_karras_sigmas=False),
        add_watermarker=False)


TOKENIZERS = {"sd1": {"tokenizer": "<|endoftext|>"}, "sd2": {"tokenizer": "!"},
              "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}}


def normalise_weights(folder: str) -> None:
    """Rewrite every weight file deterministically as F16; CLIP text encoders get `text_model.` back."""
    for component in sorted(os.listdir(folder)):
        for name in ("diffusion_pytorch_model.safetensors", "model.safetensors"):
            path = os.path.join(folder, component, name)
            if not os.path.exists(path):
                continue
            tensors = read_safetensors(path)
            if component.startswith("text_encoder"):
                tensors = {(k if k.startswith("text_model.") or k == "text_projection.weight" else "text_model." + k): v
                           for k, v in tensors.items()}
            half = {k: v.half() for k, v in tensors.items()}
            for k, v in tensors.items():
                if not torch.equal(half[k].float(), v.float()):
                    raise AssertionError(f"{path}: {k} is not exactly representable in float16")
            write_safetensors(path, half, {"format": "pt"})


def fixture_extras(family: str) -> dict[str, torch.Tensor]:
    """Tensors real single-file checkpoints carry that no diffusers component uses."""
    g = golden_io.make_generator(f"tiny-{family}-extras")
    if family == "sd1":
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        return {"alphas_cumprod": torch.cumprod(1 - betas, 0).float()}
    if family == "sd2":
        p, hidden = SD2_OPENCLIP_PREFIX, 32
        layer = f"{p}transformer.resblocks.2."
        shapes = {"attn.in_proj_weight": (3 * hidden, hidden), "attn.in_proj_bias": (3 * hidden,),
                  "attn.out_proj.weight": (hidden, hidden), "attn.out_proj.bias": (hidden,),
                  "ln_1.weight": (hidden,), "ln_1.bias": (hidden,), "ln_2.weight": (hidden,), "ln_2.bias": (hidden,),
                  "mlp.c_fc.weight": (2 * hidden, hidden), "mlp.c_fc.bias": (2 * hidden,),
                  "mlp.c_proj.weight": (hidden, 2 * hidden), "mlp.c_proj.bias": (hidden,)}
        extras = {layer + k: golden_io.randn(g, *s, std=0.1).half() for k, s in shapes.items()}
        extras[p + "text_projection"] = golden_io.randn(g, hidden, 16, std=0.1).half()
        extras[p + "logit_scale"] = torch.tensor(float(np.log(1 / 0.07))).half()
        return extras
    return {SDXL_OPENCLIP_PREFIX + "logit_scale": torch.tensor(float(np.log(1 / 0.07))).half()}


def make_family(family: str, out: str) -> None:
    folder = os.path.join(out, family)
    shutil.rmtree(folder, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dirs = {}
        for name, pad in TOKENIZERS[family].items():
            tokenizer_dirs[name] = os.path.join(scratch, name)
            write_tokenizer(tokenizer_dirs[name], pad)
        pipe = build_pipeline(family, tokenizer_dirs)
        pipe.save_pretrained(folder, safe_serialization=True)
    for name, pad in TOKENIZERS[family].items():  # our vocab.json/merges.txt layout, not transformers 5's
        shutil.rmtree(os.path.join(folder, name))
        write_tokenizer(os.path.join(folder, name), pad)
    normalise_weights(folder)
    convert(folder, os.path.join(out, f"{family}.safetensors"), dtype=torch.float16, embed_configs=True,
            extra_tensors=fixture_extras(family))


# ---------------------------------------------------------------------------------------------------------
# Verification with transformers / diffusers
# ---------------------------------------------------------------------------------------------------------

def verify_family(family: str, out: str) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from transformers import CLIPTokenizer

    folder = os.path.join(out, family)
    single = os.path.join(out, f"{family}.safetensors")
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline

    for name, pad in TOKENIZERS[family].items():
        tok = CLIPTokenizer.from_pretrained(os.path.join(folder, name))
        ids = tok("a photo of an astronaut riding a horse", padding="max_length", max_length=77).input_ids
        assert len(tok) == VOCAB_SIZE and tok.pad_token == pad and ids[0] == BOS and EOS in ids, (family, name)

    # The files hold what the float32 model holds: a default load must give float32 modules.
    from_folder = cls.from_pretrained(folder, local_files_only=True)
    # `config=` gets a copy of the folder WITHOUT weights: diffusers falls back to the config folder's weights
    # for a component it does not find in the single file, which would make the comparison vacuous.
    with tempfile.TemporaryDirectory() as scratch:
        configs_only = os.path.join(scratch, family)
        shutil.copytree(folder, configs_only, ignore=shutil.ignore_patterns("*.safetensors"))
        from_file = cls.from_single_file(single, config=configs_only, local_files_only=True, torch_dtype=torch.float32)
    components = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if family == "sdxl" else [])
    for component in components:
        a = getattr(from_folder, component).state_dict()
        b = getattr(from_file, component).state_dict()
        assert sorted(a) == sorted(b), f"{family}/{component}: different parameter names"
        for k in a:
            assert a[k].dtype == torch.float32, f"{family}/{component}: {k} loaded as {a[k].dtype}"
            assert torch.equal(a[k], b[k]), f"{family}/{component}: {k} differs between folder and single file"
        # ... and what the folder's file holds (guards against silently re-initialised parameters).
        stored = read_safetensors(os.path.join(folder, component, "model.safetensors" if "text" in component
                                               else "diffusion_pytorch_model.safetensors"))
        model = getattr(from_folder, component)
        named = dict(model.named_parameters())
        for k, v in stored.items():
            target = named.get(k) if k in named else named.get(k.removeprefix("text_model."))
            assert target is not None and torch.equal(target.detach(), v.float()), f"{family}/{component}: {k} not loaded"
        if not component.startswith("text_encoder"):
            configs = [{k: v for k, v in dict(getattr(p, component).config).items() if not k.startswith("_")}
                       for p in (from_folder, from_file)]
            assert configs[0] == configs[1], f"{family}/{component}: configs differ"

    images = []
    for pipe in (from_folder, from_file):
        pipe.set_progress_bar_config(disable=True)
        result = pipe("a photo of an astronaut riding a horse", num_inference_steps=2, height=32, width=32,
                      guidance_scale=5.0, generator=torch.Generator().manual_seed(0), output_type="np")
        image = result.images[0]
        assert image.shape == (32, 32, 3) and np.isfinite(image).all(), (family, image.shape)
        images.append(image)
    assert np.array_equal(images[0], images[1]), f"{family}: folder and single file give different images"
    print(f"  {family}: tokenizers load, folder == single file for {components}, 2 steps at 32x32 ok "
          f"(image mean {images[0].mean():.4f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--only", choices=FAMILIES, action="append")
    parser.add_argument("--skip-verify", action="store_true")
    args = parser.parse_args()
    golden_io.setup_torch()
    families = args.only or list(FAMILIES)
    for family in families:
        make_family(family, args.out)
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    for family in families:
        size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(args.out, family)) for f in fs)
        print(f"{family}/: {size / 1024:.1f} KiB, {family}.safetensors: "
              f"{os.path.getsize(os.path.join(args.out, family + '.safetensors')) / 1024:.1f} KiB")
    print(f"total {total / 1024:.1f} KiB in {args.out}")
    if not args.skip_verify:
        for family in families:
            verify_family(family, args.out)


if __name__ == "__main__":
    main()
