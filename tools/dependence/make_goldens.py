#!/usr/bin/env python3
"""Reference values for the Dependence library (Swift), written as JSON goldens.

    python3 -m venv /tmp/depvenv && /tmp/depvenv/bin/pip install scipy dcor hyppo numpy scikit-learn
    apt-get install r-cran-minerva            # MIC / MICe / TICe (minepy's C core, libmine)
    /tmp/depvenv/bin/python tools/dependence/make_goldens.py [--out Tests/DependenceTests/Fixtures]

Data sets are drawn from numpy's PCG64 with fixed seeds and stored in the goldens themselves (full
precision), so the Swift tests need neither Python nor R. References:

  pearson / spearman / kendall  scipy.stats.pearsonr / spearmanr / kendalltau (tau-b)
  dcor      dcor.distance_correlation (biased V-statistic, dcor's default)
  hsic      hyppo.independence.Hsic statistic (bias=False: unbiased dcorr of 1 - K / max K) on Gaussian
            kernels with the median heuristic of hyppo.tools.compute_kern applied to each variable separately (hyppo's own call reuses x's gamma
            for y; that variant is recorded as hsic_hyppo_shared_gamma, for information only)
  xi        scipy.stats.chatterjeexi (y_continuous=False), ties in x broken by input order
  ksg       sklearn's KSG estimator (_compute_mi_cc, k = 3) on the standardised data, without the 1e-10
            jitter mutual_info_regression adds
  hhg       hyppo.independence.HHG statistic on exact distance matrices |x_i - x_j|, |y_i - y_j|
  mic, mice, tice  R minerva::mine(alpha = 0.6, C = 15, est = "mic_approx" / "mic_e"): MIC, MIC, TIC

Permutation p-values (data sets in PVALUE_SETS): the same statistics on randomly permuted y,
p = (1 + #{T_perm >= T_obs}) / (1 + B), |T| for the signed correlations.
"""
import argparse, json, os, subprocess, sys, tempfile, time
import numpy as np
import scipy, scipy.stats as st
import dcor, hyppo, sklearn
from hyppo.independence import Hsic, HHG
from hyppo.tools import compute_kern
from sklearn.preprocessing import scale
from sklearn.feature_selection._mutual_info import _compute_mi_cc

PVALUE_SETS = ["weak", "noise_small"]


def datasets():
    out = {}
    r = np.random.default_rng(1301)
    x = r.uniform(0, 1, 100); out["linear"] = (x, x + 0.3 * r.standard_normal(100))
    r = np.random.default_rng(1302)
    x = r.uniform(-1, 1, 200); out["parabola"] = (x, x ** 2 + 0.1 * r.standard_normal(200))
    r = np.random.default_rng(1303)
    x = r.uniform(0, 1, 300); out["sine"] = (x, np.sin(4 * np.pi * x) + 0.3 * r.standard_normal(300))
    r = np.random.default_rng(1304)
    t = r.uniform(0, 2 * np.pi, 100)
    out["circle"] = (np.cos(t) + 0.05 * r.standard_normal(100), np.sin(t) + 0.05 * r.standard_normal(100))
    r = np.random.default_rng(1305)
    out["independent"] = (r.standard_normal(500), r.standard_normal(500))
    r = np.random.default_rng(1306)
    x = r.integers(0, 10, 80).astype(float)
    out["ties"] = (x, np.round(x / 3 + r.standard_normal(80)))
    r = np.random.default_rng(1307)
    x = r.standard_normal(60); out["weak"] = (x, 0.3 * x + r.standard_normal(60))
    r = np.random.default_rng(1308)
    x = r.uniform(0, 1, 50); out["noise_small"] = (x, (x > 0.5) * 0.2 + r.standard_normal(50))
    return out


def xi(x, y):
    order = np.argsort(x, kind="stable")  # ties in x broken by input order, as the Swift code does
    return float(st.chatterjeexi(np.arange(len(x), dtype=float), y[order]).statistic)


def hsic(x, y):
    kx = compute_kern(x.reshape(-1, 1), x.reshape(-1, 1))[0]
    ky = compute_kern(y.reshape(-1, 1), y.reshape(-1, 1))[0]
    # What Hsic.statistic does after its own compute_kern call: distances 1 - K / max K into Dcorr. With
    # compute_kernel=None it takes its inputs as those matrices as they are.
    return float(Hsic(compute_kernel=None).statistic(1 - kx / np.max(kx), 1 - ky / np.max(ky)))


def hsic_shared(x, y):
    return float(Hsic().statistic(x.reshape(-1, 1), y.reshape(-1, 1)))


def hhg(x, y):
    dx = np.abs(x[:, None] - x[None, :]); dy = np.abs(y[:, None] - y[None, :])
    return float(HHG(compute_distance=None).statistic(dx, dy))


def ksg(x, y):
    xs = scale(x.reshape(-1, 1), with_mean=False).ravel(); ys = scale(y, with_mean=False)
    return float(_compute_mi_cc(xs, ys, 3))


MEASURES = {
    "pearson": (lambda x, y: float(st.pearsonr(x, y).statistic), True),
    "spearman": (lambda x, y: float(st.spearmanr(x, y).statistic), True),
    "kendall": (lambda x, y: float(st.kendalltau(x, y).statistic), True),
    "dcor": (lambda x, y: float(dcor.distance_correlation(x, y)), False),
    "hsic": (hsic, False),
    "xi": (xi, False),
    "ksg": (ksg, False),
    "hhg": (hhg, False),
}
PERMUTATIONS = {"pearson": 20000, "spearman": 20000, "kendall": 20000, "dcor": 10000, "hsic": 4000,
                "xi": 10000, "ksg": 4000, "hhg": 2000}
MINERVA_PERMUTATIONS = 2000


def permutation_p(f, two_sided, x, y, b, seed):
    rng = np.random.default_rng(seed)
    obs = f(x, y); obs = abs(obs) if two_sided else obs
    thr = obs - 1e-12 * max(abs(obs), 1e-300)
    count = 0
    for _ in range(b):
        t = f(x, rng.permutation(y)); t = abs(t) if two_sided else t
        count += t >= thr
    return (count + 1) / (b + 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../Tests/DependenceTests/Fixtures"))
    args = ap.parse_args()
    data = datasets()
    with tempfile.TemporaryDirectory() as tmp:
        for name, (x, y) in data.items():
            with open(os.path.join(tmp, name + ".csv"), "w") as f:
                f.write("x,y\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(x.tolist(), y.tolist())))
        with open(os.path.join(tmp, "pvalue_sets.txt"), "w") as f:
            f.write("\n".join(PVALUE_SETS) + "\n")
        out_csv = os.path.join(tmp, "minerva.csv")
        t0 = time.time()
        subprocess.run(["Rscript", os.path.join(os.path.dirname(__file__), "minerva_goldens.R"), tmp, out_csv,
                        str(MINERVA_PERMUTATIONS)], check=True)
        print(f"minerva: {time.time() - t0:.1f} s", file=sys.stderr)
        minerva = {}
        for line in open(out_csv).read().splitlines()[1:]:
            ds, m, v, p, b = line.split(",")
            minerva[(ds, m)] = (float(v), None if p == "NA" else float(p), int(b))
        minerva_version = subprocess.run(["Rscript", "-e", "cat(as.character(packageVersion('minerva')))"],
                                         capture_output=True, text=True, check=True).stdout.strip()

    goldens = {"generator": "tools/dependence/make_goldens.py",
               "versions": {"numpy": np.__version__, "scipy": scipy.__version__, "dcor": dcor.__version__,
                            "hyppo": hyppo.__version__, "scikit-learn": sklearn.__version__,
                            "minerva": minerva_version},
               "datasets": []}
    for k, (name, (x, y)) in enumerate(data.items()):
        entry = {"name": name, "x": x.tolist(), "y": y.tolist(), "values": {}, "pvalues": {}}
        for m, (f, two_sided) in MEASURES.items():
            t0 = time.time()
            entry["values"][m] = f(x, y)
            if name in PVALUE_SETS:
                b = PERMUTATIONS[m]
                entry["pvalues"][m] = {"p": permutation_p(f, two_sided, x, y, b, 7000 + k), "permutations": b}
            print(f"{name:12s} {m:9s} {entry['values'][m]: .12g}  {time.time() - t0:.1f} s", file=sys.stderr)
        entry["values"]["hsic_hyppo_shared_gamma"] = hsic_shared(x, y)
        for m in ("mic", "mice", "tice"):
            v, p, b = minerva[(name, m)]
            entry["values"][m] = v
            if p is not None:
                entry["pvalues"][m] = {"p": p, "permutations": b}
        goldens["datasets"].append(entry)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "dependence_goldens.json")
    with open(path, "w") as f:
        json.dump(goldens, f, indent=1)
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
