//! The model zoo's front door: an architecture description (serialized in checkpoints and
//! model cards) and [`SegModel`], the one module type the trainer and exporter handle.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::graph::Graph;
use crate::unet::{UNet, UNetConfig};

#[derive(Debug, thiserror::Error)]
pub enum ArchitectureError {
    #[error("unknown architecture '{0}'; available: {available}", available = Architecture::NAMES.join(", "))]
    Unknown(String),
    #[error("invalid {arch} setting: {reason}")]
    Invalid { arch: &'static str, reason: String },
}

/// Which network and how it is shaped; stored in checkpoints and in the model card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Architecture {
    Unet(UNetConfig),
}

impl Architecture {
    pub const NAMES: &'static [&'static str] = &["unet"];

    /// The default configuration of the named architecture.
    pub fn by_name(
        name: &str,
        in_channels: usize,
        num_classes: usize,
    ) -> Result<Self, ArchitectureError> {
        match name.to_ascii_lowercase().as_str() {
            "unet" => Ok(Self::Unet(UNetConfig {
                in_channels,
                num_classes,
                ..UNetConfig::default()
            })),
            other => Err(ArchitectureError::Unknown(other.to_string())),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Unet(_) => "unet",
        }
    }

    pub fn in_channels(&self) -> usize {
        match self {
            Self::Unet(c) => c.in_channels,
        }
    }

    pub fn num_classes(&self) -> usize {
        match self {
            Self::Unet(c) => c.num_classes,
        }
    }

    /// Input sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match self {
            Self::Unet(c) => 1 << c.depth,
        }
    }

    pub fn validate(&self) -> Result<(), ArchitectureError> {
        match self {
            Self::Unet(c) => {
                let bad = |reason: &str| ArchitectureError::Invalid {
                    arch: "unet",
                    reason: reason.to_string(),
                };
                if c.in_channels == 0 || c.num_classes < 2 {
                    return Err(bad("needs at least 1 input channel and 2 classes"));
                }
                if c.base_width == 0 || c.depth == 0 || c.depth > 6 {
                    return Err(bad("base width must be > 0 and depth within 1..=6"));
                }
                Ok(())
            }
        }
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<SegModel<B>, ArchitectureError> {
        self.validate()?;
        Ok(match self {
            Self::Unet(c) => SegModel::Unet(c.init(device)),
        })
    }
}

/// Any architecture of the zoo, as one Burn module.
#[derive(Module, Debug)]
pub enum SegModel<B: Backend> {
    Unet(UNet<B>),
}

impl<B: Backend> SegModel<B> {
    /// Logits `[batch, classes, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Unet(m) => m.forward(x),
        }
    }

    /// The inference graph (BatchNorm folded) computing [`Self::forward`] in eval mode.
    pub fn export(&self) -> Graph {
        let mut g = Graph::new();
        let input = g.input;
        let out = match self {
            Self::Unet(m) => m.export(&mut g, input),
        };
        g.output = Some(out);
        g
    }
}
