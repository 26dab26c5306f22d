"""PyTorch peer for a UNet training step on a GPU: the same UNet as compare_unet.py, fp32,
0.5 CE + 0.5 Dice, Adam; prints images/s (median step over --steps after warm-up) as JSON.

    python3 benches/gpu_train_step.py --width 32 --size 224 --batch 16
"""
import argparse
import json
import time

import torch

from compare_unet import median, torch_unet


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = torch_unet(torch, width=args.width).cuda().train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 1, args.size, args.size, device="cuda")
    y = torch.rand(args.batch, 2, args.size, args.size, device="cuda")
    times = []
    for i in range(args.steps + 3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        logits = model(x)
        ce = -(y * torch.log_softmax(logits, 1)).sum(1).mean()
        p, g = torch.softmax(logits, 1)[:, 1:], y[:, 1:]
        dice = 1 - ((2 * (p * g).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + g.sum((0, 2, 3)) + 1)).mean()
        loss = 0.5 * ce + 0.5 * dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    step = median(times)
    print(json.dumps({"peer": "pytorch", "width": args.width, "size": args.size, "batch": args.batch,
                      "step_s": step, "images_per_s": args.batch / step}))


if __name__ == "__main__":
    main()
