#!/usr/bin/env python3
"""Times each measure in Swift (swiftdiffusion dependence measure, its own "seconds" per measure, no
permutations) and in its Python/R reference on the same data, in one run, and prints the ratio.

    /tmp/depvenv/bin/python tools/dependence/bench.py [--swiftdiffusion .build/release/swiftdiffusion]

Sizes: n = 100,000 for the O(n log n) measures (Pearson, Spearman, Kendall, dCor, xi, KSG); n = 2,000 for
HSIC and HHG (quadratic and worse; hyppo's HHG is O(n^3)) and MIC/MICe/TICe (R minerva).
"""
import argparse, json, os, subprocess, tempfile, time
import numpy as np
import scipy.stats as st
import dcor
from hyppo.independence import Hsic, HHG
from hyppo.tools import compute_kern
from sklearn.preprocessing import scale
from sklearn.feature_selection._mutual_info import _compute_mi_cc


def ref_hsic(x, y):
    kx = compute_kern(x.reshape(-1, 1), x.reshape(-1, 1))[0]; ky = compute_kern(y.reshape(-1, 1), y.reshape(-1, 1))[0]
    return Hsic(compute_kernel=None).statistic(1 - kx / kx.max(), 1 - ky / ky.max())


def ref_hhg(x, y):
    return HHG(compute_distance=None).statistic(np.abs(x[:, None] - x[None, :]), np.abs(y[:, None] - y[None, :]))


def ref_xi(x, y):
    o = np.argsort(x, kind="stable")
    return st.chatterjeexi(np.arange(len(x), dtype=float), y[o]).statistic


REFERENCES = {
    "pearson": ("scipy.stats.pearsonr", lambda x, y: st.pearsonr(x, y).statistic),
    "spearman": ("scipy.stats.spearmanr", lambda x, y: st.spearmanr(x, y).statistic),
    "kendall": ("scipy.stats.kendalltau", lambda x, y: st.kendalltau(x, y).statistic),
    "dcor": ("dcor.distance_correlation", lambda x, y: dcor.distance_correlation(x, y)),
    "xi": ("scipy.stats.chatterjeexi", ref_xi),
    "ksg": ("sklearn _compute_mi_cc", lambda x, y: _compute_mi_cc(scale(x.reshape(-1, 1), with_mean=False).ravel(),
                                                                    scale(y, with_mean=False), 3)),
    "hsic": ("hyppo Hsic", ref_hsic),
    "hhg": ("hyppo HHG", ref_hhg),
}
LARGE = ["pearson", "spearman", "kendall", "dcor", "xi", "ksg"]
SMALL = ["hsic", "hhg", "mic", "mice", "tice"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--swiftdiffusion", default=".build/debug/swiftdiffusion")
    ap.add_argument("--large", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=2_000)
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, names in ((args.large, LARGE), (args.small, SMALL)):
            x = rng.uniform(0, 1, n); y = np.sin(12 * x) + 0.5 * rng.standard_normal(n)
            path = os.path.join(tmp, f"data{n}.csv")
            with open(path, "w") as f:
                f.write("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x.tolist(), y.tolist())))
            cmd = [args.swiftdiffusion, "dependence", "measure", "--csv", path, "--x", "x", "--y", "y",
                   "--permutations", "0", "--json"] + sum((["--measure", m] for m in names), [])
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            mine_ref = {}
            if any(m in names for m in ("mic", "mice", "tice")):
                script = ("suppressPackageStartupMessages(library(minerva)); d <- read.csv('%s');"
                          "t0 <- proc.time()[[3]]; a <- mine(d$x, d$y, est='mic_approx')$MIC; t1 <- proc.time()[[3]];"
                          "e <- mine(d$x, d$y, est='mic_e'); t2 <- proc.time()[[3]];"
                          "cat(sprintf('%%.17g %%.17g %%.17g %%.6f %%.6f', a, e$MIC, e$TIC, t1 - t0, t2 - t1))" % path)
                a, e, t, ta, te = subprocess.run(["Rscript", "-e", script], check=True, capture_output=True,
                                                 text=True).stdout.split()
                mine_ref = {"mic": (float(a), float(ta)), "mice": (float(e), float(te)), "tice": (float(t), float(te))}
            for m in names:
                if m in mine_ref:
                    label = "R minerva::mine (mic_e computes MICe and TIC together)" if m != "mic" else "R minerva::mine"
                    value, seconds = mine_ref[m]
                else:
                    label, f = REFERENCES[m]
                    f(x[:100], y[:100])  # warm up (numba compilation)
                    t0 = time.perf_counter(); value = float(f(x, y)); seconds = time.perf_counter() - t0
                    label = label
                rows.append((m, n, out[m]["seconds"], seconds, out[m]["value"], value, label))
    print(f"{'measure':9s} {'n':>7s} {'swift s':>9s} {'reference s':>12s} {'ratio':>7s}  {'|diff|':>9s}  reference")
    for m, n, s, r, v, rv, label in rows:
        print(f"{m:9s} {n:7d} {s:9.4f} {r:12.4f} {r / s:7.1f}x  {abs(v - rv):9.2e}  {label}")


if __name__ == "__main__":
    main()
