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

    /// The same architecture reading `channels` input channels.
    pub fn with_in_channels(&self, channels: usize) -> Self {
        match self {
            Self::Unet(c) => Self::Unet(UNetConfig {
                in_channels: channels,
                ..c.clone()
            }),
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

    /// A model trained on single slices, widened to read `channels` stacked neighbouring slices
    /// (the slice itself in the centre channel); it starts out computing exactly what it did.
    pub fn widen_input(self, channels: usize) -> Result<Self, ArchitectureError> {
        let invalid = |reason| ArchitectureError::Invalid {
            arch: "unet",
            reason,
        };
        Ok(match self {
            Self::Unet(m) => Self::Unet(m.widen_input(channels).map_err(invalid)?),
        })
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

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tolerance};

    use super::*;

    fn small_unet(in_channels: usize) -> Architecture {
        Architecture::Unet(UNetConfig {
            in_channels,
            num_classes: 2,
            base_width: 4,
            depth: 2,
            ..UNetConfig::default()
        })
    }

    /// On the training backend, as `train --init-from` uses it: the widened weight must be a
    /// trainable leaf, and the model must start out computing what the old one did.
    #[test]
    fn a_widened_model_computes_the_old_one_on_its_centre_channel() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let old = small_unet(1).init::<A>(&dev).unwrap();
        let x = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let before = old.forward(x.clone());
        let wide = old.widen_input(3).unwrap();
        // Whatever the neighbours hold, only the centre channel counts at first.
        let prev = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let next = Tensor::<A, 4>::random([2, 1, 16, 16], Distribution::Default, &dev);
        let after = wide.forward(Tensor::cat(vec![prev, x, next], 1));
        after
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&before.into_data(), Tolerance::absolute(1e-6));
        // The neighbours' zero weights get gradients, so they can learn.
        let grads = after.sum().backward();
        let SegModel::Unet(unet) = &wide;
        let grad = unet
            .stem
            .first
            .conv
            .weight
            .grad(&grads)
            .expect("a trainable weight");
        let [out_ch, in_ch, k, _] = grad.dims();
        assert_eq!(in_ch, 3);
        let previous = grad.slice([0..out_ch, 0..1, 0..k, 0..k]).abs().sum();
        assert!(previous.into_scalar() > 0.0);
    }

    #[test]
    fn only_a_single_channel_input_widens_to_an_odd_count() {
        let dev = Default::default();
        let err = small_unet(1)
            .init::<Flex>(&dev)
            .unwrap()
            .widen_input(2)
            .unwrap_err();
        assert!(err.to_string().contains("1 to 2"), "{err}");
        let three = small_unet(3).init::<Flex>(&dev).unwrap();
        assert!(three.widen_input(5).is_err());
    }
}
