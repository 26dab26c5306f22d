//! medseg-trainer: the training workstation side. Phantom data, loading, augmentation,
//! losses, the Burn training loop and the ONNX exporter. Evaluation uses the runtime's
//! metrics, so training numbers and bedside numbers come from the same code.

pub mod augment;
pub mod backend;
pub mod data;
pub mod derived_domain;
pub mod export;
pub mod generalization;
pub mod import;
pub mod loss_table;
pub mod losses;
pub mod objective;
pub mod panels;
pub mod parallel;
pub mod peak_memory;
pub mod phone;
pub mod plot;
pub mod prefetch;
pub mod pretrain;
pub mod pretrained_backbone;
pub mod sampling;
pub mod scanner_shift;
pub mod source;
pub mod synth;
pub mod train;
pub mod zoo_bench;
