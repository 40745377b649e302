#!/usr/bin/env python3
"""Measures the capacity planner's stage times (`swiftdiffusion trace simulate --stage-times FILE`) on a running
`swiftdiffusion serve`, from the per-stage timings its jobs report. Standard library only.

    swiftdiffusion serve --port 7861 --lora-deadline 0 &        # a fresh server: no model loaded yet
    python3 tools/bench/stage_times.py --url http://127.0.0.1:7861 --lora NAME --controlnet NAME --out stage-times.json

Jobs, one at a time, in this order (each number is the median over --repetitions where a job can repeat):
  1. a plain job on a cold server: base-model load = (total - generate) of it minus that of a warm plain job;
  2. warm plain jobs: denoise seconds per step, fixed seconds (total - denoise: text encoding, decoding, PNG encoding
     and storing; before 2026-12-02 this was encode_prompt + decode only, as in the committed default);
  3. the LoRA, first use (loaded and merged) and again (merged only; LoRA sets alternate with a plain job, so every
     LoRA job patches): lora_load_s = first - again, lora_patch_s = again - plain;
  4. the ControlNet, first use and again: controlnet_load_s = first - again (setup outside `generate`), and
     controlnet_step_fraction = denoise per step with it / without it - 1.
Sizes come from /v1/models, /v1/loras and /v1/controlnets.
"""
import argparse
import base64
import json
import statistics
import time
import urllib.request


def call(url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def run(base, spec):
    job = call(base + "/v1/images/jobs", spec)
    while True:
        state = call(base + "/v1/images/jobs/" + job["id"])
        if state["status"] in ("succeeded", "failed", "cancelled"):
            if state["status"] != "succeeded":
                raise SystemExit(f"job failed: {state.get('error')}")
            return state["timings"]
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", help="checkpoint id (default: the server's default)")
    parser.add_argument("--lora", required=True)
    parser.add_argument("--controlnet", required=True)
    parser.add_argument("--control-image", default="docs/images/control-drawing.png",
                        help="a PNG for the ControlNet job")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="width and height (default 128, the embedded model's)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    base = args.url.rstrip("/")

    spec = {"prompt": "a red circle on a blue background", "steps": args.steps, "seed": 1, "lora_deadline_step": 0}
    if args.model:
        spec["model"] = args.model
    spec["width"] = spec["height"] = args.size

    def setup(t):
        return t["total"] - t["generate"]

    cold = run(base, spec)
    plain = [run(base, spec) for _ in range(args.repetitions)]
    setup_plain = statistics.median(setup(t) for t in plain)
    denoise = statistics.median(t["denoise"] for t in plain)
    total_plain = statistics.median(t["total"] for t in plain)
    # Everything a warm plain job spends outside denoising: text encoding, decoding, PNG encoding, storing the result.
    fixed = statistics.median(t["total"] - t["denoise"] for t in plain)

    with_lora = dict(spec, loras=[{"name": args.lora, "weight": 0.8}])
    lora_first = run(base, with_lora)["total"]
    lora_again = []
    for _ in range(args.repetitions):
        run(base, spec)  # a plain job in between: the merged LoRA is restored, so the next one patches again
        lora_again.append(run(base, with_lora)["total"])
    lora_again = statistics.median(lora_again)

    with open(args.control_image, "rb") as handle:
        image = base64.b64encode(handle.read()).decode()
    with_control = dict(spec, controls=[{"model": args.controlnet, "image": image, "preprocessor": "none"}])
    control_first = run(base, with_control)
    control_again = [run(base, with_control) for _ in range(args.repetitions)]
    control_denoise = statistics.median(t["denoise"] for t in control_again)

    def size(kind, name):
        for entry in call(base + "/v1/" + kind)["data"]:
            if entry["id"] == name or (name is None and entry.get("default")):
                return entry["size_bytes"]
        raise SystemExit(f"{name} not in /v1/{kind}")

    result = {
        "base_model_load_s": round(setup(cold) - setup_plain, 4),
        "lora_load_s": round(max(0.0, lora_first - lora_again), 4),
        "lora_patch_s": round(max(0.0, lora_again - total_plain), 4),
        "controlnet_load_s": round(max(0.0, setup(control_first) - statistics.median(setup(t) for t in control_again)), 4),
        "denoise_step_s": round(denoise / args.steps, 5),
        "reference_pixels": args.size * args.size,
        "controlnet_step_fraction": round(max(0.0, control_denoise / denoise - 1), 4),
        "fixed_s": round(fixed, 4),
        "base_model_bytes": size("models", args.model),
        "lora_bytes": size("loras", args.lora),
        "controlnet_bytes": size("controlnets", args.controlnet),
        "source": f"tools/bench/stage_times.py against {base}: {args.steps} steps, median of {args.repetitions}",
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
