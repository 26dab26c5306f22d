#!/usr/bin/env bash
# The PyTorch twin of medseg's UNet (reference_training.py) trained on one GPU for as many epochs
# as MINUTES allow: what this network and recipe reach on the real MRI when compute is not the
# limit (docs/REAL_DATA.md, "The PyTorch twin for 50 to 91 epochs").
#
#   benches/reference_gpu.sh VB_DATA LEVELS_DATA RESULTS_DIR MINUTES
#
# VB_DATA and LEVELS_DATA are the two imported layouts of docs/REAL_DATA.md. Four runs share the
# GPU at once, each for MINUTES of training with bf16 autocast, then score their best validation
# epoch on the test split. At batch 8 Python's kernel launches bound the speed: on an H200 the
# four together ran 600 images/s, the w16 one alone 502.
#   vb-w16     binary, the default width        vb-w32   binary, width 32
#   vb-w32-d5  binary, width 32, five poolings  levels-w32  background + L1..L5, width 32
# Every log goes to RESULTS_DIR as the runs go; the binary runs also leave their test
# probabilities there as uint8 (x255) .npz, in slices.csv's order of the test split.
# DEVICE=cpu and REF_EXTRA="--max-epochs 1 --width 4" dry-run the plumbing on a small import.
set -uo pipefail
VB=$1 LEVELS=$2 RES=$3 MINUTES=$4
HERE=$(dirname "$(realpath "$0")")
mkdir -p "$RES"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$RES/gpu.txt" 2>&1
export PYTHONUNBUFFERED=1
declare -A DATA=([vb-w16]=$VB [vb-w32]=$VB [vb-w32-d5]=$VB [levels-w32]=$LEVELS)
declare -A ARGS=([vb-w16]="--width 16" [vb-w32]="--width 32" [vb-w32-d5]="--width 32 --depth 5"
                 [levels-w32]="--width 32")
for r in vb-w16 vb-w32 vb-w32-d5 levels-w32; do
  probs=()
  [[ $r == vb-* ]] && probs=(--save-test-probs "$RES/$r.npy")
  # shellcheck disable=SC2086
  python3 "$HERE/reference_training.py" --data "${DATA[$r]}" --device "${DEVICE:-cuda}" --bf16 \
    --threads 3 --minutes "$MINUTES" ${ARGS[$r]} ${REF_EXTRA:-} "${probs[@]}" --out "$RES/$r.json" \
    > "$RES/$r.log" 2>&1 &
done
wait
for f in "$RES"/*.npy; do  # float16 is 27 MB a run; uint8 and compressed is a fraction of it
  [[ -f $f ]] && python3 -c "import numpy as np, sys; p = np.load(sys.argv[1]); \
np.savez_compressed(sys.argv[1][:-4] + '.npz', probs=np.round(p.astype(np.float32) * 255).astype(np.uint8))" "$f" \
    && rm "$f"
done
for r in vb-w16 vb-w32 vb-w32-d5 levels-w32; do
  echo "== $r: $(grep -c '"epoch"' "$RES/$r.log") epochs"; tail -n 3 "$RES/$r.log"
done
