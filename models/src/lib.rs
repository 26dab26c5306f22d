//! medseg-models: segmentation architectures for Burn.
//!
//! Every architecture is composed of blocks from [`blocks`]; every block can describe itself
//! in the backend-neutral export graph of [`graph`], so a new architecture gets ONNX export
//! for free. The backend is a type parameter: the binary that trains or exports picks it.

pub mod blocks;
pub mod graph;
pub mod registry;
pub mod unet;

pub use graph::{Graph, Node, Op, ValueId};
pub use registry::{Architecture, ArchitectureError, SegModel};
pub use unet::{UNet, UNetConfig, Upsampling};
