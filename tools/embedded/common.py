"""Shared helpers for the embedded-model training scripts (configs, checkpoints, EMA, LR)."""
import math
import os
import random
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

# ----------------------------------------------------------------------------- model configs
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    block_out_channels=(32, 64, 128, 128), layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    act_fn="silu", norm_num_groups=8, sample_size=128,
)

TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=128,
    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
)

UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4,
    block_out_channels=(32, 64, 128), layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=128, attention_head_dim=2, norm_num_groups=8, act_fn="silu",
)

SCHED = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
             prediction_type="epsilon", steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def setup_threads(n=2):
    """Intra-op threads. TRAIN_THREADS overrides: on a machine shared with other (higher-priority)
    jobs, 1 thread was ~2.5x faster per step than 2 (the OpenMP threads wait for each other)."""
    n = int(os.environ.get("TRAIN_THREADS", n))
    torch.set_num_threads(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def seed_all(s):
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def rng_state():
    return dict(py=random.getstate(), np=np.random.get_state(), torch=torch.get_rng_state())


def set_rng_state(st):
    random.setstate(st["py"])
    np.random.set_state(st["np"])
    torch.set_rng_state(st["torch"])


def save_ckpt(path, obj):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_ckpt(path):
    if os.path.exists(path):
        return torch.load(path, map_location="cpu", weights_only=False)
    return None


class EMA:
    def __init__(self, params, decay):
        self.params = [p for p in params]
        self.shadow = [p.detach().clone().float() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step):
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach().float(), alpha=1 - d)

    def state_dict(self):
        return [s.clone() for s in self.shadow]

    def load_state_dict(self, sd):
        for s, v in zip(self.shadow, sd):
            s.copy_(v)

    @torch.no_grad()
    def copy_to(self, params):
        for s, p in zip(self.shadow, params):
            p.data.copy_(s.to(p.dtype))


def lr_factor(step, warmup, total, const_frac=1.0, floor=0.05):
    """Linear warm-up, constant until const_frac*total, then cosine to `floor`."""
    if step < warmup:
        return (step + 1) / warmup
    c = int(const_frac * total)
    if step < c or total <= c:
        return 1.0
    p = min(1.0, (step - c) / max(1, total - c))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def to_tensor_img(arr):
    """uint8 HxWx3 (or NxHxWx3) -> float tensor in [-1, 1], NCHW."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).float() / 127.5 - 1.0
    return t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def to_uint8(t):
    """[-1,1] NCHW tensor -> uint8 NHWC numpy."""
    return ((t.float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def psnr(a_uint8, b_uint8):
    d = (a_uint8.astype(np.float64) - b_uint8.astype(np.float64)) / 255.0
    mse = (d ** 2).mean()
    return 10 * math.log10(1.0 / max(mse, 1e-12))
