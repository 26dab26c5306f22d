#!/usr/bin/env python3
"""Reference training in 3D: a PyTorch 3D UNet on each subject's stack of sagittal slices,
scored on the very test slices and with the very Dice that reference_training.py (the 2D twin)
and `medseg eval` use. It answers the question the 2D runs left open (docs/REAL_DATA.md): are
the errors that keep 2D models near Dice 0.85 on the real MRI (the top and bottom body
counted wrong, the lateral partial-volume slices) fixed by seeing the neighbouring slices and
the whole spine at once, as the published volume-based methods do? A peer measurement, not
part of medseg; nothing here is used by the Rust code.

    python3 benches/reference_training_3d.py --data data/spine-vb --device cuda --bf16 \
        --minutes 7 --width 32 --out ref3d.json

Volumes: the slices of one patient in slices.csv, ordered by slice_index, must be equally
spaced (the spine-mri-vb folder holds every second sagittal slice); they are stacked and
padded with background to --stack slices. The through-plane spacing is therefore about twice
the in-plane one, so the first pooling halves the slice plane only and the others all three
axes. The recipe is the 2D twin's where it carries over: Adam with a poly(0.9) schedule fitted
to the budget, 0.5 cross-entropy + 0.5 soft Dice over the foreground classes, the same input
normalization, one in-plane similarity warp per volume (the same for all its slices), gamma,
contrast and brightness jitter; the mirror flip reverses the slice order (left-right, the
anatomical mirror) instead of flipping the slice plane, and each volume sits at a random
depth inside the padding.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_training import (add_recipe_args, load_split, loss_fn, planned_epochs,  # noqa: E402
                                report, selection_dice)


def unet3d(torch, width, depth, classes):
    nn = torch.nn

    def double(cin, cout):
        return nn.Sequential(
            nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

    # Anisotropic data: pool the slice plane alone first, then all three axes.
    pools = [(1, 2, 2)] + [(2, 2, 2)] * (depth - 1)

    class UNet3d(nn.Module):
        def __init__(self):
            super().__init__()
            w = [width << i for i in range(depth + 1)]
            self.stem = double(1, w[0])
            self.down = nn.ModuleList([double(w[i], w[i + 1]) for i in range(depth)])
            self.ups = nn.ModuleList([nn.ConvTranspose3d(w[i + 1], w[i], pools[i], stride=pools[i])
                                      for i in reversed(range(depth))])
            self.convs = nn.ModuleList([double(2 * w[i], w[i]) for i in reversed(range(depth))])
            self.head = nn.Conv3d(w[0], classes, 1)

        def forward(self, x):
            skips = [self.stem(x)]
            for d, p in zip(self.down, pools):
                skips.append(d(nn.functional.max_pool3d(skips[-1], p)))
            x = skips.pop()
            for up, conv in zip(self.ups, self.convs):
                x = conv(torch.cat([skips.pop(), up(x)], 1))
            return self.head(x)

    return UNet3d()


def stack_volumes(x, y, patients, slice_index, stack, torch):
    """(volumes N x 1 x S x H x W, labels N x S x H x W, depths, per volume the rows of the
    split it holds in slice order). Padding: the volume's minimum and background."""
    vols, labs, depths, rows = [], [], [], []
    for p in sorted(set(patients)):
        idx = sorted((i for i, q in enumerate(patients) if q == p), key=lambda i: slice_index[i])
        steps = {slice_index[b] - slice_index[a] for a, b in zip(idx, idx[1:])}
        if len(steps) > 1:
            sys.exit(f"patient {p}: slice indices are not equally spaced (steps {sorted(steps)})")
        if len(idx) > stack:
            sys.exit(f"patient {p} has {len(idx)} slices, more than --stack {stack}")
        v = torch.full((1, stack) + tuple(x.shape[-2:]), float(x[idx].min()))
        m = torch.zeros((stack,) + tuple(y.shape[-2:]), dtype=torch.int64)
        v[0, :len(idx)] = x[idx, 0]
        m[:len(idx)] = y[idx]
        vols.append(v)
        labs.append(m)
        depths.append(len(idx))
        rows.append(idx)
    return torch.stack(vols), torch.stack(labs), depths, rows


def slice_indices(data, split):
    import csv
    return [int(r["slice_index"]) for r in csv.DictReader(open(os.path.join(data, "slices.csv")))
            if r["split"] == split]


def augment(x, y, depths, args, torch, F, gen):
    """Per volume: a random depth inside the padding, an in-plane similarity warp shared by all
    its slices, the left-right mirror (slice order reversed), gamma, contrast/brightness."""
    n, _, s, h, w = x.shape
    u = lambda lo, hi: lo + (hi - lo) * float(torch.rand(1, generator=gen))  # noqa: E731
    xs, ys = [], []
    for i in range(n):
        d = depths[i]
        v, m = x[i, :, :d], y[i, :d]  # 1 x d x H x W, d x H x W
        if float(torch.rand(1, generator=gen)) < 0.5:
            v, m = v.flip(1), m.flip(0)
        ang = u(-args.rotate, args.rotate) * math.pi / 180
        scale = u(1 - args.zoom, 1 + args.zoom)
        tx, ty = u(-args.shift, args.shift) * 2, u(-args.shift, args.shift) * 2
        c, sn = math.cos(ang) / scale, math.sin(ang) / scale
        theta = torch.tensor([[c, -sn, tx], [sn, c, ty]], device=x.device).expand(d, 2, 3)
        grid = F.affine_grid(theta, [d, 1, h, w], align_corners=False)
        lo = v.min()
        v = F.grid_sample(v.transpose(0, 1) - lo, grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False).transpose(0, 1) + lo
        m = F.grid_sample(m[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0].long()
        if args.gamma > 0:
            bound = math.log(1 + args.gamma)
            hi = v.max()
            v = lo + (hi - lo) * ((v - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1) ** math.exp(u(-bound, bound))
        v = v * u(0.9, 1.1) + u(-0.1, 0.1)
        at = int(torch.randint(0, s - d + 1, (1,), generator=gen))
        pv = torch.full((1, s, h, w), float(v.min()), device=x.device)
        pm = torch.zeros((s, h, w), dtype=torch.int64, device=x.device)
        pv[:, at:at + d] = v
        pm[at:at + d] = m
        xs.append(pv)
        ys.append(pm)
    return torch.stack(xs), torch.stack(ys)


def slice_logits(model, vols, depths, rows, n_slices, autocast, torch):
    """Per-slice logits (n_slices x C x H x W) in the split's slices.csv order."""
    model.eval()
    out = [None] * n_slices
    with torch.no_grad():
        for i in range(len(vols)):
            with autocast():
                z = model(vols[i:i + 1]).float()[0]  # C x S x H x W
            for k, row in enumerate(rows[i][:depths[i]]):
                out[row] = z[:, k]
    model.train()
    return torch.stack(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_args(ap)
    ap.add_argument("--max-epochs", type=int, default=2000)
    ap.add_argument("--depth", type=int, default=4, help="poolings")
    ap.add_argument("--stack", type=int, default=40, help="slices per padded volume (a multiple of "
                    "2^(depth-1), at least the largest patient's slice count)")
    ap.add_argument("--batch", type=int, default=2, help="volumes per step")
    args = ap.parse_args()
    if args.stack % (1 << (args.depth - 1)):
        sys.exit(f"--stack {args.stack} must be a multiple of {1 << (args.depth - 1)} for --depth {args.depth}")

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16)  # noqa: E731

    splits = {}
    for split in ("train", "val", "test"):
        x, y, pats = load_split(args.data, split, torch)
        vols, labs, depths, rows = stack_volumes(x, y, pats, slice_indices(args.data, split), args.stack, torch)
        splits[split] = dict(vols=vols.to(dev), labs=labs.to(dev), depths=depths, rows=rows,
                             truth=y, patients=pats)
    classes = json.load(open(os.path.join(args.data, "splits.json")))["classes"]
    model = unet3d(torch, args.width, args.depth, len(classes)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    tr, va = splits["train"], splits["val"]
    n_train = len(tr["depths"])
    steps_per_epoch = n_train // args.batch
    planned, epoch_times, log = args.max_epochs, [], []
    best, best_state, step, start, epoch = -1.0, None, 0, time.time(), 0
    while epoch < planned:
        t0 = time.time()
        order = torch.randperm(n_train, generator=gen).tolist()
        losses = []
        for b in range(steps_per_epoch):
            for group in opt.param_groups:
                group["lr"] = args.lr * max(0.0, 1 - step / (planned * steps_per_epoch)) ** 0.9
            ids = order[b * args.batch:(b + 1) * args.batch]
            x, y = augment(tr["vols"][ids], tr["labs"][ids], [tr["depths"][i] for i in ids], args, torch, F, gen)
            with autocast():
                out = model(x)
            loss = loss_fn(out.float(), y, torch, F)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        losses = [float(v) for v in losses]
        train_s = time.time() - t0
        pred = slice_logits(model, va["vols"], va["depths"], va["rows"], len(va["truth"]), autocast, torch).argmax(1)
        val = selection_dice(pred.cpu().numpy(), va["truth"].numpy(), classes)
        epoch += 1
        epoch_times.append(time.time() - t0)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        planned = planned_epochs(args, epoch, epoch_times, start)
        log.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val,
                    "volumes_per_s": steps_per_epoch * args.batch / train_s, "planned": planned})
        print(json.dumps(log[-1]), flush=True)

    model.load_state_dict(best_state)
    te = splits["test"]
    test_logits = slice_logits(model, te["vols"], te["depths"], te["rows"], len(te["truth"]), autocast, torch)
    report(args, torch, log, best, test_logits, te["truth"], te["patients"], classes, start)

if __name__ == "__main__":
    main()
