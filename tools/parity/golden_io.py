"""Shared helpers for the parity golden generators (make_op_goldens.py, make_block_goldens.py).

Writes safetensors files *deterministically*: the `safetensors` Python package serialises
`__metadata__` from a Rust HashMap, so its key order (and therefore the file bytes) changes from
run to run. We write the (simple) format ourselves instead, with sorted keys, and check the result
by reading it back with `safetensors.safe_open`.

File layout (https://github.com/huggingface/safetensors#format):
    u64 little-endian N | N bytes of JSON header (space padded to a multiple of 8) | raw data
"""

from __future__ import annotations

import json
import os
import struct
import zlib

import numpy as np
import torch

import diffusers

_TORCH_VERSION = torch.__version__
_DIFFUSERS_VERSION = diffusers.__version__


def setup_torch() -> None:
    """Single thread (bit-stable results, shared 2-core machine) and float32 defaults."""
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(True)


def case_seed(case: str) -> int:
    """A stable per-case seed (independent of case order, so adding a case changes nothing else)."""
    return zlib.crc32(case.encode("utf-8")) & 0x7FFFFFFF


def make_generator(case: str) -> torch.Generator:
    torch.manual_seed(case_seed(case))
    g = torch.Generator().manual_seed(case_seed(case))
    return g


def randn(g: torch.Generator, *shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean


def attrs_json(attrs: dict) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


def _to_f32_bytes(t: torch.Tensor) -> tuple[list[int], bytes]:
    a = t.detach().to(torch.float32).contiguous().cpu().numpy()
    a = np.ascontiguousarray(a, dtype="<f4")
    # np.ascontiguousarray turns 0-d arrays into 1-d; keep the tensor's own shape (kohya alphas are 0-d).
    return list(t.shape), a.tobytes()


def write_golden(
    path: str,
    case: str,
    module: str,
    attrs: dict,
    inputs: dict[str, torch.Tensor],
    params: dict[str, torch.Tensor],
    outputs: dict[str, torch.Tensor],
    extra_metadata: dict[str, str] | None = None,
) -> int:
    """Write one golden file; returns its size in bytes."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, group in (("input.", inputs), ("param.", params), ("output.", outputs)):
        for name, t in group.items():
            key = prefix + name
            if key in tensors:
                raise ValueError(f"duplicate tensor name {key}")
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{key} is not a tensor")
            if not torch.isfinite(t).all():
                raise ValueError(f"{case}: {key} has non-finite values")
            tensors[key] = t

    metadata = {
        "case": case,
        "module": module,
        "attrs": attrs_json(attrs),
        "diffusers_version": _DIFFUSERS_VERSION,
        "torch_version": _TORCH_VERSION,
    }
    if extra_metadata:
        for k, v in extra_metadata.items():
            if k in metadata:
                raise ValueError(f"metadata key {k} is reserved")
            metadata[k] = str(v)

    return write_safetensors(path, tensors, metadata)


def write_safetensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> int:
    """Write float32 tensors (sorted keys) and string metadata deterministically; returns the size in bytes."""
    metadata = {k: str(v) for k, v in (metadata or {}).items()}
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs = []
    offset = 0
    for key in sorted(tensors):
        shape, data = _to_f32_bytes(tensors[key])
        header[key] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(data)]}
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
    _verify(path, tensors, metadata)
    return os.path.getsize(path)


def _verify(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Read the file back with the reference safetensors implementation."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        if (f.metadata() or {}) != metadata:
            raise AssertionError(f"{path}: metadata mismatch")
        if sorted(f.keys()) != sorted(tensors):
            raise AssertionError(f"{path}: key mismatch")
        for k, t in tensors.items():
            r = f.get_tensor(k)
            if r.dtype != torch.float32 or not torch.equal(r, t.detach().to(torch.float32).cpu()):
                raise AssertionError(f"{path}: tensor {k} mismatch on read-back")


def module_params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict() keys as-is (buffers included), cloned so shared tensors are stored separately."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def class_path(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def init_params(module: torch.nn.Module, g: torch.Generator, *, gain: float = 1.0, fixed_std: float | None = None,
                special_gain: dict[str, float] | None = None) -> None:
    """Re-initialise every parameter non-trivially and deterministically.

    - Norm layers (GroupNorm / LayerNorm): weight ~ 1 + 0.2 N(0,1), bias ~ 0.2 N(0,1).
    - Weights (dim >= 2): N(0, std) with std = fixed_std if given, else gain / sqrt(fan_in)
      (keeps activations O(1) through deep blocks while every weight is clearly non-zero).
    - Biases: N(0, 0.2).
    `special_gain` maps a substring of the parameter name to a multiplier on the weight std
    (e.g. to sharpen attention logits).
    """
    norm_types = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    norm_params = set()
    for mname, m in module.named_modules():
        if isinstance(m, norm_types):
            for pname, _ in m.named_parameters(recurse=False):
                norm_params.add(f"{mname}.{pname}" if mname else pname)

    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in norm_params:
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * randn(g, *p.shape))
                else:
                    p.copy_(0.2 * randn(g, *p.shape))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                std = fixed_std if fixed_std is not None else gain / (fan_in ** 0.5)
                if special_gain:
                    for sub, mult in special_gain.items():
                        if sub in name:
                            std *= mult
                p.copy_(randn(g, *p.shape, std=std))
            else:
                p.copy_(0.2 * randn(g, *p.shape))


def fmt_size(n: int) -> str:
    return f"{n / 1024:.1f} KiB"
