#!/usr/bin/env python3
"""Side-by-side: the default medseg UNet (w16, depth 4, BatchNorm, transposed up-convs) in
Burn + tract versus the same network in PyTorch (CPU) and the same ONNX file in onnxruntime,
in one run on one machine. Training is timed on every Burn backend medseg offers on the CPU:
flex (the default build) and, when this Python's torch is 2.9.x, LibTorch (`--features tch`,
built against that very torch, so PyTorch and medseg-tch run the same libtorch). Prints medians
and ratios (>1 means medseg is slower).

    pip install -r benches/requirements.txt          # flex only (any torch)
    pip install torch==2.9.0 onnxruntime numpy       # flex and tch
    python3 benches/compare_unet.py [--threads 2] [--backends flex,tch]
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


def run_medseg(onnx_path, args, backend, torch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = ["cargo", "run", "--quiet", "--release", "-p", "medseg-benches", "--bin", "bench-unet"]
    env = dict(os.environ)
    if backend == "tch":
        # torch-sys asks `python` on PATH for its libtorch; bench-unet then loads that libtorch.
        torch_lib = os.path.join(os.path.dirname(torch.__file__), "lib")
        env.update(LIBTORCH_USE_PYTORCH="1",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
                   LD_LIBRARY_PATH=torch_lib + os.pathsep + env.get("LD_LIBRARY_PATH", ""),
                   MEDSEG_TCH_DEVICE="cpu", OMP_NUM_THREADS=str(args.threads))
        # Its own target folder, so that flex and tch builds do not rebuild each other.
        env.setdefault("CARGO_TARGET_DIR", os.path.join(root, "target", "tch"))
        cmd += ["--features", "tch"]
    cmd += ["--", "--onnx", onnx_path, "--size", str(args.size), "--batch", str(args.batch),
            "--train-steps", str(args.train_steps), "--infer-runs", str(args.infer_runs)]
    out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True, env=env).stdout
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
    ap.add_argument("--backends", default="flex,tch",
                    help="Burn backends to time (tch is skipped unless this Python's torch is 2.9.x)")
    args = ap.parse_args()
    try:
        import onnxruntime as ort
        import torch
    except ImportError as e:
        sys.exit(f"missing peer ({e}); install them with: pip install -r benches/requirements.txt")
    torch.set_num_threads(args.threads)

    backends = [b for b in args.backends.split(",") if b]
    if "tch" in backends and not torch.__version__.startswith("2.9."):
        print(f"tch skipped: it builds against torch 2.9.x only (tch 0.22's C++17 build), this Python has {torch.__version__}")
        backends.remove("tch")
    if not backends:
        sys.exit(f"no backend left to time from --backends {args.backends!r} (known: flex, tch)")
    ours = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            path = os.path.join(tmp, f"unet-{backend}.onnx")
            ours[backend] = run_medseg(path, args, backend, torch)
        first = ours[backends[0]]
        ort_ms = time_onnxruntime(ort, os.path.join(tmp, f"unet-{backends[0]}.onnx"), args)
    theirs = time_torch(torch, args)

    b, s = args.batch, args.size
    rows = []
    for backend, r in ours.items():
        rows += [
            (f"train step {b}x1x{s}x{s}, {backend} (s)", r["train_step_s"]["full"], theirs["train_step_s"]["full"], "PyTorch"),
            (f"train step {b}x1x{s//2}x{s//2} crop, {backend} (s)", r["train_step_s"]["crop"], theirs["train_step_s"]["crop"], "PyTorch"),
        ]
    rows += [
        (f"inference 1x1x{s}x{s}, tract logits (ms)", first["tract_logits_ms"], ort_ms, "onnxruntime"),
        (f"inference 1x1x{s}x{s}, tract logits (ms)", first["tract_logits_ms"], theirs["infer_ms"], "PyTorch"),
        (f"medseg segment {s}x{s} incl. pre/post (ms)", first["segment_ms"], ort_ms, "onnxruntime"),
    ]
    print(f"UNet w16 d4 ({first['parameters']} parameters), {args.threads} threads for peers; "
          f"PyTorch {torch.__version__}; Burn backends {', '.join(ours)}")
    print(f"{'measure':<48} {'medseg':>10} {'peer':>10} {'ratio':>7}  peer")
    for name, a, p, peer in rows:
        print(f"{name:<48} {a:>10.4f} {p:>10.4f} {a / p:>7.2f}  {peer}")
    for backend, r in ours.items():
        print(f"training images/s, {backend}: medseg {b / r['train_step_s']['full']:.2f} at {s}, "
              f"{b / r['train_step_s']['crop']:.2f} at {s//2} crops; "
              f"PyTorch {b / theirs['train_step_s']['full']:.2f} and {b / theirs['train_step_s']['crop']:.2f}")
    print(f"segment images/s at {s}: medseg {first['segment_images_per_s']:.1f}, onnxruntime {1e3 / ort_ms:.1f}")


if __name__ == "__main__":
    main()
