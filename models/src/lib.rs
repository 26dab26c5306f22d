//! medseg-models: segmentation architectures for Burn.
//!
//! Every network is written once, in [`ops`]' vocabulary: run with [`burn_ops::BurnOps`] it
//! trains, run with [`graph_ops::GraphOps`] it records the export graph ([`graph`]). An
//! architecture is one file plus one line in the [`registry`] table. The backend is a type
//! parameter: the binary that trains or exports picks it.

pub mod backbones;
pub mod blocks;
pub mod burn_ops;
pub mod graph;
pub mod graph_ops;
pub mod natural;
pub mod network;
pub mod ops;
// ZooNet allows one large variant; its derived record enum (ZooNetRecord), which the allow
// on ZooNet does not reach, has the same variants.
#[allow(clippy::large_enum_variant)]
pub mod registry;
pub mod setr;
pub mod stn;
pub mod transunet;
pub mod unet_family;
pub mod vit_seg;

pub use graph::{Graph, Node, Op, ValueId};
pub use network::{ArchConfig, Aux, AuxKind, Network, SegOutput};
pub use registry::{Architecture, ArchitectureError, Entry, SegModel, ZooConfig, ZooNet};
pub use stn::StnConfig;
pub use unet_family::unet::{UNet, UNetConfig, Upsampling};
