"""Minimal LoRA for nn.Linear modules (and nn.Conv2d, LoCon), with kohya/sd-scripts naming.

kohya name = prefix + module path with '.' replaced by '_', e.g.
  unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q
    -> lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.{lora_down.weight, lora_up.weight, alpha}
  text_model.encoder.layers.0.self_attn.q_proj (CLIPTextModel)
    -> lora_te_text_model_encoder_layers_0_self_attn_q_proj.{...}
Forward: y = W x + (alpha / rank) * up(down(x)), i.e. exactly what diffusers' kohya loader
(and sd-scripts) apply at scale 1.0.
"""
import math

import torch
import torch.nn as nn

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2")
# LoCon: resnet convolutions (3x3) and the transformer's 1x1 proj_in/proj_out convs (SD 1.x layout)
UNET_CONV_TARGETS = ("conv1", "conv2", "proj_in", "proj_out")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, alpha
        self.lora_down = nn.Linear(base.in_features, rank, bias=False)
        self.lora_up = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.scale = 1.0

    def forward(self, x):
        return self.base(x) + self.lora_up(self.lora_down(x)) * (self.alpha / self.rank * self.scale)


class LoRAConv2d(nn.Module):
    """kohya LoCon: down = conv with the base kernel/stride/padding to `rank` channels, up = 1x1 conv."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, alpha
        self.lora_down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
        self.lora_up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.scale = 1.0

    def forward(self, x):
        return self.base(x) + self.lora_up(self.lora_down(x)) * (self.alpha / self.rank * self.scale)


def inject(model: nn.Module, targets, rank, alpha, prefix, conv_targets=()):
    """Wrap matching nn.Linear (and, for conv_targets, nn.Conv2d) modules. Returns {kohya_name: module}."""
    found = {}
    for name, mod in list(model.named_modules()):
        for child_name, child in list(mod.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            lo = None
            if isinstance(child, nn.Linear) and any(full.endswith(t) for t in targets):
                lo = LoRALinear(child, rank, alpha)
            elif isinstance(child, nn.Conv2d) and any(full.endswith(t) for t in conv_targets):
                lo = LoRAConv2d(child, rank, alpha)
            if lo is not None:
                setattr(mod, child_name, lo)
                path = full
                if prefix == "lora_te_" and not path.startswith("text_model."):
                    path = "text_model." + path  # transformers 5 CLIPTextModel has no text_model submodule
                found[prefix + path.replace(".", "_")] = lo
    # "to_out.0": the Linear is child "0" of the ModuleList "to_out"
    return found


def lora_params(mods):
    ps = []
    for m in mods.values():
        ps += [m.lora_down.weight, m.lora_up.weight]
    return ps


def kohya_state(mods, dtype=torch.float16):
    out = {}
    for k, m in mods.items():
        out[f"{k}.lora_down.weight"] = m.lora_down.weight.detach().to(dtype).contiguous()
        out[f"{k}.lora_up.weight"] = m.lora_up.weight.detach().to(dtype).contiguous()
        out[f"{k}.alpha"] = torch.tensor(float(m.alpha), dtype=dtype)
    return out
