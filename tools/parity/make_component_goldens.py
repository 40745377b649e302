#!/usr/bin/env python3
"""Generate whole-component parity goldens -> Tests/Fixtures/components/<case>.safetensors.

Tiny random-weight diffusers components (UNet2DConditionModel in SD 1.x, SD 2.x, SDXL and LCM
configurations, with and without ControlNet-style residuals; AutoencoderKL encode/decode;
AutoencoderTiny decode), in the file format of tools/parity/README.md: input.* (PyTorch layout),
param.* (the component's state_dict names), output.*, and __metadata__ with `config` = the
component's config.json (as diffusers writes it) and `forward` = how it was called.

Usage:  /work/venv/bin/python tools/parity/make_component_goldens.py [--out DIR] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

from diffusers import AutoencoderKL, AutoencoderTiny, ControlNetModel, UNet2DConditionModel  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "components")

CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def config_json(model) -> str:
    """The config as save_pretrained writes it (minus private keys), sorted."""
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    return json.dumps(config, sort_keys=True, default=list)


TINY_UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(8, 16),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=12,
    attention_head_dim=2,
    norm_num_groups=4,
)


def unet_case(g, name, config, batch=2, size=(8, 8), tokens=7, extra_inputs=None, residuals=False):
    model = UNet2DConditionModel(**config).eval()
    gio.init_params(model, g)
    sample = gio.randn(g, batch, config.get("in_channels", 4), *size)
    context_dim = config["cross_attention_dim"]
    context = gio.randn(g, batch, tokens, context_dim)
    timestep = torch.tensor([437.0])
    inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": context}
    kwargs = {}
    if extra_inputs:
        inputs.update(extra_inputs)
        if "text_embeds" in extra_inputs:
            kwargs["added_cond_kwargs"] = {"text_embeds": extra_inputs["text_embeds"], "time_ids": extra_inputs["time_ids"]}
        if "timestep_cond" in extra_inputs:
            kwargs["timestep_cond"] = extra_inputs["timestep_cond"]
    outputs = {}
    with torch.no_grad():
        outputs["sample"] = model(sample, timestep, context, **kwargs).sample
        if residuals:
            # Run once to learn the skip shapes, then feed random ControlNet-style residuals.
            shapes = []

            def hook(_module, _inputs, output):
                shapes.append(output)

            handles = [model.conv_in.register_forward_hook(lambda m, i, o: shapes.append(("conv_in", o.shape)))]
            for block in model.down_blocks:
                handles.append(block.register_forward_hook(lambda m, i, o: shapes.append(("down", [s.shape for s in o[1]]))))
            handles.append(model.mid_block.register_forward_hook(lambda m, i, o: shapes.append(("mid", o.shape))))
            model(sample, timestep, context, **kwargs)
            for h in handles:
                h.remove()
            down_shapes = [shapes[0][1]] + [s for kind, group in shapes[1:-1] for s in group]
            down = [0.3 * gio.randn(g, *s) for s in down_shapes]
            mid = 0.3 * gio.randn(g, *shapes[-1][1])
            for i, r in enumerate(down):
                inputs[f"down_residual.{i}"] = r
            inputs["mid_residual"] = mid
            outputs["sample_with_residuals"] = model(
                sample, timestep, context, down_block_additional_residuals=tuple(down), mid_block_additional_residual=mid,
                **kwargs).sample
    return dict(
        module=gio.class_path(model), config=config_json(model), inputs=inputs, params=gio.module_params(model),
        outputs=outputs,
        forward="output.sample = m(input.sample, input.timestep, input.encoder_hidden_states, ...); "
        "output.sample_with_residuals adds input.down_residual.* / input.mid_residual")


@case
def case_unet_sd1(name, g):
    return unet_case(g, name, dict(TINY_UNET), residuals=True)


@case
def case_unet_sd2(name, g):
    config = dict(TINY_UNET, use_linear_projection=True, attention_head_dim=(2, 4), upcast_attention=True)
    return unet_case(g, name, config, size=(8, 6))


@case
def case_unet_sdxl(name, g):
    config = dict(
        TINY_UNET,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=20,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=8 * 6 + 12,
    )
    extra = {
        "text_embeds": gio.randn(g, 2, 12),
        "time_ids": torch.tensor([[32.0, 32.0, 0.0, 0.0, 32.0, 32.0], [64.0, 48.0, 4.0, 2.0, 32.0, 32.0]]),
    }
    return unet_case(g, name, config, extra_inputs=extra, residuals=True)


@case
def case_unet_lcm(name, g):
    config = dict(TINY_UNET, time_cond_proj_dim=8)
    return unet_case(g, name, config, batch=1, extra_inputs={"timestep_cond": gio.randn(g, 1, 8)})


@case
def case_unet_odd_size(name, g):
    """Latents whose size is not a multiple of 2^levels: the up path must use the skip's size."""
    config = dict(TINY_UNET, block_out_channels=(8, 8, 16), down_block_types=("CrossAttnDownBlock2D",) * 2 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 2)
    return unet_case(g, name, config, batch=1, size=(7, 5))


def controlnet_case(g, unet_config, extra_inputs=None):
    unet = UNet2DConditionModel(**unet_config)
    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8, 8, 8)).eval()
    gio.init_params(model, g)
    batch = 2
    sample = gio.randn(g, batch, 4, 8, 8)
    context = gio.randn(g, batch, 7, unet_config["cross_attention_dim"])
    cond = torch.rand(batch, 3, 64, 64, generator=g)
    timestep = torch.tensor([615.0])
    inputs = {"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "controlnet_cond": cond}
    kwargs = {}
    if extra_inputs:
        inputs.update(extra_inputs)
        kwargs["added_cond_kwargs"] = {"text_embeds": extra_inputs["text_embeds"], "time_ids": extra_inputs["time_ids"]}
    outputs = {}
    with torch.no_grad():
        down, mid = model(sample, timestep, context, cond, conditioning_scale=1.0, return_dict=False, **kwargs)
        for i, r in enumerate(down):
            outputs[f"down.{i}"] = r
        outputs["mid"] = mid
        down, mid = model(sample, timestep, context, cond, conditioning_scale=0.8, guess_mode=True, return_dict=False, **kwargs)
        for i, r in enumerate(down):
            outputs[f"guess_down.{i}"] = r
        outputs["guess_mid"] = mid
    return dict(
        module=gio.class_path(model), config=config_json(model), inputs=inputs, params=gio.module_params(model),
        outputs=outputs,
        forward="output.down.*/mid = m(sample, timestep, context, controlnet_cond, conditioning_scale=1); "
        "output.guess_* with conditioning_scale=0.8, guess_mode=True")


@case
def case_controlnet_sd1(name, g):
    return controlnet_case(g, dict(TINY_UNET))


@case
def case_controlnet_sdxl(name, g):
    config = dict(
        TINY_UNET, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2), attention_head_dim=(2, 4), use_linear_projection=True, cross_attention_dim=20,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 12)
    extra = {
        "text_embeds": gio.randn(g, 2, 12),
        "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
    }
    return controlnet_case(g, config, extra)


@case
def case_vae_kl(name, g):
    model = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=16,
        scaling_factor=0.18215).eval()
    gio.init_params(model, g)
    image = torch.tanh(gio.randn(g, 1, 3, 16, 12))
    latents = gio.randn(g, 1, 4, 4, 3)
    with torch.no_grad():
        posterior = model.encode(image).latent_dist
        decoded = model.decode(latents).sample
    return dict(
        module=gio.class_path(model), config=config_json(model), inputs={"image": image, "latents": latents},
        params=gio.module_params(model),
        outputs={"mean": posterior.mean, "logvar": posterior.logvar, "decoded": decoded},
        forward="output.mean/logvar = m.encode(input.image).latent_dist; output.decoded = m.decode(input.latents).sample")


@case
def case_taesd(name, g):
    model = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8), num_encoder_blocks=(1, 1, 1),
        num_decoder_blocks=(1, 1, 1), latent_channels=4).eval()
    gio.init_params(model, g)
    latents = 2 * gio.randn(g, 1, 4, 4, 5)
    with torch.no_grad():
        decoded = model.decode(latents).sample
    params = {k: v for k, v in gio.module_params(model).items() if k.startswith("decoder.")}
    return dict(
        module=gio.class_path(model), config=config_json(model), inputs={"latents": latents}, params=params,
        outputs={"decoded": decoded}, forward="output.decoded = m.decode(input.latents).sample (decoder params only)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    gio.setup_torch()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for name, fn in CASES.items():
        if args.only and name not in args.only:
            continue
        g = gio.make_generator(name)
        spec = fn(name, g)
        size = gio.write_golden(
            os.path.join(args.out, f"{name}.safetensors"), case=name, module=spec["module"], attrs={},
            inputs=spec["inputs"], params=spec["params"], outputs=spec["outputs"],
            extra_metadata={"config": spec["config"], "forward": spec["forward"]})
        total += size
        print(f"{name}: {gio.fmt_size(size)}")
    print(f"total: {gio.fmt_size(total)}")


if __name__ == "__main__":
    main()
