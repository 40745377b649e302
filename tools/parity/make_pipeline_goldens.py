#!/usr/bin/env python3
"""End-to-end pipeline goldens -> Tests/Fixtures/pipelines/<case>.safetensors.

Runs diffusers' pipelines on the tiny random model family of Tests/Fixtures/models/ (make_tiny_models.py)
with fixed seeds and records the final latents (output_type="latent", NCHW float32) and, for some cases,
the decoded image. Each file's metadata holds `request`: a JSON object the Swift test turns into a
generation request (model, prompt, negative_prompt, width, height, steps, sampler, guidance, seed, count,
plus img2img / LoRA / ControlNet fields).

Also writes the add-ons those cases use:
  Tests/Fixtures/models/sd1-lora.safetensors          kohya LoRA on the sd1 UNet (attention, ff, resnet convs) and
                                                      its text encoder (q/k/v/out, mlp)
  Tests/Fixtures/models/sd1-lora-b.safetensors        a second, smaller kohya LoRA (UNet only)
  Tests/Fixtures/models/sd1-controlnet/, sd1-controlnet-b/   ControlNetModel.from_unet(sd1 unet), random weights
  Tests/Fixtures/pipelines/control_*.png              the control images

Sampler names map to diffusers schedulers built with `from_config(pipe.scheduler.config)`.
Usage: /work/venv/bin/python tools/parity/make_pipeline_goldens.py [--only CASE ...]
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_io as gio  # noqa: E402

from diffusers import (  # noqa: E402
    ControlNetModel,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODELS = os.path.join(REPO, "Tests", "Fixtures", "models")
OUT = os.path.join(REPO, "Tests", "Fixtures", "pipelines")

SAMPLERS = {
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "lcm": (LCMScheduler, {}),
}

PROMPT = "a red circle on a blue background"
NEGATIVE = "blurry, green"

CASES = {}


def case(fn):
    CASES[fn.__name__.removeprefix("case_")] = fn
    return fn


def load(pipeline_class, family, **kwargs):
    pipe = pipeline_class.from_pretrained(os.path.join(MODELS, family), torch_dtype=torch.float32, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_sampler(pipe, sampler):
    cls, overrides = SAMPLERS[sampler]
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)


def write(name, request, latents, image=None, extra=None):
    outputs = {"latents": latents}
    if image is not None:
        outputs["image"] = image
    if extra:
        outputs.update(extra)
    size = gio.write_golden(
        os.path.join(OUT, f"{name}.safetensors"), case=name, module="diffusers pipeline", attrs={}, inputs={}, params={},
        outputs=outputs, extra_metadata={"request": json.dumps(request, sort_keys=True)})
    print(f"{name}: {gio.fmt_size(size)}")


def txt2img(family, sampler, steps=5, size=32, guidance=7.5, seed=1234, count=1, negative=NEGATIVE, decode=False, **extra):
    pipeline_class = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = load(pipeline_class, family, **({} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}))
    use_sampler(pipe, sampler)
    kwargs = dict(prompt=PROMPT, negative_prompt=negative, num_inference_steps=steps, guidance_scale=guidance, height=size,
                  width=size, num_images_per_prompt=count, generator=torch.Generator().manual_seed(seed), **extra)
    with torch.no_grad():
        latents = pipe(output_type="latent", **kwargs).images
        image = None
        if decode:
            image = pipe(output_type="pt", **dict(kwargs, generator=torch.Generator().manual_seed(seed))).images
    request = dict(model=family, prompt=PROMPT, negative_prompt=negative, width=size, height=size, steps=steps, sampler=sampler,
                   guidance=guidance, seed=seed, count=count)
    return request, latents, image


for _family in ("sd1", "sd2"):
    for _sampler in SAMPLERS:
        def _make(name, family=_family, sampler=_sampler):
            request, latents, image = txt2img(family, sampler, decode=(family == "sd1" and sampler == "euler_a"))
            write(name, request, latents, image)
        CASES[f"txt2img_{_family}_{_sampler}"] = _make

for _sampler in SAMPLERS:  # every sampler on SDXL too
    def _make_xl(name, sampler=_sampler):
        request, latents, _ = txt2img("sdxl", sampler)
        write(name, request, latents)
    CASES[f"txt2img_sdxl_{_sampler}"] = _make_xl


@case
def case_txt2img_sdxl_no_negative(name):
    """SDXL with no negative prompt: force_zeros_for_empty_prompt zeroes the unconditional embeddings."""
    request, latents, _ = txt2img("sdxl", "euler", negative=None)
    write(name, request, latents)


@case
def case_txt2img_sd1_batch(name):
    """Two images per prompt from one generator, 3x4 latent aspect, guidance 5."""
    pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
    use_sampler(pipe, "euler_a")
    with torch.no_grad():
        latents = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=4, guidance_scale=5.0, height=24, width=32,
                       num_images_per_prompt=2, generator=torch.Generator().manual_seed(7), output_type="latent").images
    write(name, dict(model="sd1", prompt=PROMPT, negative_prompt=NEGATIVE, width=32, height=24, steps=4, sampler="euler_a",
                     guidance=5.0, seed=7, count=2), latents)


@case
def case_txt2img_sd1_no_guidance(name):
    request, latents, _ = txt2img("sd1", "dpmpp_2m", guidance=1.0)
    write(name, request, latents)


def init_image(size=32):
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 // (size - 1), y * 255 // (size - 1), ((x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 3) ** 2) * 200],
                   -1).astype(np.uint8)
    return Image.fromarray(rgb)


@case
def case_img2img_sd1(name):
    os.makedirs(OUT, exist_ok=True)
    image = init_image()
    image.save(os.path.join(OUT, "init_image.png"))
    results = {}
    for sampler in ("euler_a", "ddim", "dpmpp_2m"):
        pipe = load(StableDiffusionImg2ImgPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
        use_sampler(pipe, sampler)
        with torch.no_grad():
            latents = pipe(prompt=PROMPT, negative_prompt=NEGATIVE, image=image, strength=0.6, num_inference_steps=8,
                           guidance_scale=7.0, generator=torch.Generator().manual_seed(99), output_type="latent").images
        results[sampler] = latents
    request = dict(model="sd1", prompt=PROMPT, negative_prompt=NEGATIVE, width=32, height=32, steps=8, guidance=7.0, seed=99,
                   count=1, init_image="init_image.png", strength=0.6, samplers=list(results))
    write(name, dict(request, sampler="euler_a"), results["euler_a"], extra={f"latents_{k}": v for k, v in results.items()})


# ---------------------------------------------------------------------------------------------------- LoRA

UNET_TARGETS_A = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "conv1", "conv2"]
TE_TARGETS_A = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
UNET_TARGETS_B = ["to_k", "to_v", "conv2"]


def random_lora(model, targets, rank, g, std):
    """{module path: (down, up)} for every Linear/Conv2d whose name ends with one of `targets`."""
    factors = {}
    for name, module in model.named_modules():
        if not any(name == t or name.endswith("." + t) for t in targets):
            continue
        if isinstance(module, torch.nn.Linear):
            down = gio.randn(g, rank, module.in_features, std=std)
            up = gio.randn(g, module.out_features, rank, std=std)
        elif isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            down = gio.randn(g, rank, module.in_channels, kh, kw, std=std)
            up = gio.randn(g, module.out_channels, rank, 1, 1, std=std)
        else:
            continue
        factors[name] = (down, up)
    return factors


def kohya_tensors(prefix, factors, alpha):
    tensors = {}
    for name, (down, up) in factors.items():
        stem = prefix + name.replace(".", "_")
        tensors[stem + ".lora_down.weight"] = down
        tensors[stem + ".lora_up.weight"] = up
        tensors[stem + ".alpha"] = torch.tensor(float(alpha))
    return tensors


def fuse(model, factors, alpha, weight):
    """W += weight * (alpha / rank) * up @ down: what diffusers' fuse_lora computes."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (down, up) in factors.items():
            layer = modules[name]
            rank = down.shape[0]
            delta = up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)
            layer.weight += weight * (alpha / rank) * delta.reshape(layer.weight.shape)


def make_loras():
    """Kohya LoRAs for the sd1 UNet + text encoder (a: rank 4, alpha 4 / 2) and the UNet only (b: rank 2, alpha 1)."""
    g = gio.make_generator("pipeline-lora")
    pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
    a_unet = random_lora(pipe.unet, UNET_TARGETS_A, 4, g, 0.25)
    a_te = random_lora(pipe.text_encoder, TE_TARGETS_A, 4, g, 0.25)
    b_unet = random_lora(pipe.unet, UNET_TARGETS_B, 2, g, 0.4)
    gio.write_safetensors(os.path.join(MODELS, "sd1-lora.safetensors"),
                          {**kohya_tensors("lora_unet_", a_unet, 4), **kohya_tensors("lora_te_", a_te, 2)})
    gio.write_safetensors(os.path.join(MODELS, "sd1-lora-b.safetensors"), kohya_tensors("lora_unet_", b_unet, 1))
    return a_unet, a_te, b_unet


@case
def case_lora_sd1(name):
    a_unet, a_te, b_unet = make_loras()
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=5, guidance_scale=7.5, height=32, width=32,
                output_type="latent")

    def run(applied):
        pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
        use_sampler(pipe, "euler")
        for target, factors, alpha, weight in applied:
            fuse(pipe.unet if target == "unet" else pipe.text_encoder, factors, alpha, weight)
        with torch.no_grad():
            return pipe, pipe(generator=torch.Generator().manual_seed(5), **args).images

    _, single = run([("unet", a_unet, 4, 0.8), ("te", a_te, 2, 0.8)])
    _, double = run([("unet", a_unet, 4, 0.8), ("te", a_te, 2, 0.8), ("unet", b_unet, 1, -0.6)])
    _, base = run([])

    # The kohya UNet key names are checked by diffusers itself: loading sd1-lora-b.safetensors through
    # load_lora_weights must give what fusing it by hand gives.
    pipe, fused_b = run([("unet", b_unet, 1, 1.0)])
    pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
    use_sampler(pipe, "euler")
    pipe.load_lora_weights(MODELS, weight_name="sd1-lora-b.safetensors")
    with torch.no_grad():
        loaded_b = pipe(generator=torch.Generator().manual_seed(5), **args).images
    assert (loaded_b - fused_b).abs().max() < 1e-4, "diffusers reads the kohya file differently"

    request = dict(model="sd1", prompt=PROMPT, negative_prompt=NEGATIVE, width=32, height=32, steps=5, sampler="euler",
                   guidance=7.5, seed=5, count=1, loras=[["sd1-lora.safetensors", 0.8]],
                   loras_two=[["sd1-lora.safetensors", 0.8], ["sd1-lora-b.safetensors", -0.6]])
    write(name, request, single, extra={"latents_two": double, "latents_base": base})


# ---------------------------------------------------------------------------------------------------- ControlNet

def make_controlnets():
    pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
    for index, folder in enumerate(("sd1-controlnet", "sd1-controlnet-b")):
        g = gio.make_generator(folder)
        controlnet = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(4, 8))
        gio.init_params(controlnet, g, gain=0.8)
        path = os.path.join(MODELS, folder)
        shutil.rmtree(path, ignore_errors=True)
        controlnet.save_pretrained(path)
        config = os.path.join(path, "config.json")
        with open(config) as f:
            data = json.load(f)
        with open(config, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        # Deterministic weights file (save_pretrained's metadata order varies).
        from safetensors.torch import load_file
        weights = os.path.join(path, "diffusion_pytorch_model.safetensors")
        gio.write_safetensors(weights, load_file(weights), {"format": "pt"})


def control_images():
    os.makedirs(OUT, exist_ok=True)
    size = 32
    y, x = np.mgrid[0:size, 0:size]
    ring = (np.abs(np.sqrt((x - 16) ** 2 + (y - 16) ** 2) - 9) < 1.2).astype(np.uint8) * 255
    lines = ((x == 6) | (y == 25) | (x == y)).astype(np.uint8) * 255
    images = []
    for name, mask in (("control_ring.png", ring), ("control_lines.png", lines)):
        image = Image.fromarray(np.stack([mask] * 3, -1))
        image.save(os.path.join(OUT, name))
        images.append(image)
    return images


@case
def case_controlnet_sd1(name):
    make_controlnets()
    ring, lines = control_images()
    one = ControlNetModel.from_pretrained(os.path.join(MODELS, "sd1-controlnet"))
    two = ControlNetModel.from_pretrained(os.path.join(MODELS, "sd1-controlnet-b"))
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=6, guidance_scale=7.0, height=32, width=32,
                output_type="latent")
    with torch.no_grad():
        pipe = load(StableDiffusionControlNetPipeline, "sd1", controlnet=one, safety_checker=None, requires_safety_checker=False)
        use_sampler(pipe, "dpmpp_2m")
        single = pipe(image=ring, controlnet_conditioning_scale=0.9, control_guidance_start=0.0, control_guidance_end=1.0,
                      generator=torch.Generator().manual_seed(11), **args).images
        pipe = load(StableDiffusionControlNetPipeline, "sd1", controlnet=[one, two], safety_checker=None, requires_safety_checker=False)
        use_sampler(pipe, "dpmpp_2m")
        double = pipe(image=[ring, lines], controlnet_conditioning_scale=[0.9, 0.6], control_guidance_start=[0.0, 0.2],
                      control_guidance_end=[0.8, 1.0], generator=torch.Generator().manual_seed(11), **args).images
    request = dict(model="sd1", prompt=PROMPT, negative_prompt=NEGATIVE, width=32, height=32, steps=6, sampler="dpmpp_2m",
                   guidance=7.0, seed=11, count=1,
                   controls=[["sd1-controlnet", "control_ring.png", 0.9, 0.0, 1.0]],
                   controls_two=[["sd1-controlnet", "control_ring.png", 0.9, 0.0, 0.8],
                                 ["sd1-controlnet-b", "control_lines.png", 0.6, 0.2, 1.0]])
    write(name, request, single, extra={"latents_two": double})


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    gio.setup_torch()
    os.makedirs(OUT, exist_ok=True)
    for name, fn in CASES.items():
        if args.only and name not in args.only:
            continue
        fn(name)


if __name__ == "__main__":
    main()
