//! The Burn backend, chosen once for the whole binary: `flex` on the CPU by default (measured
//! fastest of Burn's CPU backends here), burn-cuda with the `cuda` feature.

#[cfg(not(feature = "cuda"))]
pub type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
pub type Inner = burn::backend::Cuda;

/// The training backend (with automatic differentiation).
pub type Train = burn::backend::Autodiff<Inner>;

/// Recorded in run.json, so that speeds from differently built binaries are not compared.
pub const NAME: &str = if cfg!(feature = "cuda-autotune") {
    "cuda-autotune"
} else if cfg!(feature = "cuda") {
    "cuda"
} else {
    "flex"
};

pub fn device() -> burn::tensor::Device<Inner> {
    Default::default()
}
