#!/usr/bin/env bash
# The 3D twin (reference_training_3d.py) on one GPU: does a model that sees each subject's
# whole stack of slices get past the 2D models' Dice 0.85 on the real MRI? Three runs share
# the GPU for MINUTES of training each, then score their best validation epoch on the test
# slices (docs/REAL_DATA.md, "In 3D: the whole stack at once").
#
#   benches/reference_gpu_3d.sh VB_DATA LEVELS_DATA RESULTS_DIR MINUTES
#
#   vb3d-w32  binary, width 32     vb3d-w16  binary, width 16     levels3d-w32  L1..L5, width 32
# Logs go to RESULTS_DIR as the runs go; the binary runs also leave their test probabilities
# there as uint8 (x255) .npz in slices.csv's order of the test split.
# DEVICE=cpu and REF_EXTRA="--max-epochs 1 --width 2" dry-run the plumbing.
set -uo pipefail
VB=$1 LEVELS=$2 RES=$3 MINUTES=$4
HERE=$(dirname "$(realpath "$0")")
mkdir -p "$RES"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$RES/gpu.txt" 2>&1
export PYTHONUNBUFFERED=1
declare -A DATA=([vb3d-w32]=$VB [vb3d-w16]=$VB [levels3d-w32]=$LEVELS)
declare -A ARGS=([vb3d-w32]="--width 32" [vb3d-w16]="--width 16" [levels3d-w32]="--width 32")
RUNS=(vb3d-w32 vb3d-w16 levels3d-w32)
for r in "${RUNS[@]}"; do
  probs=()
  [[ $r == vb* ]] && probs=(--save-test-probs "$RES/$r.npy")
  # shellcheck disable=SC2086
  python3 "$HERE/reference_training_3d.py" --data "${DATA[$r]}" --device "${DEVICE:-cuda}" --bf16 \
    --threads 4 --minutes "$MINUTES" ${ARGS[$r]} ${REF_EXTRA:-} "${probs[@]}" --out "$RES/$r.json" \
    > "$RES/$r.log" 2>&1 &
done
wait
for f in "$RES"/*.npy; do
  [[ -f $f ]] && python3 -c "import numpy as np, sys; p = np.load(sys.argv[1]); \
np.savez_compressed(sys.argv[1][:-4] + '.npz', probs=np.round(p.astype(np.float32) * 255).astype(np.uint8))" "$f" \
    && rm "$f"
done
nvidia-smi --query-gpu=memory.used --format=csv,noheader >> "$RES/gpu.txt" 2>&1
for r in "${RUNS[@]}"; do
  echo "== $r: $(grep -c '"epoch"' "$RES/$r.log") epochs"; tail -n 3 "$RES/$r.log"
done
