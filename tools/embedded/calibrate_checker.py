#!/usr/bin/env python3
"""Fit the shape classifier / outline threshold of checker.py on VAE reconstructions of
ground-truth renders, and report the checker's own accuracy ("ceiling") on held-out
reconstructions (and on the raw renders).

  python tools/embedded/calibrate_checker.py --vae models/shapes-sd --n 900

Writes tools/embedded/checker_calib.json and prints a JSON report
(tools/embedded/checker_report.json).
"""
import argparse
import json
import os

import numpy as np
import torch

import checker as ck
import shapes_data as sd

HERE = os.path.dirname(os.path.abspath(__file__))


def single_render(seed, kind):
    """One single-object image (canonical layout) with its truth."""
    s = sd.sample(seed, kind, canonical=True)
    o = s["objects"][0]
    return s["image"], dict(bg=s["bg"], fg=o["color"], shape=o["shape"], pos=o["pos"], size=o["size"],
                            outline=kind == "outline")


def reconstruct(vae, ims, bs=32):
    out = []
    with torch.no_grad():
        for k in range(0, len(ims), bs):
            x = torch.from_numpy(np.stack(ims[k:k + bs])).float().permute(0, 3, 1, 2) / 127.5 - 1
            z = vae.encode(x).latent_dist.mode()
            y = vae.decode(z).sample
            out += list(((y.clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(0, 2, 3, 1).numpy())
    return out


def fit_logreg(X, y, n_cls, l2=1e-3, iters=300):
    Xt, yt = torch.tensor(X, dtype=torch.float64), torch.tensor(y)
    W = torch.zeros(X.shape[1], n_cls, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_cls, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(Xt @ W + b, yt) + l2 * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return W.detach().numpy(), b.detach().numpy()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", default=os.path.join(HERE, "..", "..", "models", "shapes-sd"))
    ap.add_argument("--n", type=int, default=900, help="filled single-object renders (+ hearts, + outlines)")
    ap.add_argument("--out", default=os.path.join(HERE, "checker_calib.json"))
    ap.add_argument("--report", default=os.path.join(HERE, "checker_report.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    from diffusers import AutoencoderKL
    if args.vae.endswith(".pt"):  # a training checkpoint (EMA weights), before export
        from export import load_vae
        vae = load_vae(args.vae, 1.0)
    else:  # the shipped diffusers folder (fp16 weights, run in fp32)
        vae = AutoencoderKL.from_pretrained(args.vae, subfolder="vae", torch_dtype=torch.float32).eval()

    base0 = 7_000_000
    items = [single_render(base0 + i, "base") for i in range(args.n)]
    items += [single_render(base0 + i, "heart") for i in range(args.n // 4)]
    items += [single_render(base0 + i, "outline") for i in range(args.n // 4)]
    raw = [im for im, _ in items]
    truth = [t for _, t in items]
    rec = reconstruct(vae, raw)

    classes = sd.ALL_SHAPES
    feats_rec, feats_raw, th_rec, th_raw = [], [], [], []
    for i, (r, im, t) in enumerate(zip(rec, raw, truth)):
        for img, F, TH in ((r, feats_rec, th_rec), (im, feats_raw, th_raw)):
            bg, fg, lab, d = ck.colors(img)
            fg_t = sd.COLOR_NAMES.index(t["fg"])
            bg_t = sd.COLOR_NAMES.index(t["bg"])
            raw_m = ck.fg_mask(img, bg_t, fg_t, d)  # truth colours: features of the true object
            comp = ck.largest_component(raw_m)
            F.append(ck.shape_features(comp))
            TH.append(ck.outline_features(raw_m, comp, img, bg_t, fg_t) if comp is not None else None)
    n = len(items)
    rng = np.random.RandomState(0)
    perm = rng.permutation(n)
    test = set(perm[: n // 3].tolist())
    # shape classifier: trained on filled shapes (base + heart), recon + raw features of the train split
    Xtr, ytr = [], []
    for i in range(n):
        if i in test or truth[i]["outline"]:
            continue
        for F in (feats_rec, feats_raw):
            if F[i] is not None:
                Xtr.append(ck.ShapeClassifier.expand(F[i]))
                ytr.append(classes.index(truth[i]["shape"]))
    Xtr = np.array(Xtr)
    mu, sdv = Xtr.mean(0), Xtr.std(0) + 1e-6
    W, b = fit_logreg((Xtr - mu) / sdv, np.array(ytr), len(classes))
    # outline rule: logistic regression on (hole_frac, rel_thickness, core_fg), train split, recon + raw
    Xo, yo = [], []
    for T in (th_rec, th_raw):
        for i in range(n):
            if i not in test and T[i] is not None and truth[i]["shape"] != "heart":
                Xo.append(T[i])
                yo.append(int(truth[i]["outline"]))
    Wo, bo = fit_logreg(np.array(Xo), np.array(yo), 2, l2=1e-4)
    ow = (Wo[:, 1] - Wo[:, 0]).tolist()
    ob = float(bo[1] - bo[0])
    calib = dict(classes=classes, mu=mu.tolist(), sd=sdv.tolist(), W=W.tolist(), b=b.tolist(), outline_w=ow, outline_b=ob,
                 fitted_on=f"VAE ({args.vae}) reconstructions + raw renders of seeds {base0}.. (2/3 split)")
    json.dump(calib, open(args.out, "w"))

    # ---- report on the held-out third, running the FULL checker (predicted colours) ----
    clf = ck.ShapeClassifier(args.out)
    report = {}
    for name, imgs in (("vae_recon", rec), ("raw_render", raw)):
        res = dict(bg=[], fg=[], shape4=[], shape5_heart=[], pos=[], outline_det=[], filled_det=[])
        for i in sorted(test):
            t = truth[i]
            a = ck.analyze(imgs[i], clf, allowed=None if t["shape"] == "heart" else sd.SHAPES)
            if not t["outline"]:
                res["bg"].append(a["bg"] == t["bg"])
                res["fg"].append(a["fg"] == t["fg"])
                res["pos"].append(a["pos"] == t["pos"])
                res["filled_det"].append(a["outline"] is False)
                if t["shape"] == "heart":
                    res["shape5_heart"].append(a["shape"] == "heart")
                else:
                    res["shape4"].append(a["shape"] == t["shape"])
            else:
                res["outline_det"].append(bool(a["outline"]))
        report[name] = {k: round(float(np.mean(v)), 3) for k, v in res.items() if v}
        report[name]["n"] = {k: len(v) for k, v in res.items()}
    # heart false positives on base shapes with 5-way prediction (for the LoRA "without" rate)
    fp = []
    for i in sorted(test):
        t = truth[i]
        if not t["outline"] and t["shape"] != "heart":
            fp.append(ck.analyze(rec[i], clf)["shape"] == "heart")
    report["vae_recon"]["heart_false_positive_on_base"] = round(float(np.mean(fp)), 3)
    # per-shape accuracy on recon
    per = {}
    for i in sorted(test):
        t = truth[i]
        if t["outline"]:
            continue
        a = ck.analyze(rec[i], clf, allowed=None if t["shape"] == "heart" else sd.SHAPES)
        per.setdefault(t["shape"] + "/" + t["size"], []).append(a["shape"] == t["shape"])
    report["vae_recon_per_shape_size"] = {k: round(float(np.mean(v)), 3) for k, v in sorted(per.items())}
    per_o = {}
    for i in sorted(test):
        t = truth[i]
        if t["outline"]:
            per_o.setdefault(t["size"], []).append(bool(ck.analyze(rec[i], clf)["outline"]))
    report["vae_recon_outline_det_by_size"] = {k: round(float(np.mean(v)), 3) for k, v in sorted(per_o.items())}
    report["vae_psnr_db"] = round(float(np.mean([10 * np.log10(255 ** 2 / max(1e-9, ((r.astype(float) - im) ** 2).mean()))
                                                 for r, im in zip(rec, raw)])), 2)
    report["outline_rule"] = dict(w_hole_frac=ow[0], w_rel_thickness=ow[1], w_core_fg=ow[2], b=ob)
    json.dump(report, open(args.report, "w"), indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
