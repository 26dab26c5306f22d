#!/usr/bin/env python3
"""Cross-check medseg's metrics against MONAI and medpy.

Generates a fixed set of mask pairs (random shapes, thin structures, speckle, border contact,
holes, multi-class, empty cases, anisotropic spacing), scores them with MONAI (DiceMetric,
MeanIoU, confusion-matrix precision/recall, HausdorffDistanceMetric with and without
percentile 95, SurfaceDistanceMetric symmetric, SurfaceDiceMetric) and medpy (dc, jc,
precision, recall, hd, hd95, assd), and writes runtime/tests/fixtures/metrics_reference.json.
The Rust test runtime/tests/metrics_reference.rs reads that file, so the check runs in the
normal test suite without Python.

    pip install monai medpy torch numpy scipy
    python3 benches/crosscheck_metrics.py            # rewrite the fixture
    cargo test --release -p medseg-runtime --test metrics_reference
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
import monai
from monai.metrics import (
    DiceMetric,
    MeanIoU,
    HausdorffDistanceMetric,
    SurfaceDistanceMetric,
    SurfaceDiceMetric,
    get_confusion_matrix,
    compute_confusion_matrix_metric,
)
import medpy
from medpy.metric import binary as mb

warnings.filterwarnings("ignore")  # MONAI warns on empty masks; the fixture records its answer.

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "runtime", "tests", "fixtures", "metrics_reference.json")
NSD_TOLERANCE_MM = 1.5


def ellipse(h, w, cy, cx, ry, rx, angle=0.0):
    y, x = np.mgrid[0:h, 0:w].astype(float)
    c, s = math.cos(angle), math.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def line(h, w, y0, x0, y1, x1):
    m = np.zeros((h, w), bool)
    n = max(abs(y1 - y0), abs(x1 - x0)) + 1
    for t in np.linspace(0.0, 1.0, n):
        m[int(round(y0 + t * (y1 - y0))), int(round(x0 + t * (x1 - x0)))] = True
    return m


def cases():
    rng = np.random.default_rng(20261126)
    out = []

    def add(name, truth, pred, n_classes=2, spacing=(1.0, 1.0)):
        out.append((name, truth.astype(np.uint8), pred.astype(np.uint8), n_classes, spacing))

    h, w = 40, 48
    for i, spacing in enumerate([(1.0, 1.0), (0.7, 1.3), (2.5, 0.4), (1.0, 1.0), (0.8, 0.8)]):
        t = ellipse(h, w, rng.uniform(12, 28), rng.uniform(12, 36), rng.uniform(5, 12), rng.uniform(5, 14), rng.uniform(0, 3))
        p = ellipse(h, w, rng.uniform(12, 28), rng.uniform(12, 36), rng.uniform(5, 12), rng.uniform(5, 14), rng.uniform(0, 3))
        add(f"random ellipses {i}", t, p, spacing=spacing)
    add("thin diagonal lines", line(h, w, 2, 3, 37, 44), line(h, w, 3, 3, 38, 42), spacing=(0.9, 0.6))
    add("thin line vs blob", line(h, w, 20, 2, 20, 45), ellipse(h, w, 20, 24, 4, 18))
    add("speckle", rng.random((h, w)) < 0.12, rng.random((h, w)) < 0.12, spacing=(1.2, 0.7))
    add("touching the image border", ellipse(h, w, 0, 0, 15, 20), ellipse(h, w, 39, 47, 18, 25) | ellipse(h, w, 2, 3, 10, 10))
    ring_t = ellipse(h, w, 20, 24, 15, 18) & ~ellipse(h, w, 20, 24, 7, 9)
    ring_p = ellipse(h, w, 21, 23, 14, 19) & ~ellipse(h, w, 19, 25, 8, 8)
    add("rings with holes", ring_t, ring_p, spacing=(0.5, 0.5))
    add("identical", ring_t, ring_t)
    single_t = np.zeros((h, w), bool)
    single_t[5, 6] = True
    single_p = np.zeros((h, w), bool)
    single_p[30, 40] = True
    add("single pixels far apart", single_t, single_p, spacing=(0.3, 2.0))
    empty = np.zeros((h, w), bool)
    blob = ellipse(h, w, 20, 24, 8, 10)
    add("empty prediction", blob, empty)
    add("empty truth", empty, blob)
    add("both empty", empty, empty)
    # Multi-class: background + 3 structures, one of them missing from the prediction.
    lab_t = np.zeros((64, 80), np.uint8)
    lab_t[ellipse(64, 80, 20, 20, 10, 14)] = 1
    lab_t[ellipse(64, 80, 40, 55, 12, 16)] = 2
    lab_t[ellipse(64, 80, 52, 18, 6, 6)] = 3
    lab_p = np.zeros((64, 80), np.uint8)
    lab_p[ellipse(64, 80, 22, 21, 11, 13)] = 1
    lab_p[ellipse(64, 80, 38, 57, 13, 14)] = 2
    lab_p[ellipse(64, 80, 20, 45, 3, 3)] = 1
    add("multi-class with a missed structure", lab_t, lab_p, n_classes=4, spacing=(0.8, 1.1))
    noisy_t = ellipse(96, 80, 48, 40, 30, 25)
    noisy_p = ellipse(96, 80, 50, 41, 28, 27) ^ (rng.random((96, 80)) < 0.03)
    add("large blob with noisy prediction", noisy_t, noisy_p, spacing=(0.6, 0.9))
    return out


def fin(v):
    """JSON has no NaN or infinity: NaN -> null, inf -> "inf"."""
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf"
    return v


def one_hot(lab, n):
    t = torch.from_numpy(lab.astype(np.int64))
    return torch.nn.functional.one_hot(t, n).permute(2, 0, 1).unsqueeze(0).double()


def monai_scores(truth, pred, n, spacing):
    y, yp = one_hot(truth, n), one_hot(pred, n)
    kw = dict(include_background=True, reduction="none")
    res = {}
    dice = DiceMetric(ignore_empty=False, **kw)
    dice(yp, y)
    res["dice_ignore_empty_false"] = dice.aggregate()[0].tolist()
    dice = DiceMetric(ignore_empty=True, **kw)
    dice(yp, y)
    res["dice"] = dice.aggregate()[0].tolist()
    iou = MeanIoU(ignore_empty=True, **kw)
    iou(yp, y)
    res["iou"] = iou.aggregate()[0].tolist()
    cm = get_confusion_matrix(yp, y, include_background=True)
    res["precision"] = compute_confusion_matrix_metric("precision", cm)[0].tolist()
    res["recall"] = compute_confusion_matrix_metric("recall", cm)[0].tolist()
    sp = list(spacing)
    hd = HausdorffDistanceMetric(**kw)
    hd(yp, y, spacing=sp)
    res["hd"] = hd.aggregate()[0].tolist()
    hd95 = HausdorffDistanceMetric(percentile=95, **kw)
    hd95(yp, y, spacing=sp)
    res["hd95"] = hd95.aggregate()[0].tolist()
    asd = SurfaceDistanceMetric(symmetric=True, **kw)
    asd(yp, y, spacing=sp)
    res["assd"] = asd.aggregate()[0].tolist()
    nsd = SurfaceDiceMetric(class_thresholds=[NSD_TOLERANCE_MM] * n, use_subvoxels=False, **kw)
    nsd(yp, y, spacing=sp)
    res["nsd"] = nsd.aggregate()[0].tolist()
    return {k: [fin(v) for v in vs] for k, vs in res.items()}


def medpy_scores(truth, pred, n, spacing):
    """medpy per foreground class, only where both masks have it (medpy raises otherwise)."""
    out = {k: [] for k in ["dice", "iou", "precision", "recall", "hd", "hd95_pooled", "assd"]}
    for c in range(n):
        t, p = truth == c, pred == c
        if c == 0 or not t.any() or not p.any():
            for k in out:
                out[k].append(None)
            continue
        out["dice"].append(mb.dc(p, t))
        out["iou"].append(mb.jc(p, t))
        out["precision"].append(mb.precision(p, t))
        out["recall"].append(mb.recall(p, t))
        out["hd"].append(mb.hd(p, t, voxelspacing=spacing))
        out["hd95_pooled"].append(mb.hd95(p, t, voxelspacing=spacing))
        out["assd"].append(mb.assd(p, t, voxelspacing=spacing))
    return {k: [None if v is None else fin(v) for v in vs] for k, vs in out.items()}


def encode(lab):
    return "".join(str(int(v)) for v in lab.ravel())


def main():
    fixture = {
        "generator": "benches/crosscheck_metrics.py",
        "monai": monai.__version__,
        "medpy": getattr(medpy, "__version__", "unknown"),
        "nsd_tolerance_mm": NSD_TOLERANCE_MM,
        "cases": [],
    }
    for name, truth, pred, n, spacing in cases():
        fixture["cases"].append(
            {
                "name": name,
                "height": int(truth.shape[0]),
                "width": int(truth.shape[1]),
                "n_classes": n,
                "spacing": list(spacing),
                "truth": encode(truth),
                "pred": encode(pred),
                "monai": monai_scores(truth, pred, n, spacing),
                "medpy": medpy_scores(truth, pred, n, spacing),
            }
        )
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {len(fixture['cases'])} cases to {os.path.relpath(OUT)} (MONAI {monai.__version__})")


if __name__ == "__main__":
    sys.exit(main())
