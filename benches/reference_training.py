#!/usr/bin/env python3
"""Reference training: the PyTorch twin of medseg's default UNet trained with medseg's recipe
on an imported data set, for as long as a time budget allows, then scored on the test split
with the same Dice that `medseg eval` prints. It answers one question for planners: what does
this network reach on this data when compute is not the limit? It is a peer measurement, not
part of medseg; nothing here is used by the Rust code.

    pip install -r benches/requirements.txt
    python3 benches/reference_training.py --data data/spine-vb --minutes 120 --out ref.json
    python3 benches/reference_training.py --data data/spine-vb --device cuda --width 32 \
        --minutes 8 --out ref-gpu.json      # on a GPU machine

The recipe follows `medseg-train train --crop-size 0 --rotate R --zoom Z --shift S --gamma G`:
whole slices, batch 8, Adam 2e-3 with a poly(0.9) schedule fitted to the budget, loss
0.5 cross-entropy + 0.5 soft Dice over the foreground classes (batch sums, smoothing 1),
mirror flips, contrast and brightness jitter of ±0.1, inputs normalized as the runtime does
((x / 255 - 0.5) / 0.25). The best validation epoch (foreground Dice on two classes, the mean
Dice over the foreground classes on more) is the one scored on the test split.
"""
import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_unet import torch_unet  # noqa: E402  (the same network the speed comparison uses)


def load_split(data, split, torch):
    from PIL import Image
    rows = [r for r in csv.DictReader(open(os.path.join(data, "slices.csv"))) if r["split"] == split]
    if not rows:
        sys.exit(f"{data}/slices.csv: no slices in split '{split}'")
    images = np.stack([np.asarray(Image.open(os.path.join(data, "images", r["name"] + ".png")).convert("L"))
                       for r in rows]).astype(np.float32)
    masks = np.stack([np.asarray(Image.open(os.path.join(data, "masks", r["name"] + ".png"))) for r in rows])
    x = torch.from_numpy((images / 255.0 - 0.5) / 0.25)[:, None]
    return x, torch.from_numpy(masks.astype(np.int64)), [r["patient"] for r in rows]


def augment(x, y, args, torch, F, gen):
    """Per-sample similarity warp (bilinear image filled with its minimum, nearest mask filled
    with background), mirror flip, gamma on the sample's range, contrast/brightness jitter."""
    n = x.shape[0]
    u = lambda lo, hi: (lo + (hi - lo) * torch.rand(n, generator=gen)).to(x.device)  # noqa: E731
    if args.rotate > 0 or args.zoom > 0 or args.shift > 0:
        ang = u(-args.rotate, args.rotate) * math.pi / 180
        scale = u(1 - args.zoom, 1 + args.zoom)
        tx, ty = u(-args.shift, args.shift) * 2, u(-args.shift, args.shift) * 2
        cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        x = F.grid_sample(x - lo, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + lo
        y = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                          align_corners=False)[:, 0].long()
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    x[flip] = x[flip].flip(-1)
    y[flip] = y[flip].flip(-1)
    if args.gamma > 0:
        bound = math.log(1 + args.gamma)
        exponent = torch.exp(u(-bound, bound)).view(n, 1, 1, 1)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = lo + (hi - lo) * ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1) ** exponent
    gain = u(0.9, 1.1).view(n, 1, 1, 1)
    shift = u(-0.1, 0.1).view(n, 1, 1, 1)
    return x * gain + shift, y


def loss_fn(logits, y, torch, F):
    """0.5 CE + 0.5 soft Dice over the foreground classes, summed over the batch and every
    spatial axis: the same loss for 2D slices (N, C, H, W) and 3D stacks (N, C, S, H, W)."""
    ce = F.cross_entropy(logits, y)
    p = logits.softmax(1)[:, 1:]
    g = F.one_hot(y, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    axes = (0,) + tuple(range(2, logits.ndim))
    inter, total = (p * g).sum(axes), (p + g).sum(axes)
    return 0.5 * ce + 0.5 * (1 - ((2 * inter + 1) / (total + 1)).mean())


def logits(model, x, torch, batch=16):
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train()
    return out


def predict(model, x, torch, batch=16):
    return logits(model, x, torch, batch).argmax(1)


def dice(pred, truth):
    """Binary foreground Dice (any non-zero class), as `medseg eval`'s split Dice on two classes."""
    return overlap(pred > 0, truth > 0)


def overlap(p, t):
    denom = p.sum() + t.sum()
    return float(2 * (p & t).sum() / denom) if denom > 0 else 1.0


def class_dice(pred, truth, classes):
    """Split Dice of each foreground class, by name."""
    return {name: overlap(pred == c, truth == c) for c, name in enumerate(classes) if c > 0}


def selection_dice(pred, truth, classes):
    """What picks the best epoch: foreground Dice on two classes, else the mean over classes."""
    if len(classes) == 2:
        return dice(pred, truth)
    return float(np.mean(list(class_dice(pred, truth, classes).values())))


def scores(pred, truth, patients, classes):
    pred, truth = pred.numpy(), truth.numpy()
    pats = sorted(set(patients))
    idx = {q: [i for i, p in enumerate(patients) if p == q] for q in pats}
    per_patient = {q: dice(pred[idx[q]], truth[idx[q]]) for q in pats}
    per_slice = [dice(pred[i], truth[i]) for i in range(len(pred))]
    return {"dice_split": dice(pred, truth), "dice_mean_over_patients": float(np.mean(list(per_patient.values()))),
            "dice_mean_over_slices": float(np.mean(per_slice)), "per_patient": per_patient,
            "dice_per_class": class_dice(pred, truth, classes)}


def add_recipe_args(ap):
    """The options the 2D and the 3D twin share."""
    ap.add_argument("--data", required=True, help="an imported data set (images/, masks/, slices.csv, splits.json)")
    ap.add_argument("--minutes", type=float, default=120.0, help="training time budget")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--rotate", type=float, default=10.0)
    ap.add_argument("--zoom", type=float, default=0.15)
    ap.add_argument("--shift", type=float, default=0.08)
    ap.add_argument("--gamma", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward passes (the "
                    "recipe is otherwise unchanged)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", required=True, help="JSON results file")
    ap.add_argument("--save-test-probs", help="also write the best epoch's foreground probabilities "
                    "on the test split here (.npy, slices x H x W, slices.csv order) for ensembling "
                    "or post-processing studies")


def planned_epochs(args, epoch, epoch_times, start):
    """Replan like `train --time-budget`: as many more epochs as the median epoch time fits."""
    left = args.minutes * 60 - (time.time() - start)
    return min(args.max_epochs, epoch + max(0, int(left // float(np.median(epoch_times)))))


def report(args, torch, log, best, test_logits, truth, patients, classes, start):
    """Write the results JSON (and the test probabilities if asked) and print the test scores."""
    if args.save_test_probs:  # slices in slices.csv's order of the test split
        probs = torch.softmax(test_logits, 1)[:, 1:].sum(1).cpu()
        np.save(args.save_test_probs, probs.numpy().astype(np.float16))
    result = {"args": vars(args), "torch": torch.__version__, "epochs": log, "best_val_dice": best,
              "test": scores(test_logits.argmax(1).cpu(), truth, patients, classes),
              "minutes": (time.time() - start) / 60}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    t = result["test"]
    print(f"test: Dice split {t['dice_split']:.4f}, mean over patients {t['dice_mean_over_patients']:.4f}, "
          f"mean over slices {t['dice_mean_over_slices']:.4f} (best val {best:.4f})")
    if len(classes) > 2:
        print("per class: " + ", ".join(f"{k} {v:.4f}" for k, v in t["dice_per_class"].items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_args(ap)
    ap.add_argument("--max-epochs", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=4, help="poolings (medseg-train's --depth)")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    xtr, ytr, _ = load_split(args.data, "train", torch)
    xva, yva, pva = load_split(args.data, "val", torch)
    xte, yte, pte = load_split(args.data, "test", torch)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # one input shape: pick the fastest kernels once
    autocast = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16)  # noqa: E731
    xtr, ytr, xva, yva, xte = (t.to(dev) for t in (xtr, ytr, xva, yva, xte))
    classes = json.load(open(os.path.join(args.data, "splits.json")))["classes"]
    model = torch_unet(torch, width=args.width, depth=args.depth, classes=len(classes)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = len(xtr) // args.batch
    planned, epoch_times, log = args.max_epochs, [], []
    best, best_state, step, start = -1.0, None, 0, time.time()
    epoch = 0
    while epoch < planned:
        t0 = time.time()
        order = torch.randperm(len(xtr), generator=gen).to(dev)
        losses = []
        for b in range(steps_per_epoch):
            total = planned * steps_per_epoch
            for group in opt.param_groups:
                group["lr"] = args.lr * max(0.0, 1 - step / total) ** 0.9
            ids = order[b * args.batch:(b + 1) * args.batch]
            x, y = augment(xtr[ids].clone(), ytr[ids].clone(), args, torch, F, gen)
            with autocast():
                out = model(x)
            loss = loss_fn(out.float(), y, torch, F)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
            step += 1
        losses = [float(v) for v in losses]  # one sync per epoch, not per step
        train_s = time.time() - t0
        val = selection_dice(predict(model, xva, torch).cpu().numpy(), yva.cpu().numpy(), classes)
        epoch += 1
        epoch_times.append(time.time() - t0)
        if val > best:
            best, best_state = val, {k: v.clone() for k, v in model.state_dict().items()}
        planned = planned_epochs(args, epoch, epoch_times, start)
        log.append({"epoch": epoch, "loss": float(np.mean(losses)), "val_dice": val,
                    "images_per_s": steps_per_epoch * args.batch / train_s, "planned": planned})
        print(json.dumps(log[-1]), flush=True)

    model.load_state_dict(best_state)
    report(args, torch, log, best, logits(model, xte, torch), yte, pte, classes, start)

if __name__ == "__main__":
    main()
