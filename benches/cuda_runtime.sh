#!/usr/bin/env bash
# The bedside runtime's CUDA path (tract-cuda): does `medseg --device cuda` give the CPU's
# masks, and how fast is it, for the plain export and for `export --target cuda` (pooling,
# transposed convolutions and resizes in operators tract-cuda runs on the GPU).
#
#   benches/cuda_runtime.sh prepare [DIR]      # any machine: a short UNet run, exported both ways
#   benches/cuda_runtime.sh run [DIR] [LOG]    # the GPU machine: build with --features cuda, compare, time
#
# DIR defaults to target/cuda-bench (carry it to the GPU machine: two ONNX files and a few
# test slices, ~3 MB); LOG (default DIR/cuda_runtime.log) gets every line as it is written, so
# a run cut short still leaves what it measured. `medseg bench --device cuda` loads the model
# on the CPU too and prints how far the GPU's logits and masks are from the CPU's.
set -uo pipefail
cd "$(dirname "$0")/.."
step=${1:-}
DIR=${2:-target/cuda-bench}
case "$step" in
prepare)
  set -e
  cargo build --release -p medseg-trainer --bin medseg-train
  B=target/release
  mkdir -p "$DIR"
  rm -rf "$DIR/phantom" "$DIR/run"
  $B/medseg-train synth --out "$DIR/phantom" --scale 0.05
  $B/medseg-train train --data "$DIR/phantom" --epochs 1 --max-steps-per-epoch 30 --out "$DIR/run"
  $B/medseg-train export --run "$DIR/run" --out "$DIR/unet.onnx" --no-eval --force
  $B/medseg-train export --run "$DIR/run" --out "$DIR/unet-cuda.onnx" --target cuda --no-eval --force
  mkdir -p "$DIR/slices"
  find "$DIR/phantom" -path '*test*' -name '*.png' -not -path '*mask*' | sort | head -8 |
    xargs -I{} cp {} "$DIR/slices/"
  rm -rf "$DIR/phantom" "$DIR/run"
  ls -l "$DIR" "$DIR/slices"
  ;;
run)
  LOG=${3:-$DIR/cuda_runtime.log}
  mkdir -p "$(dirname "$LOG")"
  exec > >(tee -a "$LOG") 2>&1
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
  lscpu | grep -E 'Model name|^CPU\(s\)'
  cargo build --release -p medseg-runtime --features cuda --bin medseg || exit 1
  M=target/release/medseg
  for model in unet unet-cuda; do
    for device in cpu cuda; do
      echo "== $model on the $device"
      timeout 240 $M bench --model "$DIR/$model.onnx" --device "$device" --runs 20 --loads 3 \
        --cold-starts 3 --json "$DIR/bench-$model-$device.json" "$DIR"/slices/*.png
      echo "(exit $?)"
    done
    echo "== $model on the cuda, per operator (what stayed on the CPU shows as non-Cuda ops)"
    timeout 120 $M bench --model "$DIR/$model.onnx" --device cuda --runs 3 --loads 1 --cold-starts 0 \
      --profile "$DIR"/slices/*.png | tail -40
  done
  ;;
*)
  echo "usage: $0 prepare|run [DIR] [LOG]" >&2
  exit 2
  ;;
esac
