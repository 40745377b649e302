#!/usr/bin/env python3
"""Score a folder of PNG images against its manifest (JSONL; one line per image, fields as in
tools/embedded/eval_sets/*.jsonl plus "file").  Works for images from any engine.

  python tools/embedded/evaluate.py --images /work/train/eval/base [--manifest <dir>/manifest.jsonl] \
      [--json report.json] [--details details.jsonl]

Per set:
  indist / heldout : background colour, foreground colour, both, shape (4-way), position
  lora_<name>      : effect rate with the LoRA and without it (same prompts and seeds); effect
                     "outline" = the checker's outline rule (hole, thickness, core colour), "heart" = 5-way
                     shape prediction is heart; plus bg/fg accuracy with the LoRA
  controlnet       : canny IoU between the control edge map and cv2.Canny(output, 100, 200):
                     strict pixel IoU and IoU with 1-px tolerance (both maps dilated 3x3)
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

import checker as ck
import shapes_data as sd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def mean(v):
    return round(float(np.mean(v)), 3) if len(v) else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--manifest", default=None)
    ap.add_argument("--calib", default=ck.CALIB)
    ap.add_argument("--json", default=None)
    ap.add_argument("--details", default=None)
    args = ap.parse_args()
    man = args.manifest or os.path.join(args.images, "manifest.jsonl")
    rows = [json.loads(l) for l in open(man) if l.strip()]
    clf = ck.ShapeClassifier(args.calib)
    per_set, details = {}, []
    for r in rows:
        img = np.asarray(Image.open(os.path.join(args.images, r["file"])).convert("RGB"))
        ex = r.get("expect", {})
        st = r["set"]
        d = dict(id=r["id"], set=st)
        if r.get("control"):
            p = r["control"]["image"]
            p = p if os.path.isabs(p) else os.path.join(REPO, p)
            ctrl = np.asarray(Image.open(p).convert("L")) > 127
            if ctrl.shape != img.shape[:2]:
                ctrl = np.asarray(Image.fromarray(ctrl.astype(np.uint8) * 255).resize(img.shape[1::-1])) > 127
            d["iou_strict"], d["iou_tol1"] = ck.edge_iou(ctrl, img)
            a = ck.analyze(img, clf, allowed=sd.SHAPES)
            d.update(bg_ok=a["bg"] == ex.get("bg"), fg_ok=a["fg"] == ex.get("fg"))
        else:
            effect = ex.get("effect")
            allowed = None if effect == "heart" else sd.SHAPES
            a = ck.analyze(img, clf, allowed=allowed)
            d.update(pred=a, bg_ok=a["bg"] == ex.get("bg"), fg_ok=a["fg"] == ex.get("fg"),
                     shape_ok=a["shape"] == ex.get("shape"), pos_ok=a["pos"] == ex.get("pos"))
            if effect:
                d["with_lora"] = bool(r.get("lora"))
                d["effect"] = bool(a["outline"]) if effect == "outline" else (a["shape"] == "heart")
        per_set.setdefault(st, []).append(d)
        details.append(d)
    report = {}
    for st, ds in per_set.items():
        if st == "controlnet":
            report[st] = dict(n=len(ds), iou_strict=mean([d["iou_strict"] for d in ds]),
                              iou_tol1=mean([d["iou_tol1"] for d in ds]),
                              frac_iou_tol1_ge_0_5=mean([d["iou_tol1"] >= 0.5 for d in ds]),
                              bg=mean([d["bg_ok"] for d in ds]), fg=mean([d["fg_ok"] for d in ds]))
        elif st.startswith("lora_"):
            w = [d for d in ds if d["with_lora"]]
            wo = [d for d in ds if not d["with_lora"]]
            report[st] = dict(n_with=len(w), n_without=len(wo), effect_with=mean([d["effect"] for d in w]),
                              effect_without=mean([d["effect"] for d in wo]),
                              bg_with=mean([d["bg_ok"] for d in w]), fg_with=mean([d["fg_ok"] for d in w]),
                              bg_without=mean([d["bg_ok"] for d in wo]), fg_without=mean([d["fg_ok"] for d in wo]))
            by_size = {}
            for d, r in zip(ds, [x for x in rows if x["set"] == st]):
                if d["with_lora"] and r.get("expect", {}).get("size"):
                    by_size.setdefault(r["expect"]["size"], []).append(d["effect"])
            report[st]["effect_with_by_size"] = {k: mean(v) for k, v in sorted(by_size.items())}
        else:
            report[st] = dict(n=len(ds), bg=mean([d["bg_ok"] for d in ds]), fg=mean([d["fg_ok"] for d in ds]),
                              both_colours=mean([d["bg_ok"] and d["fg_ok"] for d in ds]),
                              shape=mean([d["shape_ok"] for d in ds]), pos=mean([d["pos_ok"] for d in ds]))
            per_shape = {}
            for d, r in zip(ds, [x for x in rows if x["set"] == st]):
                per_shape.setdefault(r["expect"]["shape"], []).append(d["shape_ok"])
            report[st]["shape_by_class"] = {k: mean(v) for k, v in sorted(per_shape.items())}
    print(json.dumps(report, indent=1))
    print_targets(report, ck.load_report())
    if args.json:
        json.dump(report, open(args.json, "w"), indent=1)
    if args.details:
        with open(args.details, "w") as f:
            for d in details:
                f.write(json.dumps(d, default=str) + "\n")


# issue 5's targets: (set, metric, comparison, bound)
TARGETS = [
    ("indist", "bg", ">=", 0.80), ("indist", "fg", ">=", 0.70), ("indist", "shape", ">=", 0.60),
    ("heldout", "bg", ">=", 0.80), ("heldout", "fg", ">=", 0.70), ("heldout", "shape", ">=", 0.60),
    ("lora_outline", "effect_with", ">=", 0.80), ("lora_outline", "effect_without", "<=", 0.20),
    ("lora_heart", "effect_with", ">=", 0.80), ("lora_heart", "effect_without", "<=", 0.20),
    ("controlnet", "iou_tol1", ">=", 0.50),
]


def print_targets(report, checker_report):
    """One line per target: value, bound, met or not; the checker's own accuracy on VAE reconstructions beside."""
    own = (checker_report or {}).get("vae_recon", {})
    beside = {"bg": own.get("bg"), "fg": own.get("fg"), "shape": own.get("shape4"),
              "effect_with": None, "effect_without": None, "iou_tol1": None}
    print("\ntargets (images scored above; checker accuracy on VAE reconstructions of true renders in brackets)")
    for st, metric, op, bound in TARGETS:
        if st not in report:
            continue
        value = report[st][metric]
        if value is None:  # e.g. a folder with only the "with LoRA" half
            continue
        ok = value >= bound if op == ">=" else value <= bound
        note = ""
        if st == "lora_outline" and metric == "effect_with":
            large = (checker_report or {}).get("vae_recon_outline_det_by_size", {}).get("large", float("nan"))
            note = (f"  [checker detects {large:.0%} of true large outlines, the size this set uses; "
                    f"{own.get('outline_det', float('nan')):.0%} with small ones]")
        elif st == "lora_heart" and metric == "effect_with":
            note = f"  [checker recognises {own.get('shape5_heart', float('nan')):.0%} of true hearts]"
        elif beside.get(metric) is not None:
            note = f"  [checker {beside[metric]:.0%}]"
        print(f"  {st:13s} {metric:15s} {value:6.3f}  target {op} {bound:.2f}  {'MET' if ok else 'NOT MET'}{note}")


if __name__ == "__main__":
    main()
