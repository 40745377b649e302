#!/usr/bin/env python3
"""Generate op-level parity goldens -> Tests/Fixtures/ops/<case>.safetensors.

Each file: input.* (PyTorch layout), param.* (torch state_dict names), output.y (float32, no_grad),
and __metadata__ {case, module, attrs (JSON), diffusers_version, torch_version}.
See tools/parity/README.md.

Usage:  /work/venv/bin/python tools/parity/make_op_goldens.py [--out DIR] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

from diffusers.models.activations import GEGLU  # noqa: E402
from diffusers.models.embeddings import get_timestep_embedding  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "ops")

CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def wide_input(g, n_random: int) -> torch.Tensor:
    """Activation test input: a sweep over [-12, 12], extremes, exact zero, and random values."""
    sweep = torch.linspace(-12.0, 12.0, 97)
    extremes = torch.tensor([-100.0, -50.0, -30.0, -20.0, -1e-4, 0.0, 1e-4, 20.0, 30.0, 50.0, 100.0])
    rnd = gio.randn(g, n_random, std=3.0)
    return torch.cat([sweep, extremes, rnd]).reshape(4, -1)  # 97 + 11 + n_random must be divisible by 4


# ----------------------------------------------------------------------------- linear / matmul

@case
def case_linear_bias(name, g):
    m = torch.nn.Linear(12, 8, bias=True)
    gio.init_params(m, g, fixed_std=0.3)
    x = gio.randn(g, 2, 5, 12)
    return dict(module=gio.class_path(m), attrs={"in_features": 12, "out_features": 8, "bias": True},
                inputs={"x": x}, params=gio.module_params(m), outputs={"y": m(x)})


@case
def case_linear_nobias(name, g):
    m = torch.nn.Linear(12, 8, bias=False)
    gio.init_params(m, g, fixed_std=0.3)
    x = gio.randn(g, 3, 12)
    return dict(module=gio.class_path(m), attrs={"in_features": 12, "out_features": 8, "bias": False},
                inputs={"x": x}, params=gio.module_params(m), outputs={"y": m(x)})


@case
def case_matmul(name, g):
    a = gio.randn(g, 5, 7)
    b = gio.randn(g, 7, 3)
    return dict(module="torch.matmul", attrs={"note": "y = a @ b, 2-D"},
                inputs={"a": a, "b": b}, params={}, outputs={"y": torch.matmul(a, b)})


@case
def case_matmul_batched(name, g):
    a = gio.randn(g, 2, 3, 5, 4)
    b = gio.randn(g, 2, 3, 4, 6)
    return dict(module="torch.matmul", attrs={"note": "y = a @ b, batched over the leading 2 dims"},
                inputs={"a": a, "b": b}, params={}, outputs={"y": torch.matmul(a, b)})


# ----------------------------------------------------------------------------- conv2d

def _conv_case(g, *, n, cin, cout, h, w, k, stride, padding, pre_pad=None):
    m = torch.nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=padding, bias=True)
    gio.init_params(m, g, fixed_std=0.3)
    x = gio.randn(g, n, cin, h, w)
    xin = F.pad(x, pre_pad, mode="constant", value=0.0) if pre_pad is not None else x
    y = m(xin)
    attrs = {"in_channels": cin, "out_channels": cout, "kernel_size": [k, k], "stride": [stride, stride],
             "padding": [padding, padding], "dilation": [1, 1], "groups": 1, "bias": True}
    module = gio.class_path(m)
    if pre_pad is not None:
        attrs["pre_pad"] = list(pre_pad)
        attrs["pre_pad_order"] = "F.pad order: (left, right, top, bottom), zeros; applied before the conv"
        module = "torch.nn.functional.pad + torch.nn.Conv2d (diffusers Downsample2D with padding=0)"
    return dict(module=module, attrs=attrs, inputs={"x": x}, params=gio.module_params(m), outputs={"y": y})


@case
def case_conv2d_1x1(name, g):
    return _conv_case(g, n=1, cin=8, cout=6, h=5, w=5, k=1, stride=1, padding=0)


@case
def case_conv2d_3x3_s1_p1(name, g):
    return _conv_case(g, n=1, cin=4, cout=6, h=8, w=8, k=3, stride=1, padding=1)


@case
def case_conv2d_3x3_s2_p1(name, g):
    return _conv_case(g, n=1, cin=4, cout=6, h=8, w=8, k=3, stride=2, padding=1)


@case
def case_conv2d_3x3_s2_asympad(name, g):
    # VAE encoder Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)) then stride-2 conv with padding 0.
    return _conv_case(g, n=1, cin=4, cout=6, h=8, w=8, k=3, stride=2, padding=0, pre_pad=(0, 1, 0, 1))


@case
def case_conv2d_3x3_nonsquare(name, g):
    return _conv_case(g, n=1, cin=3, cout=5, h=7, w=10, k=3, stride=1, padding=1)


@case
def case_conv2d_3x3_s2_p1_nonsquare(name, g):
    return _conv_case(g, n=1, cin=3, cout=5, h=7, w=10, k=3, stride=2, padding=1)


@case
def case_conv2d_3x3_batch2(name, g):
    return _conv_case(g, n=2, cin=4, cout=4, h=6, w=6, k=3, stride=1, padding=1)


# ----------------------------------------------------------------------------- normalisation

def _gn_case(g, *, n, groups, channels, h, w, eps, silu=False):
    m = torch.nn.GroupNorm(groups, channels, eps=eps, affine=True)
    gio.init_params(m, g)
    # Non-zero mean and non-unit scale per channel: a naive E[x^2]-E[x]^2 variance loses precision.
    x = gio.randn(g, n, channels, h, w, std=2.0) + gio.randn(g, 1, channels, 1, 1, std=3.0)
    y = m(x)
    if silu:
        y = F.silu(y)
    attrs = {"num_groups": groups, "num_channels": channels, "eps": eps, "affine": True}
    module = gio.class_path(m) + (" + torch.nn.functional.silu" if silu else "")
    return dict(module=module, attrs=attrs, inputs={"x": x}, params=gio.module_params(m), outputs={"y": y})


@case
def case_group_norm_g4_c16_eps1e5(name, g):
    return _gn_case(g, n=2, groups=4, channels=16, h=5, w=5, eps=1e-5)


@case
def case_group_norm_g4_c16_eps1e6(name, g):
    return _gn_case(g, n=1, groups=4, channels=16, h=6, w=6, eps=1e-6)


@case
def case_group_norm_g32_c64_eps1e5(name, g):
    return _gn_case(g, n=1, groups=32, channels=64, h=4, w=4, eps=1e-5)


@case
def case_group_norm_g32_c64_eps1e6(name, g):
    return _gn_case(g, n=2, groups=32, channels=64, h=4, w=4, eps=1e-6)


@case
def case_group_norm_silu(name, g):
    return _gn_case(g, n=1, groups=8, channels=32, h=4, w=4, eps=1e-6, silu=True)


@case
def case_layer_norm_affine(name, g):
    m = torch.nn.LayerNorm(32, eps=1e-5, elementwise_affine=True)
    gio.init_params(m, g)
    x = gio.randn(g, 2, 7, 32, std=2.0) + gio.randn(g, 2, 7, 1, std=3.0)
    return dict(module=gio.class_path(m),
                attrs={"normalized_shape": [32], "eps": 1e-5, "elementwise_affine": True, "bias": True},
                inputs={"x": x}, params=gio.module_params(m), outputs={"y": m(x)})


@case
def case_layer_norm_noaffine(name, g):
    m = torch.nn.LayerNorm(24, eps=1e-6, elementwise_affine=False)
    x = gio.randn(g, 3, 5, 24, std=2.0) + gio.randn(g, 3, 5, 1, std=3.0)
    return dict(module=gio.class_path(m),
                attrs={"normalized_shape": [24], "eps": 1e-6, "elementwise_affine": False},
                inputs={"x": x}, params=gio.module_params(m), outputs={"y": m(x)})


# ----------------------------------------------------------------------------- activations

@case
def case_silu(name, g):
    x = wide_input(g, 128)
    return dict(module="torch.nn.functional.silu", attrs={"formula": "x * sigmoid(x)"},
                inputs={"x": x}, params={}, outputs={"y": F.silu(x)})


@case
def case_gelu_erf(name, g):
    x = wide_input(g, 128)
    return dict(module="torch.nn.functional.gelu", attrs={"approximate": "none",
                                                          "formula": "0.5 * x * (1 + erf(x / sqrt(2)))"},
                inputs={"x": x}, params={}, outputs={"y": F.gelu(x)})


@case
def case_gelu_tanh(name, g):
    x = wide_input(g, 128)
    return dict(module="torch.nn.functional.gelu",
                attrs={"approximate": "tanh",
                       "formula": "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))"},
                inputs={"x": x}, params={}, outputs={"y": F.gelu(x, approximate="tanh")})


@case
def case_quick_gelu(name, g):
    x = wide_input(g, 128)
    y = x * torch.sigmoid(1.702 * x)
    return dict(module="quick_gelu (transformers CLIP 'quick_gelu')",
                attrs={"formula": "x * sigmoid(1.702 * x)", "alpha": 1.702},
                inputs={"x": x}, params={}, outputs={"y": y})


@case
def case_geglu(name, g):
    m = GEGLU(16, 24, bias=True)
    gio.init_params(m, g, fixed_std=0.3)
    x = gio.randn(g, 2, 5, 16)
    return dict(module=gio.class_path(m),
                attrs={"dim_in": 16, "dim_out": 24, "bias": True,
                       "formula": "h = proj(x); a, gate = h.chunk(2, dim=-1); y = a * gelu_erf(gate)"},
                inputs={"x": x}, params=gio.module_params(m), outputs={"y": m(x)})


@case
def case_softmax_lastdim(name, g):
    rows = [
        gio.randn(g, 17),                       # ordinary
        gio.randn(g, 17, std=50.0),             # +-50 logits
        gio.randn(g, 17, std=10.0) + 100.0,     # all ~ +100: exp overflows without max subtraction
        gio.randn(g, 17, std=10.0) - 100.0,     # all ~ -100: exp underflows without max subtraction
        torch.full((17,), 3.25),                # constant row -> uniform
        torch.linspace(-50.0, 50.0, 17),        # one dominant entry
    ]
    x = torch.stack(rows).reshape(2, 3, 17)
    return dict(module="torch.softmax", attrs={"dim": -1},
                inputs={"x": x}, params={}, outputs={"y": torch.softmax(x, dim=-1)})


# ----------------------------------------------------------------------------- attention

def _sdpa_case(g, *, b, heads, tq, tk, d, is_causal=False, qk_std=1.0):
    q = gio.randn(g, b, heads, tq, d, std=qk_std)
    k = gio.randn(g, b, heads, tk, d, std=qk_std)
    v = gio.randn(g, b, heads, tk, d)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=is_causal)
    attrs = {"layout": "BHTD", "layout_note": "q,k,v,y are [batch, heads, tokens, dim_head]",
             "batch": b, "heads": heads, "q_tokens": tq, "kv_tokens": tk, "dim_head": d,
             "is_causal": is_causal, "scale": 1.0 / math.sqrt(d), "scale_note": "default: 1/sqrt(dim_head)",
             "dropout_p": 0.0}
    if is_causal:
        attrs["causal_note"] = "torch is_causal: query i attends to keys j <= i (top-left aligned tril mask)"
    return dict(module="torch.nn.functional.scaled_dot_product_attention", attrs=attrs,
                inputs={"q": q, "k": k, "v": v}, params={}, outputs={"y": y})


@case
def case_sdpa_self(name, g):
    return _sdpa_case(g, b=2, heads=2, tq=64, tk=64, d=8, qk_std=1.5)


@case
def case_sdpa_cross(name, g):
    return _sdpa_case(g, b=2, heads=2, tq=64, tk=7, d=8, qk_std=1.5)


@case
def case_sdpa_causal(name, g):
    return _sdpa_case(g, b=1, heads=2, tq=9, tk=9, d=8, is_causal=True, qk_std=1.5)


@case
def case_sdpa_long(name, g):
    return _sdpa_case(g, b=1, heads=1, tq=1024, tk=1024, d=4, qk_std=2.0)


# ----------------------------------------------------------------------------- misc

@case
def case_embedding(name, g):
    m = torch.nn.Embedding(50, 16)
    gio.init_params(m, g, fixed_std=0.5)
    ids = torch.randint(0, 50, (2, 7), generator=g)
    ids[0, 0] = 0
    ids[1, -1] = 49
    y = m(ids)
    return dict(module=gio.class_path(m),
                attrs={"num_embeddings": 50, "embedding_dim": 16,
                       "ids_note": "input.ids holds integer ids stored as float32"},
                inputs={"ids": ids.to(torch.float32)}, params=gio.module_params(m), outputs={"y": y})


@case
def case_upsample_nearest2x(name, g):
    x = gio.randn(g, 1, 3, 4, 5)
    y = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return dict(module="torch.nn.functional.interpolate", attrs={"scale_factor": 2.0, "mode": "nearest"},
                inputs={"x": x}, params={}, outputs={"y": y})


@case
def case_concat_channels(name, g):
    a = gio.randn(g, 2, 3, 4, 5)
    b = gio.randn(g, 2, 5, 4, 5)
    return dict(module="torch.cat", attrs={"dim": 1, "layout": "NCHW"},
                inputs={"a": a, "b": b}, params={}, outputs={"y": torch.cat([a, b], dim=1)})


TIMESTEPS = [0.0, 1.0, 250.5, 999.0]


def _temb_case(dim, flip, shift):
    t = torch.tensor(TIMESTEPS, dtype=torch.float32)
    y = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift, scale=1, max_period=10000)
    attrs = {"embedding_dim": dim, "flip_sin_to_cos": flip, "downscale_freq_shift": shift, "scale": 1,
             "max_period": 10000}
    return dict(module="diffusers.models.embeddings.get_timestep_embedding", attrs=attrs,
                inputs={"timesteps": t}, params={}, outputs={"y": y})


@case
def case_timestep_embedding_flip_shift0(name, g):
    return _temb_case(32, True, 0)        # as the SD UNet's Timesteps(flip_sin_to_cos=True, freq_shift=0)


@case
def case_timestep_embedding_noflip_shift1(name, g):
    return _temb_case(32, False, 1)


@case
def case_timestep_embedding_odd_dim(name, g):
    return _temb_case(33, True, 0)


@case
def case_timestep_embedding_sd320(name, g):
    return _temb_case(320, True, 0)       # SD 1.x/2.x: block_out_channels[0] = 320


# -----------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/ops)")
    ap.add_argument("--only", nargs="*", help="case names to (re)generate")
    args = ap.parse_args(argv)
    gio.setup_torch()
    names = args.only or list(CASES)
    total = 0
    for name in names:
        fn = CASES[name]
        g = gio.make_generator(name)
        with torch.no_grad():
            spec = fn(name, g)
        path = os.path.join(args.out, f"{name}.safetensors")
        size = gio.write_golden(path, name, spec["module"], spec["attrs"], spec["inputs"], spec["params"],
                                spec["outputs"])
        total += size
        print(f"{name:40s} {gio.fmt_size(size):>12s}")
    print(f"{'total':40s} {gio.fmt_size(total):>12s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
