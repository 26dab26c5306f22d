#!/usr/bin/env python3
"""Side-by-side: the default medseg UNet (w16, depth 4, BatchNorm, transposed up-convs) in
Burn + tract versus the same network in PyTorch (CPU) and the same ONNX file in onnxruntime,
in one run on one machine. Prints medians and ratios (>1 means medseg is slower).

    pip install -r benches/requirements.txt
    python3 benches/compare_unet.py [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def run_medseg(onnx_path, args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "medseg-benches", "--bin", "bench-unet", "--",
           "--onnx", onnx_path, "--size", str(args.size), "--batch", str(args.batch),
           "--train-steps", str(args.train_steps), "--infer-runs", str(args.infer_runs)]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def torch_unet(torch, width=16, depth=4, classes=2):
    nn = torch.nn

    def double(cin, cout):
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = [width << i for i in range(depth + 1)]
            self.stem = double(1, w[0])
            self.down = nn.ModuleList([double(w[i], w[i + 1]) for i in range(depth)])
            self.ups = nn.ModuleList([nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(depth))])
            self.convs = nn.ModuleList([double(2 * w[i], w[i]) for i in reversed(range(depth))])
            self.head = nn.Conv2d(w[0], classes, 1)

        def forward(self, x):
            skips = [self.stem(x)]
            for d in self.down:
                skips.append(d(nn.functional.max_pool2d(skips[-1], 2)))
            x = skips.pop()
            for up, conv in zip(self.ups, self.convs):
                x = conv(torch.cat([skips.pop(), up(x)], 1))
            return self.head(x)

    return UNet()


def time_torch(torch, args):
    model = torch_unet(torch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step_time(side):
        times = []
        for i in range(args.train_steps + 1):
            x = torch.rand(args.batch, 1, side, side)
            y = torch.rand(args.batch, 2, side, side)
            t = time.perf_counter()
            logits = model(x)
            ce = -(y * torch.log_softmax(logits, 1)).sum(1).mean()
            p = torch.softmax(logits, 1)[:, 1:]
            g = y[:, 1:]
            dice = 1 - ((2 * (p * g).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + 1)).mean()
            loss = 0.5 * ce + 0.5 * dice
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i > 0:
                times.append(time.perf_counter() - t)
        return median(times)

    model.train()
    full, crop = step_time(args.size), step_time(args.size // 2)
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(args.infer_runs + 2):
            x = torch.rand(1, 1, args.size, args.size)
            t = time.perf_counter()
            model(x).argmax(1)
            if i >= 2:
                times.append(time.perf_counter() - t)
    return {"train_step_s": {"full": full, "crop": crop}, "infer_ms": median(times) * 1e3}


def time_onnxruntime(ort, path, args):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 1, args.size, args.size).astype(np.float32)
    times = []
    for i in range(args.infer_runs + 2):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        if i >= 2:
            times.append(time.perf_counter() - t)
    return median(times) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--train-steps", type=int, default=5)
    ap.add_argument("--infer-runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    try:
        import onnxruntime as ort
        import torch
    except ImportError as e:
        sys.exit(f"missing peer ({e}); install them with: pip install -r benches/requirements.txt")
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "unet.onnx")
        ours = run_medseg(path, args)
        ort_ms = time_onnxruntime(ort, path, args)
    theirs = time_torch(torch, args)

    b, s = args.batch, args.size
    rows = [
        (f"train step {b}x1x{s}x{s} (s)", ours["train_step_s"]["full"], theirs["train_step_s"]["full"], "PyTorch"),
        (f"train step {b}x1x{s//2}x{s//2} crop (s)", ours["train_step_s"]["crop"], theirs["train_step_s"]["crop"], "PyTorch"),
        (f"inference 1x1x{s}x{s}, tract logits (ms)", ours["tract_logits_ms"], ort_ms, "onnxruntime"),
        (f"inference 1x1x{s}x{s}, tract logits (ms)", ours["tract_logits_ms"], theirs["infer_ms"], "PyTorch"),
        (f"medseg segment {s}x{s} incl. pre/post (ms)", ours["segment_ms"], ort_ms, "onnxruntime"),
    ]
    print(f"UNet w16 d4 ({ours['parameters']} parameters), {args.threads} threads for peers; Burn backend {ours['backend']}")
    print(f"{'measure':<44} {'medseg':>10} {'peer':>10} {'ratio':>7}  peer")
    for name, a, p, peer in rows:
        print(f"{name:<44} {a:>10.4f} {p:>10.4f} {a / p:>7.2f}  {peer}")
    print(f"training images/s at {s}: medseg {b / ours['train_step_s']['full']:.2f}, PyTorch {b / theirs['train_step_s']['full']:.2f}")
    print(f"training images/s at {s//2} crops: medseg {b / ours['train_step_s']['crop']:.2f}, PyTorch {b / theirs['train_step_s']['crop']:.2f}")
    print(f"segment images/s at {s}: medseg {ours['segment_images_per_s']:.1f}, onnxruntime {1e3 / ort_ms:.1f}")


if __name__ == "__main__":
    main()
