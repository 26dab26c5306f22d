#!/usr/bin/env python3
"""medseg's reduced-precision exports against onnxruntime's own static quantization, in one run.

From one training run: `medseg-train export` writes the f32, f16, int8-weights and int8 (static,
QDQ) models; onnxruntime's `quantize_static` (QDQ, per-channel int8 weights, uint8 activations)
quantizes the same f32 file with the same calibration images (checked against the sha256 our
card records). For each file: its size, foreground Dice on the test splits of the chosen domains
(`medseg eval`, i.e. in tract), and inference latency in tract (`medseg bench`) and in
onnxruntime, same threads, medians.

Needs: onnxruntime, onnx, numpy, pillow (benches/requirements.txt) and a release build:
  cargo build --release -p medseg-trainer -p medseg-runtime
  python3 benches/compare_quant.py --run runs/unet --data phantom --domains xh,phone
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CARD_KEY = "medseg.card"


def median(xs):
    return float(np.median(np.asarray(xs)))


def sh(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr.strip()}")
    return out.stdout


def weights_sha256(model):
    # The runtime's hash (runtime/src/onnx.rs): every initializer's name and bytes in order.
    h = hashlib.sha256()
    for t in model.graph.initializer:
        h.update(t.name.encode())
        h.update(t.raw_data)
        for f in t.float_data:
            h.update(np.float32(f).tobytes())
    return h.hexdigest()


def card_of(model):
    for p in model.metadata_props:
        if p.key == CARD_KEY:
            return json.loads(p.value)
    sys.exit("the model has no medseg card")


def calibration_names(data, domain, n, expected_sha):
    """The training images our export calibrated on: evenly spaced over the split, as
    trainer::data::evenly_spaced picks them, checked against the card's hash."""
    splits = json.load(open(os.path.join(data, "splits.json")))
    names = [s for patient in splits["domains"][domain]["train"].values() for s in patient]
    if n and len(names) > n:
        names = [names[i * len(names) // n] for i in range(n)]
    got = hashlib.sha256("".join(f"{s}\n" for s in names).encode()).hexdigest()
    if got != expected_sha:
        sys.exit(f"could not rebuild the calibration set (sha {got}, card {expected_sha})")
    return names


def load_input(data, name, card):
    from PIL import Image

    spec = card["input"]
    path = next(
        os.path.join(data, "images", name + ext)
        for ext in (".png", ".jpg", ".jpeg")
        if os.path.exists(os.path.join(data, "images", name + ext))
    )
    img = Image.open(path).convert("L" if spec["channels"] == 1 else "RGB")
    img = img.resize((spec["width"], spec["height"]), Image.BILINEAR)
    x = (np.asarray(img, np.float32) / 255.0 - spec["mean"]) / spec["std"]
    x = x[None] if spec["channels"] == 1 else x.transpose(2, 0, 1)
    return x[None].astype(np.float32)


def ort_quantize(f32_path, out_path, inputs, card):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[card["calibration"]["method"]]
    quantize_static(f32_path, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=method)
    # Carry the card over (with this file's weight hash) so the medseg runtime loads it too.
    m = onnx.load(out_path)
    c = dict(card)
    c["quantization"] = "onnxruntime-quantize_static-qdq"
    c.pop("calibration", None)
    c["metrics"] = {}
    c["weights_sha256"] = weights_sha256(m)
    keep = [p for p in m.metadata_props if p.key != CARD_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)
    m.metadata_props.add(key=CARD_KEY, value=json.dumps(c))
    onnx.save(m, out_path)


def ort_latency(path, threads, runs):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in s.get_inputs()[0].shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(3):
        s.run(None, {"input": x})
    t = []
    for _ in range(runs):
        a = time.perf_counter()
        s.run(None, {"input": x})
        t.append(time.perf_counter() - a)
    return 1e3 * median(t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a training run folder (medseg-train train --out)")
    ap.add_argument("--data", required=True, help="its data set (for calibration and scoring)")
    ap.add_argument("--domains", default="xh,phone", help="test splits to score, comma separated")
    ap.add_argument("--domain", default="xh", help="the training domain (calibration images)")
    ap.add_argument("--calibrate", type=int, default=32)
    ap.add_argument("--calibration", default="percentile", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30, help="timed inferences per model and runtime")
    ap.add_argument("--bin", default="target/release", help="folder of medseg-train and medseg")
    ap.add_argument("--out", default=None, help="keep the models here [default: a temporary folder]")
    args = ap.parse_args()
    train = os.path.join(args.bin, "medseg-train")
    medseg = os.path.join(args.bin, "medseg")
    for b in (train, medseg):
        if not os.path.exists(b):
            sys.exit(f"{b} is missing: cargo build --release -p medseg-trainer -p medseg-runtime")
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        sys.exit(f"{e}: pip install -r benches/requirements.txt")

    out = args.out or tempfile.mkdtemp(prefix="compare_quant_")
    os.makedirs(out, exist_ok=True)
    models = {}
    for precision in ["f32", "f16", "int8-weights", "int8"]:
        path = os.path.join(out, f"medseg-{precision}.onnx")
        cmd = [train, "export", "--run", args.run, "--out", path, "--force", "--no-eval",
               "--precision", precision]
        if precision == "int8":
            cmd += ["--calibrate", str(args.calibrate), "--calibration", args.calibration]
        print(f"exporting {precision} ...", file=sys.stderr)
        sh(cmd)
        models[f"medseg {precision}"] = path

    import onnx

    int8_card = card_of(onnx.load(models["medseg int8"]))
    names = calibration_names(args.data, args.domain, args.calibrate, int8_card["calibration"]["images_sha256"])
    inputs = [load_input(args.data, n, int8_card) for n in names]
    ort_path = os.path.join(out, "onnxruntime-int8-qdq.onnx")
    print("onnxruntime quantize_static ...", file=sys.stderr)
    ort_quantize(models["medseg f32"], ort_path, inputs, int8_card)
    models["onnxruntime int8 (QDQ)"] = ort_path

    domains = args.domains.split(",")
    rows = []
    for label, path in models.items():
        print(f"scoring {label} ...", file=sys.stderr)
        dice = {}
        for d in domains:
            ev = json.loads(sh([medseg, "eval", "--model", path, "--data", args.data, "--split", "test",
                                "--domain", d, "--json"]))
            dice[d] = ev["per_class"][1]["dice_split"]
        with tempfile.NamedTemporaryFile(suffix=".json") as j:
            sh([medseg, "bench", "--model", path, "--runs", str(args.runs), "--cold-starts", "0",
                "--threads", str(args.threads), "--json", j.name])
            b = json.load(open(j.name))
        rows.append((label, os.path.getsize(path), dice, b["stage_ms"]["inference"], b["load_s"],
                     ort_latency(path, args.threads, args.runs)))

    f32_size = rows[0][1]
    f32_dice = rows[0][2]
    print(f"\nrun {args.run}, {args.calibrate} calibration images ({args.calibration}), {args.threads} thread(s)")
    head = ["model", "MB", "of f32"] + [f"Dice {d}" for d in domains] + [f"drop {d}" for d in domains] + [
        "tract ms", "onnxruntime ms"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, size, dice, tract_ms, _, ort_ms in rows:
        cells = [label, f"{size / 1e6:.2f}", f"{size / f32_size:.2f}"]
        cells += [f"{dice[d]:.4f}" for d in domains]
        cells += [f"{f32_dice[d] - dice[d]:+.4f}" for d in domains]
        cells += [f"{tract_ms:.1f}", f"{ort_ms:.1f}"]
        print("| " + " | ".join(cells) + " |")
    tract = {r[0]: r[3] for r in rows}
    ortl = {r[0]: r[5] for r in rows}
    print(f"\nint8 latency / f32 latency in tract: {tract['medseg int8'] / tract['medseg f32']:.2f} "
          f"(goal <= 0.7); medseg int8 in tract / onnxruntime on the same file: "
          f"{tract['medseg int8'] / ortl['medseg int8']:.2f} (goal <= 1.2); medseg int8 / "
          f"onnxruntime's own int8, both in onnxruntime: {ortl['medseg int8'] / ortl['onnxruntime int8 (QDQ)']:.2f}")
    print(f"models kept in {out}")


if __name__ == "__main__":
    main()
