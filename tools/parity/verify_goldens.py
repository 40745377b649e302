#!/usr/bin/env python3
"""Independent check of the goldens: re-implements every op and block in float64 NumPy from nothing
but the file contents (inputs, params, metadata attrs) and compares with the stored outputs.

It does not import torch or diffusers, so it also serves as a readable specification of what the
Swift side must compute. Usage:
    /work/venv/bin/python tools/parity/verify_goldens.py [DIR ...]   (default: Tests/Fixtures/ops, .../blocks)
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ----------------------------------------------------------------------------- reader (no safetensors dep)

def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__")
    tensors = {}
    for k, v in header.items():
        assert v["dtype"] == "F32"
        a, b = v["data_offsets"]
        tensors[k] = np.frombuffer(data[a:b], dtype="<f4").reshape(v["shape"]).astype(np.float64)
    return meta, tensors


class P:
    """param.<prefix>.<name> accessor."""

    def __init__(self, t, prefix="param."):
        self.t, self.prefix = t, prefix

    def __getitem__(self, k):
        return self.t[self.prefix + k]

    def get(self, k):
        return self.t.get(self.prefix + k)

    def sub(self, name):
        return P(self.t, self.prefix + name + ".")

    def has(self, k):
        return (self.prefix + k) in self.t


# ----------------------------------------------------------------------------- primitives (float64)

_erf = np.vectorize(math.erf)


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def linear(x, w, b=None):
    y = x @ w.T
    return y + b if b is not None else y


def conv2d(x, w, b=None, stride=1, padding=0):
    n, c, h, wd = x.shape
    o, c2, kh, kw = w.shape
    assert c == c2
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]  # n c ho wo
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + b[None, :, None, None] if b is not None else y


def group_norm(x, groups, w, b, eps):
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mu = xg.mean(-1, keepdims=True)
    var = ((xg - mu) ** 2).mean(-1, keepdims=True)
    y = ((xg - mu) / np.sqrt(var + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return y * w.reshape(shape) + b.reshape(shape)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sdpa(q, k, v, causal=False):
    s = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if causal:
        tq, tk = s.shape[-2:]
        s = np.where(np.tril(np.ones((tq, tk), dtype=bool)), s, -np.inf)
    return softmax(s) @ v


def timestep_embedding(t, dim, flip, shift, scale=1.0, max_period=10000):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / (half - shift))
    args = scale * t[:, None] * freqs[None]
    emb = np.concatenate([np.sin(args), np.cos(args)], -1)
    if flip:
        emb = np.concatenate([emb[:, half:], emb[:, :half]], -1)
    if dim % 2 == 1:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return emb


def upsample_nearest2x(x):
    return x.repeat(2, axis=-2).repeat(2, axis=-1)


# ----------------------------------------------------------------------------- diffusers modules

def resnet(p, x, temb, groups, eps):
    h = silu(group_norm(x, groups, p["norm1.weight"], p["norm1.bias"], eps))
    h = conv2d(h, p["conv1.weight"], p["conv1.bias"], 1, 1)
    if temb is not None:
        h = h + linear(silu(temb), p["time_emb_proj.weight"], p["time_emb_proj.bias"])[:, :, None, None]
    h = silu(group_norm(h, groups, p["norm2.weight"], p["norm2.bias"], eps))
    h = conv2d(h, p["conv2.weight"], p["conv2.bias"], 1, 1)
    if p.has("conv_shortcut.weight"):
        x = conv2d(x, p["conv_shortcut.weight"], p.get("conv_shortcut.bias"), 1, 0)
    return x + h


def attention(p, x, ctx, heads):
    """diffusers Attention on [B, T, C] tokens (no norms); SDPA with scale 1/sqrt(dim_head)."""
    ctx = x if ctx is None else ctx
    q = linear(x, p["to_q.weight"], p.get("to_q.bias"))
    k = linear(ctx, p["to_k.weight"], p.get("to_k.bias"))
    v = linear(ctx, p["to_v.weight"], p.get("to_v.bias"))
    b, tq, inner = q.shape
    d = inner // heads

    def split(t):
        return t.reshape(b, t.shape[1], heads, d).transpose(0, 2, 1, 3)

    o = sdpa(split(q), split(k), split(v)).transpose(0, 2, 1, 3).reshape(b, tq, inner)
    return linear(o, p["to_out.0.weight"], p.get("to_out.0.bias"))


def vae_attention(p, x, groups, eps):
    b, c, h, w = x.shape
    t = group_norm(x.reshape(b, c, h * w), groups, p["group_norm.weight"], p["group_norm.bias"], eps)
    t = t.transpose(0, 2, 1)
    o = attention(p, t, None, heads=1)
    return o.transpose(0, 2, 1).reshape(b, c, h, w) + x


def basic_transformer_block(p, x, ctx, heads):
    n = layer_norm(x, p["norm1.weight"], p["norm1.bias"], 1e-5)
    x = attention(p.sub("attn1"), n, None, heads) + x
    n = layer_norm(x, p["norm2.weight"], p["norm2.bias"], 1e-5)
    x = attention(p.sub("attn2"), n, ctx, heads) + x
    n = layer_norm(x, p["norm3.weight"], p["norm3.bias"], 1e-5)
    hg = linear(n, p["ff.net.0.proj.weight"], p["ff.net.0.proj.bias"])
    a, gate = np.split(hg, 2, axis=-1)       # first half = value, second half = gate
    ff = linear(a * gelu(gate), p["ff.net.2.weight"], p["ff.net.2.bias"])
    return ff + x


def transformer2d(p, x, ctx, heads, groups, linear_proj):
    b, c, h, w = x.shape
    res = x
    t = group_norm(x, groups, p["norm.weight"], p["norm.bias"], 1e-6)   # eps fixed at 1e-6
    if not linear_proj:
        t = conv2d(t, p["proj_in.weight"], p["proj_in.bias"])
        inner = t.shape[1]
        t = t.transpose(0, 2, 3, 1).reshape(b, h * w, inner)
    else:
        t = t.transpose(0, 2, 3, 1).reshape(b, h * w, c)
        t = linear(t, p["proj_in.weight"], p["proj_in.bias"])
        inner = t.shape[-1]
    i = 0
    while p.has(f"transformer_blocks.{i}.norm1.weight"):
        t = basic_transformer_block(p.sub(f"transformer_blocks.{i}"), t, ctx, heads)
        i += 1
    if not linear_proj:
        t = t.reshape(b, h, w, inner).transpose(0, 3, 1, 2)
        t = conv2d(t, p["proj_out.weight"], p["proj_out.bias"])
    else:
        t = linear(t, p["proj_out.weight"], p["proj_out.bias"])
        t = t.reshape(b, h, w, -1).transpose(0, 3, 1, 2)
    return t + res


def downsample(p, x, padding):
    if padding == 0:
        x = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)))
    return conv2d(x, p["conv.weight"], p["conv.bias"], 2, padding)


def upsample(p, x):
    return conv2d(upsample_nearest2x(x), p["conv.weight"], p["conv.bias"], 1, 1)


# ----------------------------------------------------------------------------- per-file checks

def check_op(meta, t):
    a = json.loads(meta["attrs"])
    case = meta["case"]
    inp = {k[6:]: v for k, v in t.items() if k.startswith("input.")}
    p = P(t)
    if case.startswith("linear"):
        return linear(inp["x"], p["weight"], p.get("bias"))
    if case.startswith("matmul"):
        return inp["a"] @ inp["b"]
    if case.startswith("conv2d"):
        x = inp["x"]
        if "pre_pad" in a:
            l, r, tp, bt = a["pre_pad"]
            x = np.pad(x, ((0, 0), (0, 0), (tp, bt), (l, r)))
        return conv2d(x, p["weight"], p["bias"], a["stride"][0], a["padding"][0])
    if case.startswith("group_norm"):
        y = group_norm(inp["x"], a["num_groups"], p["weight"], p["bias"], a["eps"])
        return silu(y) if "silu" in meta["module"] else y
    if case.startswith("layer_norm"):
        return layer_norm(inp["x"], p.get("weight"), p.get("bias"), a["eps"])
    if case == "silu":
        return silu(inp["x"])
    if case == "gelu_erf":
        return gelu(inp["x"])
    if case == "gelu_tanh":
        return gelu_tanh(inp["x"])
    if case == "quick_gelu":
        x = inp["x"]
        return x / (1.0 + np.exp(-1.702 * x))
    if case == "geglu":
        h = linear(inp["x"], p["proj.weight"], p["proj.bias"])
        v, gate = np.split(h, 2, axis=-1)
        return v * gelu(gate)
    if case.startswith("softmax"):
        return softmax(inp["x"], a["dim"])
    if case.startswith("sdpa"):
        return sdpa(inp["q"], inp["k"], inp["v"], a["is_causal"])
    if case == "embedding":
        return p["weight"][inp["ids"].astype(np.int64)]
    if case.startswith("upsample"):
        return upsample_nearest2x(inp["x"])
    if case.startswith("concat"):
        return np.concatenate([inp["a"], inp["b"]], axis=a["dim"])
    if case.startswith("timestep_embedding"):
        return timestep_embedding(inp["timesteps"], a["embedding_dim"], a["flip_sin_to_cos"],
                                  a["downscale_freq_shift"], a["scale"], a["max_period"])
    raise KeyError(case)


def check_block(meta, t):
    a = json.loads(meta["attrs"])
    case = meta["case"]
    inp = {k[6:]: v for k, v in t.items() if k.startswith("input.")}
    p = P(t)
    x = inp.get("hidden_states")
    temb = inp.get("temb")
    ctx = inp.get("encoder_hidden_states")
    out = {}
    if case.startswith("resnet"):
        out["hidden_states"] = resnet(p, x, temb, a["groups"], a["eps"])
    elif case == "vae_attention":
        out["hidden_states"] = vae_attention(p, x, a["norm_num_groups"], a["eps"])
    elif case == "vae_mid_block":
        g, eps = a["resnet_groups"], a["resnet_eps"]
        h = resnet(p.sub("resnets.0"), x, None, g, eps)
        h = vae_attention(p.sub("attentions.0"), h, g, eps)
        out["hidden_states"] = resnet(p.sub("resnets.1"), h, None, g, eps)
    elif case == "basic_transformer_block":
        out["hidden_states"] = basic_transformer_block(p, x, ctx, a["num_attention_heads"])
    elif case.startswith("transformer2d"):
        out["hidden_states"] = transformer2d(p, x, ctx, a["num_attention_heads"], a["norm_num_groups"],
                                             a["use_linear_projection"])
    elif case == "timestep_embedding_mlp":
        s = timestep_embedding(inp["timesteps"], a["in_channels"], True, 0)
        assert np.abs(s - inp["sample"]).max() < 1e-5
        out["temb"] = linear(silu(linear(inp["sample"], p["linear_1.weight"], p["linear_1.bias"])),
                             p["linear_2.weight"], p["linear_2.bias"])
    elif case.startswith("downsample"):
        out["hidden_states"] = downsample(p, x, a["padding"])
    elif case.startswith("upsample"):
        out["hidden_states"] = upsample(p, x)
    elif case in ("down_block_2d", "cross_attn_down_block_2d", "down_encoder_block_2d"):
        g, eps = a["resnet_groups"], a["resnet_eps"]
        h, states = x, []
        for i in range(a["num_layers"]):
            h = resnet(p.sub(f"resnets.{i}"), h, temb, g, eps)
            if case.startswith("cross"):
                h = transformer2d(p.sub(f"attentions.{i}"), h, ctx, a["num_attention_heads"], g,
                                  a["use_linear_projection"])
            states.append(h)
        if a["add_downsample"]:
            h = downsample(p.sub("downsamplers.0"), h, a["downsample_padding"])
            states.append(h)
        out["hidden_states"] = h
        if case != "down_encoder_block_2d":
            out.update({f"states.{i}": s for i, s in enumerate(states)})
    elif case in ("up_block_2d", "cross_attn_up_block_2d", "up_decoder_block_2d"):
        g, eps = a["resnet_groups"], a["resnet_eps"]
        res = [inp[f"res.{i}"] for i in range(a["num_layers"])] if case != "up_decoder_block_2d" else None
        h = x
        for i in range(a["num_layers"]):
            if res is not None:
                h = np.concatenate([h, res.pop()], axis=1)   # pops from the END of the tuple
            h = resnet(p.sub(f"resnets.{i}"), h, temb, g, eps)
            if case.startswith("cross"):
                h = transformer2d(p.sub(f"attentions.{i}"), h, ctx, a["num_attention_heads"], g,
                                  a["use_linear_projection"])
        if a["add_upsample"]:
            h = upsample(p.sub("upsamplers.0"), h)
        out["hidden_states"] = h
    elif case == "mid_block_cross_attn":
        g, eps = a["resnet_groups"], a["resnet_eps"]
        h = resnet(p.sub("resnets.0"), x, temb, g, eps)
        for i in range(a["num_layers"]):
            h = transformer2d(p.sub(f"attentions.{i}"), h, ctx, a["num_attention_heads"], g,
                              a["use_linear_projection"])
            h = resnet(p.sub(f"resnets.{i + 1}"), h, temb, g, eps)
        out["hidden_states"] = h
    else:
        raise KeyError(case)
    return out


def main(argv):
    dirs = argv or [os.path.join(REPO, "Tests", "Fixtures", "ops"), os.path.join(REPO, "Tests", "Fixtures", "blocks")]
    worst = 0.0
    for d in dirs:
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".safetensors"):
                continue
            meta, t = read(os.path.join(d, fn))
            is_block = "forward" in meta
            ref = check_block(meta, t) if is_block else {"y": check_op(meta, t)}
            outs = {k[7:]: v for k, v in t.items() if k.startswith("output.")}
            assert set(ref) == set(outs), (fn, sorted(ref), sorted(outs))
            errs = []
            for k, r in ref.items():
                assert r.shape == outs[k].shape, (fn, k, r.shape, outs[k].shape)
                errs.append(float(np.abs(r - outs[k]).max()))
            scale = max(float(np.abs(v).max()) for v in outs.values())
            e = max(errs)
            worst = max(worst, e / max(scale, 1.0))
            print(f"{os.path.basename(d)}/{fn:45s} max|err|={e:.2e}  max|out|={scale:8.3f}")
    print(f"worst relative-to-max error: {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
