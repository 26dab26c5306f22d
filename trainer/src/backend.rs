//! The Burn backend, chosen once for the whole binary: `flex` on the CPU by default (measured
//! fastest of Burn's pure-Rust CPU backends here), burn-cuda with the `cuda` feature, LibTorch
//! (PyTorch's own kernels, CPU or CUDA) with the `tch` feature. Speeds: docs/TRAINING_SPEED.md.

#[cfg(all(feature = "cuda", feature = "tch"))]
compile_error!("features `cuda` and `tch` each choose the training backend: enable one of them");

#[cfg(not(any(feature = "cuda", feature = "tch")))]
pub type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda;
#[cfg(feature = "tch")]
pub type Inner = burn::backend::LibTorch;

/// The training backend (with automatic differentiation).
pub type Train = burn::backend::Autodiff<Inner>;

/// Recorded in run.json, so that speeds from differently built binaries are not compared.
pub const NAME: &str = if cfg!(feature = "cuda-autotune") {
    "cuda-autotune"
} else if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "tch") {
    "tch"
} else {
    "flex"
};

#[cfg(not(feature = "tch"))]
pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}

/// LibTorch's first CUDA device when it sees one (a workstation), else its CPU.
/// `MEDSEG_TCH_DEVICE=cpu` keeps a GPU machine on the CPU (for side-by-side timings).
#[cfg(feature = "tch")]
pub fn device() -> burn::tensor::Device<Inner> {
    use burn::backend::libtorch::LibTorchDevice;
    let forced_cpu = std::env::var("MEDSEG_TCH_DEVICE").is_ok_and(|v| v == "cpu");
    if !forced_cpu && tch::Cuda::is_available() {
        LibTorchDevice::Cuda(0)
    } else {
        LibTorchDevice::Cpu
    }
}
