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
  Tests/Fixtures/models/sd1-lora-diffusers.safetensors  diffusers-layout LoRA (save_lora_weights) on the sd1 UNet
                                                      (linear, 1x1/3x3/stride-2 convs) and text encoder
  Tests/Fixtures/models/sdxl-lora-kohya.safetensors   kohya SDXL LoRA: lora_unet_ (SGM names), lora_te1_, lora_te2_
  Tests/Fixtures/models/sd1-controlnet/, sd1-controlnet-b/   ControlNetModel.from_unet(sd1 unet), random weights
  Tests/Fixtures/pipelines/control_*.png              the control images

Sampler names map to diffusers schedulers built with `from_config(pipe.scheduler.config)`.
Usage: /work/venv/bin/python tools/parity/make_pipeline_goldens.py [--only CASE ...]
"""

import argparse
import json
import logging
import os
import shutil
import sys
import warnings

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


# LoRA files in the other layouts, read by diffusers' own `load_lora_weights` (its key conversion is the
# reference). Each is also fused by hand from the random factors, so a module diffusers silently skipped would
# fail the assertion below; warnings about unexpected / missing keys fail too.

class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def load_lora_checked(pipe, weight_name):
    """pipe.load_lora_weights(MODELS/weight_name) as adapter "a"; raises on any warning (unexpected keys etc.)."""
    handler = _Warnings()
    logging.getLogger("diffusers").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pipe.load_lora_weights(MODELS, weight_name=weight_name, adapter_name="a")
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    messages = handler.messages + [str(w.message) for w in caught if "deprecat" not in str(w.message).lower()]
    if messages:
        raise AssertionError(f"{weight_name}: diffusers warned while loading: {messages}")


def lora_pipeline_case(pipeline_class, family, weight_name, fused, weights, seed):
    """Final latents with the LoRA file loaded by diffusers at each adapter weight of `weights` (a float or a
    {component: weight} dict), checked against fusing `fused` = [(component, factors, alpha)] by hand."""
    extra = {} if family == "sdxl" else {"safety_checker": None, "requires_safety_checker": False}
    args = dict(prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=5, guidance_scale=7.5, height=32, width=32,
                output_type="latent")
    results = []
    for weight in weights:
        pipe = load(pipeline_class, family, **extra)
        use_sampler(pipe, "euler")
        load_lora_checked(pipe, weight_name)
        pipe.set_adapters(["a"], adapter_weights=dict(weight) if isinstance(weight, dict) else weight)
        with torch.no_grad():
            loaded = pipe(generator=torch.Generator().manual_seed(seed), **args).images
        pipe = load(pipeline_class, family, **extra)
        use_sampler(pipe, "euler")
        for component, factors, alpha in fused:
            w = weight.get(component, 1.0) if isinstance(weight, dict) else weight
            fuse(getattr(pipe, component), factors, alpha, w)
        with torch.no_grad():
            by_hand = pipe(generator=torch.Generator().manual_seed(seed), **args).images
        error = (loaded - by_hand).abs().max().item()
        print(f"  {weight_name} weight {weight}: |diffusers - fused by hand| = {error:.2e}")
        assert error < 1e-4, f"diffusers reads {weight_name} differently from the factors that made it"
        results.append(loaded)
    request = dict(model=family, prompt=PROMPT, negative_prompt=NEGATIVE, width=32, height=32, steps=5, sampler="euler",
                   guidance=7.5, seed=seed, count=1, lora=weight_name, weights=weights)
    return request, results


SD1_DIFFUSERS_UNET = ["to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out", "conv1", "conv2",
                      "conv_shortcut", "time_emb_proj", "conv"]


@case
def case_lora_sd1_diffusers(name):
    """diffusers layout (save_lora_weights): unet.<path>.lora_A/B and text_encoder.text_model.<path>.lora_A/B, alphas
    only in the lora_adapter_metadata header (UNet r 4 alpha 8, text encoder r 4 alpha 2). UNet: attention, ff,
    proj_in/out (1x1 convs), resnet 3x3 convs, shortcuts, time_emb_proj, the stride-2 downsampler and the upsampler."""
    from peft import LoraConfig

    g = gio.make_generator("lora_sd1_diffusers")
    pipe = load(StableDiffusionPipeline, "sd1", safety_checker=None, requires_safety_checker=False)
    unet = random_lora(pipe.unet, SD1_DIFFUSERS_UNET, 4, g, 0.2)
    te = random_lora(pipe.text_encoder, TE_TARGETS_A, 4, g, 0.25)

    def peft_state(factors, prefix=""):
        state = {}
        for module, (down, up) in factors.items():
            state[f"{prefix}{module}.lora_A.weight"] = down
            state[f"{prefix}{module}.lora_B.weight"] = up
        return state

    weight_name = "sd1-lora-diffusers.safetensors"
    scratch = os.path.join(MODELS, "_scratch")
    # transformers >= 5 has no `text_model` module in CLIPTextModel; files written with transformers 4 (all the
    # published ones) spell text-encoder paths text_encoder.text_model.encoder...: write that spelling.
    StableDiffusionPipeline.save_lora_weights(
        scratch, unet_lora_layers=peft_state(unet), text_encoder_lora_layers=peft_state(te, "text_model."),
        unet_lora_adapter_metadata=LoraConfig(r=4, lora_alpha=8, target_modules=SD1_DIFFUSERS_UNET).to_dict(),
        text_encoder_lora_adapter_metadata=LoraConfig(r=4, lora_alpha=2, target_modules=TE_TARGETS_A).to_dict(),
        weight_name=weight_name)
    from safetensors import safe_open
    with safe_open(os.path.join(scratch, weight_name), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata() or {}
    shutil.rmtree(scratch)
    assert any(k.startswith("text_encoder.text_model.encoder.") for k in tensors) and any(k.startswith("unet.") for k in tensors)
    metadata = {k: json.dumps(json.loads(v), sort_keys=True) if k == "lora_adapter_metadata" else v for k, v in metadata.items()}
    size = gio.write_safetensors(os.path.join(MODELS, weight_name), tensors, metadata)
    print(f"{weight_name}: {len(tensors)} tensors, {gio.fmt_size(size)}")

    request, (single, split) = lora_pipeline_case(
        StableDiffusionPipeline, "sd1", weight_name, [("unet", unet, 8), ("text_encoder", te, 2)],
        [0.8, {"unet": 0.8, "text_encoder": -0.5}], seed=21)
    write(name, request, single, extra={"latents_split": split})


SDXL_KOHYA_LINEAR = ["proj_in", "proj_out", "to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "time_emb_proj",
                     "conv_shortcut", "time_embedding.linear_1", "time_embedding.linear_2", "add_embedding.linear_1",
                     "add_embedding.linear_2"]
SDXL_KOHYA_CONV = ["conv1", "conv2", "conv", "conv_in", "conv_out"]


@case
def case_lora_sdxl_kohya(name):
    """kohya/sd-scripts SDXL layout: lora_unet_<SGM path> (input_blocks / middle_block / output_blocks, in_layers_2,
    emb_layers_1, skip_connection, op, time_embed, label_emb, out_2), lora_te1_text_model_* (CLIP-L) and
    lora_te2_text_model_* (CLIP-G), an .alpha per module, all float16 as kohya saves them. Linear layers and 1x1 convs rank 4 alpha 2, 3x3 convs
    rank 2 alpha 1 (kohya's conv_dim / conv_alpha), te1 rank 4 alpha 2, te2 rank 4 alpha 6."""
    import convert_diffusers_to_ldm as ldm

    g = gio.make_generator("lora_sdxl_kohya")
    pipe = load(StableDiffusionXLPipeline, "sdxl")
    linear = random_lora(pipe.unet, SDXL_KOHYA_LINEAR, 4, g, 0.2)
    conv = random_lora(pipe.unet, SDXL_KOHYA_CONV, 2, g, 0.2)
    te1 = random_lora(pipe.text_encoder, TE_TARGETS_A, 4, g, 0.25)
    te2 = random_lora(pipe.text_encoder_2, TE_TARGETS_A, 4, g, 0.25)
    # kohya saves float16 by default: round once, fuse and write the rounded values.
    for factors in (linear, conv, te1, te2):
        for module, (down, up) in factors.items():
            factors[module] = (down.half().float(), up.half().float())
    sgm = ldm.unet_key_map(dict(pipe.unet.config), [f"{m}.weight" for m in {**linear, **conv}])
    to_sgm = lambda factors: {sgm[f"{m}.weight"].removesuffix(".weight"): f for m, f in factors.items()}  # noqa: E731
    # kohya names text-encoder modules as transformers 4 does (text_model.encoder...); transformers 5's
    # CLIPTextModel has no text_model module, CLIPTextModelWithProjection still has one.
    te_names = lambda factors: {"text_model." + m.removeprefix("text_model."): f for m, f in factors.items()}  # noqa: E731
    tensors = {**kohya_tensors("lora_unet_", to_sgm(linear), 2), **kohya_tensors("lora_unet_", to_sgm(conv), 1),
               **kohya_tensors("lora_te1_", te_names(te1), 2), **kohya_tensors("lora_te2_", te_names(te2), 6)}
    assert not any("down_blocks" in k or "up_blocks" in k or "mid_block" in k for k in tensors)
    assert all(k.startswith(("lora_te1_text_model_encoder_", "lora_te2_text_model_encoder_", "lora_unet_")) for k in tensors)
    weight_name = "sdxl-lora-kohya.safetensors"
    size = ldm.write_safetensors(os.path.join(MODELS, weight_name), {k: v.half() for k, v in tensors.items()})
    print(f"{weight_name}: {len(tensors)} tensors, {gio.fmt_size(size)}")

    request, (single, split) = lora_pipeline_case(
        StableDiffusionXLPipeline, "sdxl", weight_name,
        [("unet", linear, 2), ("unet", conv, 1), ("text_encoder", te1, 2), ("text_encoder_2", te2, 6)],
        [0.8, {"unet": 0.8, "text_encoder": -0.5, "text_encoder_2": -0.5}], seed=22)
    write(name, request, single, extra={"latents_split": split})


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
