//! medseg-runtime: what ships to the bedside device. tract inference configured by the model
//! card, image decoding, pre/post-processing, and the metrics the trainer also uses.
//! No training framework may enter this crate's dependency tree.

pub mod bit_depth;
pub mod card;
pub mod cleanup;
pub mod dataset;
#[cfg(feature = "demo")]
pub mod demo;
pub mod device;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod image_io;
pub mod logging;
pub mod measure;
pub mod medical;
pub mod metrics;
pub mod onnx;
pub mod outputs;
pub mod package;
pub mod panic_guard;
pub mod postprocess;
pub mod preprocess;
pub mod quality;
pub mod review;
#[cfg(feature = "serve")]
pub mod serve;
pub mod slice_table;

pub use card::{CalibrationInfo, InputSpec, ModelCard};
pub use cleanup::Cleanup;
pub use device::Device;
pub use engine::{LoadOptions, NodeTime, Segmentation, Segmenter};
pub use error::RuntimeError;
