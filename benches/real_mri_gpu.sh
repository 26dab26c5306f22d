#!/usr/bin/env bash
# The real-MRI runs of docs/REAL_DATA.md on one NVIDIA GPU inside a fixed wall-clock budget.
#
#   benches/real_mri_gpu.sh BIN_DIR VB_DATA LEVELS_DATA RESULTS_DIR BUDGET_SECONDS
#
# BIN_DIR holds medseg-train built with `--features cuda` (or `cuda-autotune`, best with
# MEDSEG_KERNEL_CACHE, see kernel_cache.sh) and medseg; VB_DATA and LEVELS_DATA
# are the two imported layouts (see REAL_DATA.md). Three runs share the GPU at once, in case
# one leaves it idle (on the H200 with burn-cuda 0.21 they did not add throughput: the kernels
# are the bottleneck, REAL_DATA.md's GPU section). On a machine that may be reclaimed, point
# RESULTS_DIR at storage that survives: every log is written there as the runs go.
#   vb-geo     binary, whole 224 px images, w32 UNet, rotation/zoom/shift augmentation
#   vb-plain   the same without the geometric augmentation (what the augmentation adds)
#   levels-geo background + L1..L5, as vb-geo
# A short probe first measures each run's images/s, so the epoch count (and with it the poly
# learning-rate schedule) fits the budget instead of being cut off mid-schedule. Each run is
# then exported (tract parity check) and scored on the test subjects with `medseg eval`.
set -uo pipefail
BUDGET=$5
mkdir -p "$4"
BIN=$(realpath "$1") VB=$(realpath "$2") LEVELS=$(realpath "$3") RES=$(realpath "$4")
T0=$(date +%s)
source "$(realpath "$(dirname "$0")")/kernel_cache.sh"
COMMON=(--image-size 224 --crop-size 0 --base-width 32 --batch-size 16)
# MEDSEG_SMOKE=1: a tiny model on 64 px images, to dry-run this script's plumbing on a CPU.
[[ -n "${MEDSEG_SMOKE:-}" ]] && COMMON=(--image-size 64 --crop-size 0 --base-width 4 --batch-size 16)
GEO=(--rotate 15 --zoom 0.15 --shift 0.08)
declare -A DATA=([vb-geo]=$VB [vb-plain]=$VB [levels-geo]=$LEVELS)
declare -A EXTRA=([vb-geo]="${GEO[*]}" [vb-plain]="" [levels-geo]="${GEO[*]}")
# MEDSEG_RUNS="vb-geo": a subset, when the budget is short.
read -ra RUNS <<< "${MEDSEG_RUNS:-vb-geo vb-plain levels-geo}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$RES/gpu.txt"

echo "== probe: 2 short epochs each, all three at once"
rm -rf /tmp/probe-*
for r in "${RUNS[@]}"; do
  # shellcheck disable=SC2086
  "$BIN/medseg-train" train --data "${DATA[$r]}" "${COMMON[@]}" ${EXTRA[$r]} --epochs 2 \
    --max-steps-per-epoch 12 --max-val-images 16 --out "/tmp/probe-$r" > "$RES/probe-$r.txt" 2>&1 &
done
wait
T1=$(date +%s)
echo "probe took $((T1 - T0)) s"
TRAIN_N=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['domains']['default']['train']; print(sum(map(len,d.values())))" "$VB/splits.json")
# Seconds left for training: the budget less the probe, 60 s for export + eval, and the
# first epoch's kernel compilation (the probe's first epoch minus its second, roughly).
LEFT=$((BUDGET - (T1 - T0) - 60))
declare -A EPOCHS
for r in "${RUNS[@]}"; do
  ips=$(awk -F, 'NR==3 {print $7}' "/tmp/probe-$r/log.csv")
  jit=$(awk -F, 'NR==2 {a=$6} NR==3 {b=$6} END {print (a>b ? a-b : 0)}' "/tmp/probe-$r/log.csv")
  # Validation on the whole val split costs about a quarter of a training pass.
  EPOCHS[$r]=$(python3 -c "import sys; ips,jit,left,n=map(float,sys.argv[1:]); print(max(2,int((left-jit)*ips/(n*1.25))))" "${ips:-1}" "${jit:-0}" "$LEFT" "$TRAIN_N")
  echo "$r: $ips img/s in the probe, first-epoch overhead ${jit}s -> ${EPOCHS[$r]} epochs" | tee -a "$RES/plan.txt"
done

echo "== training"
for r in "${RUNS[@]}"; do
  # shellcheck disable=SC2086
  timeout $((LEFT + 30)) "$BIN/medseg-train" train --data "${DATA[$r]}" "${COMMON[@]}" ${EXTRA[$r]} \
    --epochs "${EPOCHS[$r]}" --max-val-images 0 --out "$RES/runs/$r" > "$RES/train-$r.txt" 2>&1 &
done
wait
echo "training done at $(( $(date +%s) - T0 )) s"

echo "== export and test-split scores (tract)"
for r in "${RUNS[@]}"; do
  "$BIN/medseg-train" export --run "$RES/runs/$r" --out "$RES/$r.onnx" > "$RES/export-$r.txt" 2>&1 &&
    "$BIN/medseg" eval --model "$RES/$r.onnx" --data "${DATA[$r]}" --split test --json \
      --overlays "$RES/review-$r" > "$RES/eval-$r.json" 2> "$RES/eval-$r.err" &
done
wait
for r in "${RUNS[@]}"; do echo "== $r"; tail -4 "$RES/train-$r.txt"; head -c 1500 "$RES/eval-$r.json"; echo; done
echo "all done at $(( $(date +%s) - T0 )) s"
