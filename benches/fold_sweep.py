#!/usr/bin/env python3
"""Dice as the gray levels fold further: a diagnostic for the `scanner-contrast` domain of
docs/GENERALIZATION_MRI.md. Each of the first N test slices of the source domain is folded about
t (v -> |v - t| / max(t, 1 - t), the fold of trainer/src/scanner_shift.rs; t = 0 is the image
itself, t = 1 its inversion), written as one test domain per t, and every model given is scored
on each with `medseg eval` (foreground Dice pooled over the split).

    python3 benches/fold_sweep.py --data DATA --models runs/gen-mri/baseline-s1.onnx runs/gen-mri/aug-s1.onnx
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
from PIL import Image


def fold_domains(data, domain, count, thresholds, out):
    os.makedirs(f"{out}/images")
    os.makedirs(f"{out}/masks")
    splits = json.load(open(f"{data}/splits.json"))
    test = splits["domains"][domain]["test"]
    names = [n for patient in sorted(test) for n in test[patient]][:count]
    domains = {}
    for t in thresholds:
        name = f"fold{round(t * 100):03d}"
        patients = {}
        for n in names:
            v = np.asarray(Image.open(f"{data}/images/{n}.png").convert("L"), dtype=np.float32) / 255
            folded = np.abs(v - t) / max(t, 1 - t)
            Image.fromarray((folded * 255 + 0.5).clip(0, 255).astype(np.uint8)).save(f"{out}/images/{name}_{n}.png")
            shutil.copy(f"{data}/masks/{n}.png", f"{out}/masks/{name}_{n}.png")
            patients.setdefault(n.split("_")[0], []).append(f"{name}_{n}")
        domains[name] = {"test": patients}
    json.dump({"name": "fold-sweep", "classes": splits["classes"], "domains": domains}, open(f"{out}/splits.json", "w"))
    return list(domains)


def foreground_dice(medseg, model, data, domain):
    out = subprocess.run([medseg, "eval", "--model", model, "--data", data, "--split", "test", "--domain", domain],
                         check=True, capture_output=True, text=True).stdout
    # The per-class table: class, dice(img), dice(split), ...; the last class row is the foreground.
    rows = [line.split() for line in out.splitlines() if line and not line.startswith(("class", "assd"))]
    rows = [r for r in rows if len(r) > 3 and r[1].replace(".", "", 1).isdigit()]
    return float(rows[-1][2])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--domain", default="default")
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--medseg", default="target/release/medseg")
    args = ap.parse_args()
    thresholds = [0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "folded")
        domains = fold_domains(args.data, args.domain, args.images, thresholds, out)
        print("model " + " ".join(f"t={t:<5}" for t in thresholds))
        for model in args.models:
            dice = [foreground_dice(args.medseg, model, out, d) for d in domains]
            print(os.path.basename(model) + " " + " ".join(f"{d:.3f}  " for d in dice))


if __name__ == "__main__":
    main()
