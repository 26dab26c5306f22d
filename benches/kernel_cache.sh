# Sourced by the GPU benches (needs absolute paths in the caller: it changes directory).
#
# burn-cuda compiles its kernels at run time, and a `--features cuda-autotune` build also
# compiles and times candidate kernels for every new tensor shape: on a fresh H200 that took
# more than 260 s before a w32 UNet's first 12 training steps were done (docs/REAL_DATA.md).
# With MEDSEG_KERNEL_CACHE=DIR, cubecl keeps the autotune choices and the compiled kernels in
# DIR (checked on the H200: autotune/ and cuda/.../ptx/ appear there), so that later runs, or
# a later machine that is handed DIR, can skip that work (how much they skip is not measured
# yet: docs/REAL_DATA.md, GPU). cubecl reads cubecl.toml from the working
# directory or its parents, hence the cd.
if [[ -n "${MEDSEG_KERNEL_CACHE:-}" ]]; then
  mkdir -p "$MEDSEG_KERNEL_CACHE"
  MEDSEG_KERNEL_CACHE=$(realpath "$MEDSEG_KERNEL_CACHE")
  printf '[autotune]\ncache = { file = "%s" }\n[compilation]\ncache = { file = "%s" }\n' \
    "$MEDSEG_KERNEL_CACHE" "$MEDSEG_KERNEL_CACHE" > "$MEDSEG_KERNEL_CACHE/cubecl.toml"
  cd "$MEDSEG_KERNEL_CACHE" || exit 1
  echo "kernel cache: $MEDSEG_KERNEL_CACHE"
fi
