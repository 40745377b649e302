#!/usr/bin/env python3
"""Image checker for the shapes model: background colour, foreground colour, shape, position,
outline style, and canny-edge agreement.  Works on plain RGB uint8 images (any PNG).

Colours: every pixel -> nearest of the 8 palette colours (Euclidean RGB); background =
majority label of the 4-px border; foreground = most frequent other label among "clean"
pixels (distance < 80) inside the image, at least 12 px.
Shape: mask = pixels closer to the foreground colour than to the background colour, largest
connected component (holes filled); 12 geometric features (extent, solidity, circularity,
aspect, centroid offset, row-profile widths near top/bottom, number of top lobes, ...)
-> multinomial logistic regression fitted on VAE reconstructions of ground-truth renders
(calibrate_checker.py writes checker_calib.json).  Base-model scoring uses the 4 base
shapes; LoRA scoring uses all 5 (heart included).
Outline style (thick outline, see shapes_data.outline_width): logistic rule on three features
of the foreground component: hole fraction (share of the filled outline not covered by
foreground), relative thickness (max inscribed radius / equivalent radius) and core
foreground-ness (colour in the middle of the shape: fg or bg?), fitted in the calibration.
Canny agreement: cv2.Canny(rgb, 100, 200) of the output vs the control edge map; IoU strict
and IoU with 1-px tolerance (both maps dilated with a 3x3 square before IoU).
"""
import json
import os

import cv2
import numpy as np

import shapes_data as sd

PAL_NAMES = sd.COLOR_NAMES
PAL = np.array([sd.COLORS[c] for c in PAL_NAMES], np.float32)
CALIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checker_calib.json")
REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checker_report.json")


def load_report(path=REPORT):
    """The checker's own accuracy (calibrate_checker.py), or None when it has not been measured."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)
CANNY_LO, CANNY_HI = 100, 200


def palette_labels(img):
    d = np.linalg.norm(img.astype(np.float32)[:, :, None, :] - PAL[None, None], axis=-1)  # H W 8
    return d.argmin(-1), d.min(-1), d


def colors(img):
    lab, dmin, d = palette_labels(img)
    border = np.concatenate([lab[:4].ravel(), lab[-4:].ravel(), lab[:, :4].ravel(), lab[:, -4:].ravel()])
    bg = int(np.bincount(border, minlength=8).argmax())
    clean = (dmin < 80) & (lab != bg)
    counts = np.bincount(lab[clean], minlength=8)
    fg = int(counts.argmax()) if counts.max() >= 12 else -1
    return bg, fg, lab, d


def fg_mask(img, bg, fg, d=None):
    if d is None:
        d = palette_labels(img)[2]
    return d[:, :, fg] < d[:, :, bg]


def largest_component(mask):
    n, cc, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    m = (cc == k).astype(np.uint8)
    # fill holes
    cnts, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(m)
    cv2.drawContours(filled, cnts, -1, 1, thickness=-1)
    return filled


def shape_features(mask):
    """mask: uint8 0/1 filled component. Returns 12 floats or None."""
    if mask is None or mask.sum() < 20:
        return None
    cnts, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    c = max(cnts, key=cv2.contourArea)
    A = float(mask.sum())
    x, y, w, h = cv2.boundingRect(c)
    hull = cv2.convexHull(c)
    hA = max(cv2.contourArea(hull), 1.0)
    P = max(cv2.arcLength(c, True), 1.0)
    ys, xs = np.nonzero(mask)
    cy_off = (ys.mean() - (y + (h - 1) / 2)) / h
    cx_off = (xs.mean() - (x + (w - 1) / 2)) / w
    sub = mask[y:y + h, x:x + w].astype(np.float32)
    rows = sub.sum(1) / w

    def band(a, b):
        i0, i1 = int(a * h), max(int(a * h) + 1, int(b * h))
        return float(rows[i0:i1].mean())

    top, upper, mid, lower, bottom = band(0, .15), band(.15, .35), band(.35, .65), band(.65, .85), band(.85, 1)
    # number of separate runs in the top 20% rows (heart: 2 lobes)
    tr = sub[: max(1, int(0.2 * h))]
    runs = []
    for r in tr:
        rr = np.diff(np.concatenate([[0], (r > 0.5).astype(np.int8), [0]]))
        runs.append((rr == 1).sum())
    lobes = float(np.median(runs)) if runs else 1.0
    return [A / (w * h), A / hA, 4 * np.pi * A / P ** 2, w / h, cy_off, cx_off, top, upper, mid, lower, bottom, lobes]


def thickness(mask_raw):
    dt = cv2.distanceTransform(mask_raw.astype(np.uint8), cv2.DIST_L2, 3)
    return float(dt.max())


class ShapeClassifier:
    def __init__(self, path=CALIB):
        self.cal = json.load(open(path))
        self.mu = np.array(self.cal["mu"])
        self.sd = np.array(self.cal["sd"])
        self.W = np.array(self.cal["W"])
        self.b = np.array(self.cal["b"])
        self.classes = self.cal["classes"]
        self.outline_w = np.array(self.cal.get("outline_w", [0.0, 0.0, 0.0]))
        self.outline_b = float(self.cal.get("outline_b", 0.0))

    def is_outline(self, feats):
        """feats = (hole_frac, rel_thickness, core_fg)."""
        return bool(np.dot(self.outline_w, feats) + self.outline_b > 0)

    @staticmethod
    def expand(f):
        f = np.asarray(f, np.float64)
        q = np.outer(f, f)[np.triu_indices(len(f))]
        return np.concatenate([f, q])

    def logits(self, feats):
        z = (self.expand(feats) - self.mu) / self.sd
        return z @ self.W + self.b

    def predict(self, feats, allowed=None):
        if feats is None:
            return None
        lg = self.logits(feats)
        if allowed:
            lg = np.where([c in allowed for c in self.classes], lg, -1e9)
        return self.classes[int(lg.argmax())]


def analyze(img, clf=None, allowed=None):
    """Full analysis of one RGB uint8 image."""
    bg, fg, lab, d = colors(img)
    out = dict(bg=PAL_NAMES[bg], fg=PAL_NAMES[fg] if fg >= 0 else None, shape=None, pos=None, thickness=None,
               outline=None, area=0)
    if fg < 0:
        return out
    raw = fg_mask(img, bg, fg, d)
    comp = largest_component(raw)
    if comp is None:
        return out
    out["area"] = int(comp.sum())
    ys, xs = np.nonzero(comp)
    cx, cy = xs.mean(), ys.mean()
    out["pos"] = min(sd.POSITIONS, key=lambda p: (sd.POSITIONS[p][0] - cx) ** 2 + (sd.POSITIONS[p][1] - cy) ** 2)
    out["thickness"] = thickness(raw & (comp > 0))
    of = outline_features(raw, comp, img, bg, fg)
    out["hole_frac"], out["rel_thickness"], out["core_fg"] = of
    if clf is not None:
        out["shape"] = clf.predict(shape_features(comp), allowed)
        out["outline"] = clf.is_outline(of)
    return out


def outline_features(raw, comp, img, bg, fg):
    """hole_frac: share of the filled component NOT covered by foreground pixels (a ring has a hole);
    rel_thickness: max inscribed radius of the foreground / equivalent radius of the filled component;
    core_fg: mean 'foreground-ness' (projection of the pixel colour on the bg->fg axis, clipped to
    [0,1]) over the core of the filled component (distance to its border >= 0.6 x the maximum)."""
    A = float(comp.sum())
    fgA = float((raw & (comp > 0)).sum())
    th = thickness(raw & (comp > 0))
    dt = cv2.distanceTransform(comp.astype(np.uint8), cv2.DIST_L2, 3)
    core = dt >= 0.6 * dt.max()
    a, b = PAL[bg], PAL[fg]
    v = b - a
    t = np.clip(((img.astype(np.float32) - a) @ v) / max(float(v @ v), 1.0), 0, 1)
    return 1.0 - fgA / max(A, 1.0), th / max(np.sqrt(A / np.pi), 1.0), float(t[core].mean())


def canny(img):
    return cv2.Canny(img, CANNY_LO, CANNY_HI) > 0


def edge_iou(ctrl_edges, out_img, tol=1):
    """ctrl_edges: bool HxW control edge map; out_img: RGB uint8. Returns (strict IoU, tolerant IoU)."""
    e = canny(out_img)
    a, b = ctrl_edges.astype(bool), e
    strict = (a & b).sum() / max(1, (a | b).sum())
    k = np.ones((2 * tol + 1, 2 * tol + 1), np.uint8)
    ad, bd = cv2.dilate(a.astype(np.uint8), k) > 0, cv2.dilate(b.astype(np.uint8), k) > 0
    tolerant = (ad & bd).sum() / max(1, (ad | bd).sum())
    return float(strict), float(tolerant)
