#!/usr/bin/env bash
# The real-MRI runs of docs/REAL_DATA.md on one NVIDIA GPU inside a fixed wall-clock budget.
#
#   benches/real_mri_gpu.sh BIN_DIR VB_DATA LEVELS_DATA RESULTS_DIR MINUTES
#
# BIN_DIR holds medseg-train built with `--features cuda-autotune` (best with
# MEDSEG_KERNEL_CACHE, see kernel_cache.sh: a cache from an earlier run on the same kind of GPU
# spares the first epoch its minutes of kernel tuning) and medseg; VB_DATA and LEVELS_DATA are
# the two imported layouts (see REAL_DATA.md). On a machine that may be reclaimed, point
# RESULTS_DIR at storage that survives: every log is written there as the runs go.
#   vb-geo     binary, whole 224 px images, w32 UNet, rotation/zoom/shift augmentation
#   levels-geo background + L1..L5, as vb-geo
#   vb-plain   (MEDSEG_RUNS="vb-plain ...") vb-geo without the geometric augmentation
# The runs go one after the other (three at once did not add throughput on an H200), each with
# an equal share of MINUTES less a minute for export and scoring. `train --time-budget` fits
# each run's epochs, and its poly schedule, to that share; `--fixed-batch` keeps one tensor
# shape, so the kernels are tuned once. Each run is then exported (tract parity check; its
# Burn scoring runs other batch shapes, so an autotuned build tunes those too) and scored on
# the test subjects with `medseg eval` where BIN_DIR has it.
set -uo pipefail
mkdir -p "$4"
BIN=$(realpath "$1") VB=$(realpath "$2") LEVELS=$(realpath "$3") RES=$(realpath "$4")
MINUTES=$5
T0=$(date +%s)
source "$(realpath "$(dirname "$0")")/kernel_cache.sh"
COMMON=(--image-size 224 --crop-size 0 --base-width "${MEDSEG_WIDTH:-32}" --batch-size 16 --fixed-batch)
# MEDSEG_SMOKE=1: a tiny model on 64 px images, to dry-run this script's plumbing on a CPU.
[[ -n "${MEDSEG_SMOKE:-}" ]] && COMMON=(--image-size 64 --crop-size 0 --base-width 4 --batch-size 16 --fixed-batch)
GEO=(--rotate 10 --zoom 0.15 --shift 0.08 --gamma 0.3)
declare -A DATA=([vb-geo]=$VB [vb-plain]=$VB [levels-geo]=$LEVELS)
declare -A EXTRA=([vb-geo]="${GEO[*]}" [vb-plain]="" [levels-geo]="${GEO[*]}")
read -ra RUNS <<< "${MEDSEG_RUNS:-vb-geo levels-geo}"
SHARE=$(python3 -c "import sys; print(round(max(0.5, float(sys.argv[1]) / int(sys.argv[2]) - 1), 2))" "$MINUTES" "${#RUNS[@]}")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$RES/gpu.txt"

for r in "${RUNS[@]}"; do
  echo "== $r: $SHARE minutes of training"
  # shellcheck disable=SC2086
  "$BIN/medseg-train" train --data "${DATA[$r]}" "${COMMON[@]}" ${EXTRA[$r]} --epochs 500 \
    --time-budget "$SHARE" --max-val-images 0 --out "$RES/runs/$r" > "$RES/train-$r.txt" 2>&1
  tail -3 "$RES/train-$r.txt"
  # The export scores the splits with Burn (its last lines); `medseg eval` adds the runtime's
  # full report where BIN_DIR has it.
  "$BIN/medseg-train" export --run "$RES/runs/$r" --out "$RES/$r.onnx" > "$RES/export-$r.txt" 2>&1 &&
    [[ -x "$BIN/medseg" ]] &&
    "$BIN/medseg" eval --model "$RES/$r.onnx" --data "${DATA[$r]}" --split test --json \
      --overlays "$RES/review-$r" > "$RES/eval-$r.json" 2> "$RES/eval-$r.err" &
done
wait
for r in "${RUNS[@]}"; do
  echo "== $r"; cat "$RES/runs/$r/log.csv"; tail -4 "$RES/export-$r.txt"
  [[ -f "$RES/eval-$r.json" ]] && head -c 1500 "$RES/eval-$r.json"; echo
done
echo "all done at $(( $(date +%s) - T0 )) s"
