//! Where tract runs a model: the CPU, or an NVIDIA GPU through tract-cuda (cargo feature
//! `cuda`, for Jetson boards and workstations).
//!
//! tract-cuda translates what it can of the graph into GPU kernels and leaves the
//! rest on the CPU, with copies between them; `medseg-train export --target cuda` writes the
//! operators it cannot translate (pooling, transposed convolutions, resizes) in forms it can.
//! Its CUDA libraries (driver, cuBLAS, cuDNN, NVRTC) are opened at run time, so a `cuda` build
//! starts on a machine without a GPU and says so when asked for one.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

/// Where the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Device {
    /// tract on the CPU (every core by default).
    #[default]
    Cpu,
    /// An NVIDIA GPU through tract-cuda (a build with the `cuda` feature, and the CUDA
    /// driver, cuBLAS and cuDNN at run time).
    Cuda,
}

/// tract's optimized plan, wherever it runs.
pub type Plan = Arc<TypedRunnableModel>;

/// Why `--device cuda` cannot be used here, naming the way back to the CPU; None when it can.
pub fn cuda_unavailable() -> Option<String> {
    cuda::check()
        .err()
        .map(|why| format!("{why}; run on the CPU instead (--device cpu, the default)"))
}

/// Optimizes `model` for `device` and makes its plan (`cuda_unavailable` checked first).
pub fn prepare(model: TypedModel, device: Device, options: &RunOptions) -> TractResult<Plan> {
    match device {
        Device::Cpu => model.into_optimized()?.into_runnable_with_options(options),
        Device::Cuda => cuda::prepare(model, options),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use tract_onnx::tract_core::runtime::{Runtime, runtime_for_name};

    fn runtime() -> Result<&'static dyn Runtime, String> {
        // tract-cuda registers its runtime by link-time inventory: naming one of its items
        // keeps the crate linked.
        std::hint::black_box(&tract_cuda::CudaTransform);
        // tract's lookup also checks that the GPU's libraries load.
        runtime_for_name("cuda")
            .map_err(|e| format!("no usable CUDA GPU: {e:#}"))?
            .ok_or_else(|| "tract-cuda's runtime is not registered in this build".to_string())
    }

    pub fn check() -> Result<(), String> {
        let rt = runtime()?;
        // A machine without a GPU or its libraries fails here (tract-cuda dlopens them).
        crate::panic_guard::guarded(|| rt.check()).map_err(|e| format!("no usable CUDA GPU: {e:#}"))
    }

    pub fn prepare(model: TypedModel, options: &RunOptions) -> TractResult<Plan> {
        let rt = runtime().map_err(|e| anyhow::anyhow!(e))?;
        // tract-cuda translates the decluttered graph, then optimizes what stays on the CPU.
        let runnable = rt.prepare_with_options(model.into_decluttered()?, options)?;
        runnable
            .typed_plan()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("tract-cuda made no typed plan"))
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::*;

    pub fn check() -> Result<(), String> {
        Err(
            "this medseg was built without the `cuda` feature (cargo build --release -p \
             medseg-runtime --features cuda)"
                .into(),
        )
    }

    pub fn prepare(_: TypedModel, _: &RunOptions) -> TractResult<Plan> {
        anyhow::bail!("{}", check().unwrap_err())
    }
}
