#!/usr/bin/env bash
# UNet training throughput on one NVIDIA GPU: medseg-train on each backend given against
# PyTorch, same UNet, same 224 px whole images, batch 16, fp32, one process at a time, in one
# run. Prints images/s and the ratio per width and backend.
#
#   benches/gpu_train_step.sh DATA BIN_DIR [BIN_DIR ...]
#
# Each BIN_DIR holds a medseg-train built with `--features cuda`, `cuda-autotune` or `tch`
# (LibTorch takes the first CUDA device it sees; docs/TRAINING_SPEED.md), e.g.
# target/cuda/release target/tch/release from `--target-dir` builds. DATA is any imported layout
# with 224 px images (the real-MRI folder of REAL_DATA.md was used).
# MEDSEG_KERNEL_CACHE=DIR keeps burn-cuda's compiled kernels and autotune choices (kernel_cache.sh).
set -uo pipefail
DATA=$(realpath "$1")
shift
here=$(realpath "$(dirname "$0")")
source "$here/kernel_cache.sh"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for w in 16 32; do
  peer=$(cd "$here" && python3 gpu_train_step.py --width "$w" | python3 -c "import json,sys; print(round(json.load(sys.stdin)['images_per_s'], 1))")
  for bin in "$@"; do
    out="/tmp/step-w$w"
    rm -rf "$out"
    # Epoch 1 pays the kernel compilation; epoch 2's images/s (log.csv column 7) is the rate.
    "$(realpath "$bin")/medseg-train" train --data "$DATA" --image-size 224 --crop-size 0 --base-width "$w" \
      --batch-size 16 --fixed-batch --epochs 2 --max-steps-per-epoch 8 --max-val-images 8 --out "$out" >/dev/null 2>&1
    ours=$(awk -F, 'NR==3 {print $7}' "$out/log.csv" 2>/dev/null)
    backend=$(python3 -c "import json; print(json.load(open('$out/run.json')).get('backend', '?'))" 2>/dev/null)
    echo "w$w 224px batch 16: medseg (${backend:-$bin}) ${ours:-failed} img/s, PyTorch $peer img/s, ratio $(python3 -c "print(round($peer/${ours:-0.0001}, 1))")"
  done
done
