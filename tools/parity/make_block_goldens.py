#!/usr/bin/env python3
"""Generate block-level parity goldens (real diffusers classes, tiny configs)
-> Tests/Fixtures/blocks/<case>.safetensors.

Each file: input.* (PyTorch layout), param.<state_dict key>, output.* (float32, no_grad), and
__metadata__ {case, module, attrs (constructor kwargs as JSON), forward, diffusers_version, torch_version}.
See tools/parity/README.md.

Usage:  /work/venv/bin/python tools/parity/make_block_goldens.py [--out DIR] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

from diffusers.models.attention import BasicTransformerBlock  # noqa: E402
from diffusers.models.attention_processor import Attention, AttnProcessor2_0  # noqa: E402
from diffusers.models.downsampling import Downsample2D  # noqa: E402
from diffusers.models.embeddings import TimestepEmbedding, get_timestep_embedding  # noqa: E402
from diffusers.models.resnet import ResnetBlock2D  # noqa: E402
from diffusers.models.transformers.transformer_2d import Transformer2DModel  # noqa: E402
from diffusers.models.unets.unet_2d_blocks import (  # noqa: E402
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    DownEncoderBlock2D,
    UNetMidBlock2D,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
    UpDecoderBlock2D,
)
from diffusers.models.upsampling import Upsample2D  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "blocks")

# Shared tiny config.
TEMB = 64          # time-embedding channels fed to UNet resnets
CROSS = 32         # cross_attention_dim (text-encoder hidden size stand-in)
CTX_TOKENS = 7     # text tokens
GROUPS = 8         # norm groups
UNET_EPS = 1e-5    # UNet2DConditionModel norm_eps default -> resnet_eps
VAE_EPS = 1e-6     # AutoencoderKL hard-codes resnet_eps=1e-6
# Sharper attention logits so a wrong softmax/scale cannot hide behind near-uniform weights.
QK_GAIN = {"to_q.": 1.5, "to_k.": 1.5}
# The composite UNet blocks (2 layers each, with transformers) use 24 channels (2 heads x 12) instead of 32
# to keep all goldens under the 3 MB budget; 24 / 12 also exercise non-power-of-two widths.
UC = 24
SKIP = 16

CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def build(cls, g, kwargs):
    m = cls(**kwargs)
    m.eval()
    gio.init_params(m, g, gain=1.0, special_gain=QK_GAIN)
    _check_processors(m)
    return m


def _check_processors(m):
    # The goldens assume the default SDPA processor (no slicing, no xformers).
    for sub in m.modules():
        if isinstance(sub, Attention) and not isinstance(sub.processor, AttnProcessor2_0):
            raise RuntimeError(f"unexpected attention processor {type(sub.processor)}")


def spec(m, kwargs, forward, inputs, outputs):
    return dict(module=gio.class_path(m), attrs=kwargs, forward=forward, inputs=inputs,
                params=gio.module_params(m), outputs=outputs)


def unpack_states(states):
    return {f"states.{i}": s for i, s in enumerate(states)}


# ----------------------------------------------------------------------------- ResnetBlock2D

def _resnet(g, *, cin, cout, temb, eps, n, h, w):
    kw = dict(in_channels=cin, out_channels=cout, temb_channels=temb, groups=GROUPS, eps=eps,
              non_linearity="silu", time_embedding_norm="default", output_scale_factor=1.0, dropout=0.0)
    m = build(ResnetBlock2D, g, kw)
    x = gio.randn(g, n, cin, h, w)
    inputs = {"hidden_states": x}
    if temb is not None:
        t = gio.randn(g, n, temb)
        inputs["temb"] = t
        y = m(x, t)
        fwd = "output.hidden_states = m(input.hidden_states, input.temb)"
    else:
        y = m(x, None)
        fwd = "output.hidden_states = m(input.hidden_states, None)"
    return spec(m, kw, fwd, inputs, {"hidden_states": y})


@case
def case_resnet_temb(name, g):
    return _resnet(g, cin=32, cout=32, temb=TEMB, eps=UNET_EPS, n=2, h=8, w=8)


@case
def case_resnet_temb_shortcut(name, g):
    return _resnet(g, cin=48, cout=32, temb=TEMB, eps=UNET_EPS, n=2, h=8, w=8)


@case
def case_resnet_vae(name, g):
    return _resnet(g, cin=32, cout=32, temb=None, eps=VAE_EPS, n=1, h=8, w=8)


@case
def case_resnet_vae_shortcut(name, g):
    return _resnet(g, cin=16, cout=32, temb=None, eps=VAE_EPS, n=1, h=8, w=8)


# ----------------------------------------------------------------------------- VAE attention / mid block

@case
def case_vae_attention(name, g):
    # Exactly as UNetMidBlock2D builds it for the VAE (heads = channels // attention_head_dim = 1).
    kw = dict(query_dim=32, heads=1, dim_head=32, rescale_output_factor=1.0, eps=VAE_EPS, norm_num_groups=GROUPS,
              spatial_norm_dim=None, residual_connection=True, bias=True, upcast_softmax=True,
              _from_deprecated_attn_block=True)
    m = build(Attention, g, kw)
    x = gio.randn(g, 1, 32, 8, 8)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states)  # NCHW in, NCHW out",
                {"hidden_states": x}, {"hidden_states": m(x)})


@case
def case_vae_mid_block(name, g):
    kw = dict(in_channels=32, temb_channels=None, resnet_eps=VAE_EPS, resnet_act_fn="silu", output_scale_factor=1,
              resnet_time_scale_shift="default", attention_head_dim=32, resnet_groups=GROUPS, add_attention=True,
              num_layers=1)
    m = build(UNetMidBlock2D, g, kw)
    x = gio.randn(g, 1, 32, 8, 8)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, None)",
                {"hidden_states": x}, {"hidden_states": m(x, None)})


# ----------------------------------------------------------------------------- transformer

@case
def case_basic_transformer_block(name, g):
    kw = dict(dim=32, num_attention_heads=2, attention_head_dim=16, cross_attention_dim=CROSS, activation_fn="geglu",
              attention_bias=False, only_cross_attention=False, double_self_attention=False, upcast_attention=False,
              norm_elementwise_affine=True, norm_type="layer_norm", norm_eps=1e-5, dropout=0.0)
    m = build(BasicTransformerBlock, g, kw)
    x = gio.randn(g, 2, 48, 32)
    ctx = gio.randn(g, 2, CTX_TOKENS, CROSS)
    y = m(x, encoder_hidden_states=ctx)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, encoder_hidden_states=input.encoder_hidden_states)",
                {"hidden_states": x, "encoder_hidden_states": ctx}, {"hidden_states": y})


def _transformer2d(g, linear):
    kw = dict(num_attention_heads=2, attention_head_dim=16, in_channels=32, num_layers=1, cross_attention_dim=CROSS,
              norm_num_groups=GROUPS, use_linear_projection=linear, only_cross_attention=False, upcast_attention=False,
              attention_type="default", dropout=0.0)
    m = build(Transformer2DModel, g, kw)
    x = gio.randn(g, 2, 32, 6, 8)     # non-square (H=6, W=8) to catch H/W mix-ups in the token reshape
    ctx = gio.randn(g, 2, CTX_TOKENS, CROSS)
    y = m(x, encoder_hidden_states=ctx, return_dict=False)[0]
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, encoder_hidden_states=input.encoder_hidden_states)",
                {"hidden_states": x, "encoder_hidden_states": ctx}, {"hidden_states": y})


@case
def case_transformer2d_conv_proj(name, g):
    return _transformer2d(g, False)   # SD 1.x


@case
def case_transformer2d_linear_proj(name, g):
    return _transformer2d(g, True)    # SD 2.x


# ----------------------------------------------------------------------------- embeddings, resampling

@case
def case_timestep_embedding_mlp(name, g):
    kw = dict(in_channels=32, time_embed_dim=TEMB, act_fn="silu")
    m = build(TimestepEmbedding, g, kw)
    t = torch.tensor([0.0, 1.0, 250.5, 999.0])
    sample = get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    return spec(m, kw, "output.temb = m(input.sample)  # input.sample = get_timestep_embedding(input.timesteps, 32, True, 0)",
                {"sample": sample, "timesteps": t}, {"temb": m(sample)})


@case
def case_downsample_conv_p1(name, g):
    # UNet down blocks: Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=1, name="op")
    kw = dict(channels=32, use_conv=True, out_channels=32, padding=1, name="op")
    m = build(Downsample2D, g, kw)
    x = gio.randn(g, 2, 32, 8, 8)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states)", {"hidden_states": x}, {"hidden_states": m(x)})


@case
def case_downsample_conv_p0(name, g):
    # VAE encoder: padding=0 => F.pad(x, (0, 1, 0, 1)) then 3x3 stride-2 conv with padding 0
    kw = dict(channels=32, use_conv=True, out_channels=32, padding=0, name="op")
    m = build(Downsample2D, g, kw)
    x = gio.randn(g, 1, 32, 8, 8)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states)", {"hidden_states": x}, {"hidden_states": m(x)})


@case
def case_upsample_conv(name, g):
    kw = dict(channels=32, use_conv=True, out_channels=32)
    m = build(Upsample2D, g, kw)
    x = gio.randn(g, 2, 32, 4, 4)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states)  # nearest 2x then 3x3 conv pad 1",
                {"hidden_states": x}, {"hidden_states": m(x)})


# ----------------------------------------------------------------------------- UNet blocks

def _unet_inputs(g, n, c, h, w, ctx=True):
    inputs = {"hidden_states": gio.randn(g, n, c, h, w), "temb": gio.randn(g, n, TEMB)}
    if ctx:
        inputs["encoder_hidden_states"] = gio.randn(g, n, CTX_TOKENS, CROSS)
    return inputs


@case
def case_down_block_2d(name, g):
    kw = dict(in_channels=UC, out_channels=UC, temb_channels=TEMB, num_layers=2, resnet_eps=UNET_EPS,
              resnet_act_fn="silu", resnet_groups=GROUPS, add_downsample=True, downsample_padding=1, dropout=0.0)
    m = build(DownBlock2D, g, kw)
    inp = _unet_inputs(g, 2, UC, 8, 8, ctx=False)
    y, states = m(inp["hidden_states"], inp["temb"])
    return spec(m, kw, "output.hidden_states, (output.states.0, ...) = m(input.hidden_states, input.temb)",
                inp, {"hidden_states": y, **unpack_states(states)})


@case
def case_cross_attn_down_block_2d(name, g):
    kw = dict(in_channels=SKIP, out_channels=UC, temb_channels=TEMB, num_layers=2, transformer_layers_per_block=1,
              resnet_eps=UNET_EPS, resnet_act_fn="silu", resnet_groups=GROUPS, num_attention_heads=2,
              cross_attention_dim=CROSS, downsample_padding=1, add_downsample=True, use_linear_projection=False,
              only_cross_attention=False, upcast_attention=False, dropout=0.0)
    m = build(CrossAttnDownBlock2D, g, kw)
    inp = _unet_inputs(g, 2, SKIP, 8, 8)
    y, states = m(inp["hidden_states"], inp["temb"], encoder_hidden_states=inp["encoder_hidden_states"])
    return spec(m, kw, "output.hidden_states, (output.states.0, ...) = m(input.hidden_states, input.temb, "
                       "encoder_hidden_states=input.encoder_hidden_states)",
                inp, {"hidden_states": y, **unpack_states(states)})


def _res_tuple(g, n, chans, h, w):
    # res.0 is the OLDEST skip (popped last); the block pops from the end: resnet i uses res.(L-1-i).
    return [gio.randn(g, n, c, h, w) for c in chans]


@case
def case_up_block_2d(name, g):
    kw = dict(in_channels=SKIP, prev_output_channel=UC, out_channels=UC, temb_channels=TEMB, num_layers=2,
              resnet_eps=UNET_EPS, resnet_act_fn="silu", resnet_groups=GROUPS, add_upsample=True, dropout=0.0)
    m = build(UpBlock2D, g, kw)
    inp = _unet_inputs(g, 2, UC, 4, 4, ctx=False)
    res = _res_tuple(g, 2, [SKIP, UC], 4, 4)   # resnet0: cat(h 24 + res.1 24); resnet1: cat(h 24 + res.0 16)
    y = m(inp["hidden_states"], tuple(res), inp["temb"])
    inp.update({f"res.{i}": r for i, r in enumerate(res)})
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, (input.res.0, input.res.1), input.temb)",
                inp, {"hidden_states": y})


@case
def case_cross_attn_up_block_2d(name, g):
    kw = dict(in_channels=SKIP, out_channels=UC, prev_output_channel=UC, temb_channels=TEMB, num_layers=2,
              transformer_layers_per_block=1, resnet_eps=UNET_EPS, resnet_act_fn="silu", resnet_groups=GROUPS,
              num_attention_heads=2, cross_attention_dim=CROSS, add_upsample=True, use_linear_projection=False,
              only_cross_attention=False, upcast_attention=False, dropout=0.0)
    m = build(CrossAttnUpBlock2D, g, kw)
    inp = _unet_inputs(g, 2, UC, 4, 4)
    res = _res_tuple(g, 2, [SKIP, UC], 4, 4)
    y = m(inp["hidden_states"], tuple(res), inp["temb"], encoder_hidden_states=inp["encoder_hidden_states"])
    inp.update({f"res.{i}": r for i, r in enumerate(res)})
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, (input.res.0, input.res.1), input.temb, "
                       "encoder_hidden_states=input.encoder_hidden_states)",
                inp, {"hidden_states": y})


@case
def case_mid_block_cross_attn(name, g):
    kw = dict(in_channels=UC, temb_channels=TEMB, num_layers=1, transformer_layers_per_block=1, resnet_eps=UNET_EPS,
              resnet_act_fn="silu", resnet_groups=GROUPS, num_attention_heads=2, output_scale_factor=1.0,
              cross_attention_dim=CROSS, use_linear_projection=False, upcast_attention=False, dropout=0.0)
    m = build(UNetMidBlock2DCrossAttn, g, kw)
    inp = _unet_inputs(g, 2, UC, 4, 4)
    y = m(inp["hidden_states"], inp["temb"], encoder_hidden_states=inp["encoder_hidden_states"])
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, input.temb, "
                       "encoder_hidden_states=input.encoder_hidden_states)",
                inp, {"hidden_states": y})


# ----------------------------------------------------------------------------- VAE blocks

@case
def case_down_encoder_block_2d(name, g):
    kw = dict(in_channels=16, out_channels=32, num_layers=2, resnet_eps=VAE_EPS, resnet_act_fn="silu",
              resnet_groups=GROUPS, add_downsample=True, downsample_padding=0, dropout=0.0)
    m = build(DownEncoderBlock2D, g, kw)
    x = gio.randn(g, 1, 16, 8, 8)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states)", {"hidden_states": x},
                {"hidden_states": m(x)})


@case
def case_up_decoder_block_2d(name, g):
    kw = dict(in_channels=32, out_channels=16, num_layers=2, resnet_eps=VAE_EPS, resnet_act_fn="silu",
              resnet_groups=GROUPS, add_upsample=True, temb_channels=None, dropout=0.0)
    m = build(UpDecoderBlock2D, g, kw)
    x = gio.randn(g, 1, 32, 4, 4)
    return spec(m, kw, "output.hidden_states = m(input.hidden_states, None)", {"hidden_states": x},
                {"hidden_states": m(x, None)})


# -----------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/blocks)")
    ap.add_argument("--only", nargs="*", help="case names to (re)generate")
    args = ap.parse_args(argv)
    gio.setup_torch()
    names = args.only or list(CASES)
    total = 0
    for name in names:
        fn = CASES[name]
        g = gio.make_generator(name)
        with torch.no_grad():
            s = fn(name, g)
        path = os.path.join(args.out, f"{name}.safetensors")
        size = gio.write_golden(path, name, s["module"], s["attrs"], s["inputs"], s["params"], s["outputs"],
                                extra_metadata={"forward": s["forward"]})
        total += size
        absmax = max(float(t.abs().max()) for t in s["outputs"].values())
        print(f"{name:32s} {gio.fmt_size(size):>12s}  params={len(s['params']):3d}  max|out|={absmax:8.3f}")
    print(f"{'total':32s} {gio.fmt_size(total):>12s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
