#!/usr/bin/env python3
"""Generate sampler / RNG parity goldens -> Tests/Fixtures/samplers/.

torch_randn.safetensors
    `torch.randn` / `torch.rand` from `torch.Generator().manual_seed(seed)` for several seeds and shapes, and
    a sequence of draws from one generator (the state must carry on across calls). Compared bit for bit.

<sampler>_<config>.safetensors, one per sampler and model configuration
    The scheduler built the way a pipeline switches samplers,
    `Target.from_config(Origin.from_config(scheduler_config.json).config, **sampler_overrides)`,
    then, for 4, 10 and 20 steps: timesteps, sigmas, init_noise_sigma, and a full denoising loop with a
    deterministic fake model (see `fake_model`) from `torch.randn([1, 4, 8, 8])` latents, ancestral noise
    from the same generator, exactly like `StableDiffusionPipeline`: the sample after step 1 and the final
    sample. Plus img2img at strength 0.6 with 10 steps (`get_timesteps` / `set_begin_index`, or LCM's
    `set_timesteps(strength=)`): the step range, `add_noise` and the final sample, and a table of timesteps
    and sigmas for odd step counts (metadata `timestep_table`, `sigma_table`). `ddim_eta1_sd1` runs DDIM
    with the pipeline argument eta=1 (noise drawn every step). Metadata `scheduler_config_json` is the file
    the Swift test builds from; `resolved_config` is diffusers' `scheduler.config` to compare settings with.

Note: only the keys written in scheduler_config.json carry over in `from_config` (diffusers drops the
origin class's filled-in defaults via `_use_default_values`), so from SD 1.5's file Euler and DPM-Solver
space timesteps "linspace" while DDIM and PNDM space "leading".

Usage:  /work/venv/bin/python tools/parity/make_sampler_goldens.py [--out DIR] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

import diffusers  # noqa: E402
from diffusers import (  # noqa: E402
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_OUT = os.path.join(REPO, "Tests", "Fixtures", "samplers")

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15_CONFIG = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (v-prediction)
SD21_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}

# "sd1" / "sd2v" are the files as published: they set no timestep_spacing, so each scheduler class uses its
# own default (DDIM, PNDM: leading; Euler, Euler a, DPM-Solver: linspace; LCM ignores it). The variants set
# the spacing explicitly.
CONFIGS = {
    "sd1": SD15_CONFIG,
    "sd1_leading": {**SD15_CONFIG, "timestep_spacing": "leading"},
    "sd1_linspace": {**SD15_CONFIG, "timestep_spacing": "linspace"},
    "sd1_trailing": {**SD15_CONFIG, "timestep_spacing": "trailing"},
    "sd2v": SD21_CONFIG,
    # Zero terminal SNR (arXiv 2305.08891): rescaled betas, trailing spacing, v-prediction.
    "sd2v_zsnr": {**SD21_CONFIG, "rescale_betas_zero_snr": True, "timestep_spacing": "trailing"},
    "sd1_cosine": {**SD15_CONFIG, "beta_schedule": "squaredcos_cap_v2"},
}

# Our sampler names -> (diffusers class, from_config overrides), as Sources/Samplers/SamplerKind.swift maps them.
SAMPLERS = {
    "ddim": (DDIMScheduler, {}),
    "ddim_eta1": (DDIMScheduler, {}),  # the pipeline's eta=1.0: DDPM-like noise from the generator each step
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                               "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                      "use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
    # Settings no sampler name selects, built from the class directly (metadata sampler "custom:<class>").
    "dpm_order3_heun": (DPMSolverMultistepScheduler, {"solver_order": 3, "solver_type": "heun",
                                                      "final_sigmas_type": "sigma_min", "lambda_min_clipped": -5.1}),
    "euler_karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True, "final_sigmas_type": "sigma_min"}),
}
NAMED_SAMPLERS = ("ddim", "pndm", "euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm")

# Which configurations each sampler is checked on: the published files, plus the spacings its class does not
# default to (Karras sigmas and LCM do not use the spacing).
SAMPLER_CONFIGS = {
    "ddim": ("sd1", "sd1_linspace", "sd1_trailing", "sd2v", "sd2v_zsnr"),
    "ddim_eta1": ("sd1",),
    "pndm": ("sd1", "sd1_linspace", "sd1_trailing", "sd2v"),
    "euler": ("sd1", "sd1_leading", "sd1_trailing", "sd2v"),
    "euler_a": ("sd1", "sd1_leading", "sd1_trailing", "sd2v"),
    "dpmpp_2m": ("sd1", "sd1_leading", "sd1_trailing", "sd2v"),
    "dpmpp_2m_karras": ("sd1", "sd2v"),
    "lcm": ("sd1", "sd2v"),
    "dpm_order3_heun": ("sd1_cosine",),
    "euler_karras": ("sd2v_zsnr",),
}

ORIGINS = {"PNDMScheduler": PNDMScheduler, "DDIMScheduler": DDIMScheduler}

STEP_COUNTS = (4, 10, 20)
TABLE_STEP_COUNTS = (1, 2, 3, 7, 13, 50)
IMG2IMG_STEPS = 10
IMG2IMG_STRENGTH = 0.6
LATENT_SHAPE = (1, 4, 8, 8)

FAKE_MODEL = "model_output = (sample * 0.8) + float32(float(t) / 1000.0 * 0.05)"


def fake_model(sample: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for the UNet that Swift can compute identically (two float32 roundings)."""
    k = torch.tensor(float(t) / 1000.0 * 0.05, dtype=torch.float32)
    return sample * 0.8 + k


def json_safe(value):
    """JSON for config values: non-finite floats (lambda_min_clipped = -inf) as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def build_scheduler(sampler: str, raw_config: dict):
    origin = ORIGINS[raw_config["_class_name"]].from_config(raw_config)
    cls, overrides = SAMPLERS[sampler]
    return cls.from_config(origin.config, **overrides)


ETA = {"ddim_eta1": 1.0}


def step_kwargs(scheduler, generator, eta: float) -> dict:
    """`prepare_extra_step_kwargs`: pass eta / generator only to schedulers whose step() accepts them."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generator
    return kwargs


def run_loop(scheduler, latents: torch.Tensor, timesteps, generator, eta: float = 0.0):
    """The denoising loop of StableDiffusionPipeline (no CFG): returns (sample after step 1, final sample)."""
    kwargs = step_kwargs(scheduler, generator, eta)
    after_first = None
    for i, t in enumerate(timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        model_output = fake_model(model_input, t)
        latents = scheduler.step(model_output, t, latents, **kwargs, return_dict=False)[0]
        if i == 0:
            after_first = latents.clone()
    return after_first, latents


def float_list(t: torch.Tensor) -> list:
    return [float(v) for v in t.detach().to(torch.float64).flatten()]


def float32_table_json(table: dict) -> str:
    """{n: [values]} as JSON with each float32 in its shortest round-trip form (str(np.float32))."""
    rows = [f'"{n}":[' + ",".join(str(np.float32(v)) for v in values) + "]" for n, values in sorted(table.items())]
    text = "{" + ",".join(rows) + "}"
    for n, values in json.loads(text).items():  # must parse, and recover every float32 exactly
        assert [np.float32(v) for v in values] == [np.float32(v) for v in table[n]], n
    return text


def scheduler_case(sampler: str, config_name: str, seed: int) -> dict:
    raw = CONFIGS[config_name]
    cls, overrides = SAMPLERS[sampler]
    outputs: dict[str, torch.Tensor] = {}

    probe = build_scheduler(sampler, raw)
    resolved = {k: json_safe(v) for k, v in dict(probe.config).items() if not k.startswith("_")}

    for n in STEP_COUNTS:
        scheduler = build_scheduler(sampler, raw)
        scheduler.set_timesteps(n)
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(LATENT_SHAPE, generator=g, dtype=torch.float32)
        init_sigma = scheduler.init_noise_sigma
        latents = noise * init_sigma
        outputs[f"n{n}.timesteps"] = scheduler.timesteps.to(torch.float32)
        if cls in (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler):
            outputs[f"n{n}.sigmas"] = scheduler.sigmas.to(torch.float32)
        outputs[f"n{n}.init_noise_sigma"] = torch.tensor([float(init_sigma)], dtype=torch.float32)
        first, final = run_loop(scheduler, latents, scheduler.timesteps, g, ETA.get(sampler, 0.0))
        outputs[f"n{n}.step1"] = first
        outputs[f"n{n}.final"] = final

    # img2img, as StableDiffusionImg2ImgPipeline (or the LCM img2img pipeline) prepares it.
    scheduler = build_scheduler(sampler, raw)
    g = torch.Generator().manual_seed(seed + 1)
    image_latents = torch.randn(LATENT_SHAPE, generator=g, dtype=torch.float32)
    if sampler == "lcm":
        scheduler.set_timesteps(IMG2IMG_STEPS, strength=IMG2IMG_STRENGTH)
        start = 0
    else:
        scheduler.set_timesteps(IMG2IMG_STEPS)
        init_timestep = min(int(IMG2IMG_STEPS * IMG2IMG_STRENGTH), IMG2IMG_STEPS)
        start = max(IMG2IMG_STEPS - init_timestep, 0) * scheduler.order
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
    timesteps = scheduler.timesteps[start:]
    noise = torch.randn(LATENT_SHAPE, generator=g, dtype=torch.float32)
    noised = scheduler.add_noise(image_latents, noise, timesteps[:1])
    _, final = run_loop(scheduler, noised, timesteps, g, ETA.get(sampler, 0.0))
    outputs["img2img.start_index"] = torch.tensor([float(start)], dtype=torch.float32)
    outputs["img2img.timesteps"] = timesteps.to(torch.float32)
    outputs["img2img.noised"] = noised
    outputs["img2img.final"] = final

    timestep_table, sigma_table = {}, {}
    for n in TABLE_STEP_COUNTS:
        scheduler = build_scheduler(sampler, raw)
        scheduler.set_timesteps(n)
        timestep_table[str(n)] = float_list(scheduler.timesteps.to(torch.float32))
        if cls in (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler):
            sigma_table[str(n)] = float_list(scheduler.sigmas.to(torch.float32))

    if sampler == "ddim_eta1":
        sampler_name, config_json = "ddim", raw
    elif sampler in NAMED_SAMPLERS:
        sampler_name, config_json = sampler, raw
    else:  # the overrides written into the file, built from the class directly
        sampler_name, config_json = f"custom:{cls.__name__}", {**raw, **overrides}
    attrs = {
        "sampler": sampler_name,
        "eta": ETA.get(sampler, 0.0),
        "config_name": config_name,
        "seed": seed,
        "latent_shape": list(LATENT_SHAPE),
        "step_counts": list(STEP_COUNTS),
        "img2img_steps": IMG2IMG_STEPS,
        "img2img_strength": IMG2IMG_STRENGTH,
        "fake_model": FAKE_MODEL,
        "model_input_note": "model_output = fake_model(scale_model_input(sample, t), t); ancestral noise from "
                            "the generator that drew the latents (img2img: seed + 1 draws image_latents, then "
                            "the add_noise noise, then step noise)",
    }
    extra = {
        "scheduler_config_json": json.dumps(json_safe(config_json), sort_keys=True, allow_nan=False),
        "resolved_config": json.dumps(resolved, sort_keys=True, allow_nan=False),
        "timestep_table": float32_table_json(timestep_table),
        "sigma_table": float32_table_json(sigma_table),
    }
    return dict(module=gio.class_path(probe), attrs=attrs, inputs={"image_latents": image_latents},
                outputs=outputs, extra=extra)


# (seed, shape) pairs drawn on a fresh generator each; large ones are stored subsampled.
RANDN_SEEDS = {"s0": 0, "s42": 42, "s2p32p5": 2**32 + 5, "sbig": 0xDEADBEEFCAFEBABE}
RANDN_SHAPES = {"n1": (1,), "n5": (5,), "n15": (15,), "n16": (16,), "n17": (17,), "n33": (33,), "r3x7": (3, 7),
                "b2": (2, 4, 8, 8), "sd64": (1, 4, 64, 64)}
SUBSAMPLE = 61  # store every 61st element of tensors over 4096 elements (all of them for seed 42)


def randn_case() -> dict:
    outputs = {}
    for seed_name, seed in RANDN_SEEDS.items():
        for shape_name, shape in RANDN_SHAPES.items():
            g = torch.Generator().manual_seed(seed)
            t = torch.randn(shape, generator=g, dtype=torch.float32)
            if t.numel() > 4096 and seed_name != "s42":
                outputs[f"randn.{seed_name}.{shape_name}.every{SUBSAMPLE}"] = t.flatten()[::SUBSAMPLE].clone()
            else:
                outputs[f"randn.{seed_name}.{shape_name}"] = t
    # One generator, several calls: the Box-Muller cache and the engine state must carry over.
    g = torch.Generator().manual_seed(1234)
    sequence = [("randn", (1, 4, 8, 8)), ("randn", (3,)), ("randn", (5,)), ("rand", (10,)), ("randn", (1,)),
                ("randn", (2, 4, 8, 8)), ("randn", (7,)), ("rand", (2, 9)), ("randn", (20,))]
    for i, (kind, shape) in enumerate(sequence):
        draw = torch.randn if kind == "randn" else torch.rand
        outputs[f"sequence.{i}.{kind}"] = draw(shape, generator=g, dtype=torch.float32)
    attrs = {
        "seeds": {k: str(v) for k, v in RANDN_SEEDS.items()},
        "shapes": {k: list(v) for k, v in RANDN_SHAPES.items()},
        "subsample": SUBSAMPLE,
        "sequence_seed": 1234,
        "sequence": [[kind, list(shape)] for kind, shape in sequence],
    }
    return dict(module="torch.randn", attrs=attrs, inputs={}, outputs=outputs, extra={})


def all_cases() -> dict:
    cases = {"torch_randn": randn_case}
    for sampler in SAMPLERS:
        for config_name in SAMPLER_CONFIGS[sampler]:
            name = f"{sampler}_{config_name}"
            cases[name] = (lambda s=sampler, c=config_name, n=name: scheduler_case(s, c, gio.case_seed(n)))
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: Tests/Fixtures/samplers)")
    ap.add_argument("--only", nargs="*", help="case names to (re)generate")
    args = ap.parse_args(argv)
    gio.setup_torch()
    diffusers.utils.logging.set_verbosity_error()  # from_config warns about keys of the origin class
    cases = all_cases()
    names = args.only or list(cases)
    total = 0
    for name in names:
        with torch.no_grad():
            s = cases[name]()
        path = os.path.join(args.out, f"{name}.safetensors")
        size = gio.write_golden(path, name, s["module"], s["attrs"], s["inputs"], {}, s["outputs"],
                                extra_metadata=s["extra"])
        total += size
        absmax = max(float(t.abs().max()) for t in s["outputs"].values())
        print(f"{name:32s} {gio.fmt_size(size):>12s}  tensors={len(s['outputs']):3d}  max|out|={absmax:8.3f}")
    print(f"{'total':32s} {gio.fmt_size(total):>12s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
