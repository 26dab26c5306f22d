#!/usr/bin/env bash
# Rebuilds the model and sample slices that `medseg demo` embeds (runtime/assets/demo/).
# Reproducible: fixed seeds; the default training run takes ~30 minutes on a 2-core CPU.
#   scripts/make-demo-model.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/target/demo-build}
assets=$root/runtime/assets/demo
mkdir -p "$work" "$assets/samples"
cargo build --release --manifest-path "$root/Cargo.toml" -p medseg-trainer
train=$root/target/release/medseg-train
[ -f "$work/phantom/splits.json" ] || "$train" synth --out "$work/phantom" --seed 42
[ -f "$work/run/best.bin" ] || "$train" train --data "$work/phantom" --model unet --out "$work/run" --seed 42
# int8 weights keep the embedded model under 2 MB; export scores it on every test split.
"$train" export --run "$work/run" --out "$assets/model.onnx" --weights int8 --force
for name in xh_test_p000_s003 xh_test_p001_s008 zs-big_test_p001_s002 zs-small_test_p002_s002; do
  cp "$work/phantom/images/$name.png" "$assets/samples/$name.png"
  cp "$work/phantom/masks/$name.png" "$assets/samples/${name}_mask.png"
done
ls -la "$assets" "$assets/samples"
