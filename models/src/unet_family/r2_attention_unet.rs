//! R2AttU-Net: R2U-Net (Alom et al., 2018) with the additive attention gates of Attention
//! U-Net (Oktay et al., MIDL 2018) on its skip connections, as JMedSeg's `r2att`
//! (model/R2UNet.py, `R2AttentionUNet`).
//!
//! The encoder and decoder are R2U-Net's ([`super::r2_unet`]: recurrent residual blocks,
//! `t = 3`, InstanceNorm); in each decoder stage the up-sampled features gate the skip
//! (inner width half the skip's) before the concatenation `[gated skip, up-sampled]`.
//! 39.43 M learned parameters with 3 input channels and 2 classes, as JMedSeg states.
//!
//! Departure from JMedSeg: the gates are medseg's shared [`AttentionGate`] (the one attunet
//! uses), whose 1x1 convolutions are followed by BatchNorm where JMedSeg's R2AttU-Net gates
//! use InstanceNorm; one gate implementation for every gated member, and BatchNorm folds into
//! the convolutions on export (same parameter count). The paper-level departures (`t = 3`,
//! InstanceNorm in the recurrent units) are R2U-Net's, documented there.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::Head;
use crate::blocks::attention_gate::AttentionGate;
use crate::blocks::recurrent::{ConvInRelu, RecurrentResidualBlock};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;
use crate::unet_family::r2_unet::{R2Encoder, up_conv, validate_r2};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R2AttUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage (64); each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
    /// Recurrent steps `t` of each recurrent convolution (JMedSeg 3, the paper 2).
    pub recurrence: usize,
}

impl Default for R2AttUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            depth: 4,
            recurrence: 3,
        }
    }
}

/// One decoder stage: up-convolution, gate on the skip, concatenation, recurrent block.
#[derive(Module, Debug)]
pub struct R2AttUpStage<B: Backend> {
    pub up: ConvInRelu<B>,
    pub gate: AttentionGate<B>,
    pub conv: RecurrentResidualBlock<B>,
}

#[derive(Module, Debug)]
pub struct R2AttUNet<B: Backend> {
    pub encoder: R2Encoder<B>,
    pub up: Vec<R2AttUpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for R2AttUNetConfig {
    type Model<B: Backend> = R2AttUNet<B>;
    const NAME: &'static str = "r2attunet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Alom et al., Recurrent Residual Convolutional Neural Network \
        based on U-Net (R2U-Net) for Medical Image Segmentation, arXiv:1802.06955, 2018; with \
        the attention gates of Oktay et al., Attention U-Net: Learning Where to Look for the \
        Pancreas, MIDL 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        validate_r2(self.base_width, self.depth, self.recurrence)
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 2);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            depth: 3,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> R2AttUNet<B> {
        let width = |level: usize| self.base_width << level;
        let t = self.recurrence;
        let up = (0..self.depth)
            .rev()
            .map(|l| {
                let skip = width(l);
                R2AttUpStage {
                    up: ConvInRelu::new(width(l + 1), skip, device),
                    gate: AttentionGate::new(skip, skip, (skip / 2).max(1), device),
                    conv: RecurrentResidualBlock::new(2 * skip, skip, t, device),
                }
            })
            .collect();
        R2AttUNet {
            encoder: R2Encoder::new(self.in_channels, self.base_width, self.depth, t, device),
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for R2AttUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = self.encoder.run(o, x);
        let mut x = skips.pop().expect("bottleneck");
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let up = up_conv(o, &stage.up, x);
                let gated = stage.gate.run(o, up.clone(), skip);
                let cat = o.concat(vec![gated, up], 1);
                stage.conv.run(o, cat)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// JMedSeg's R2AttentionUNet (3 input channels, 2 classes) has 39,427,366 parameters;
    /// the BatchNorms of medseg's gates add 2 per gate channel (folded away on export).
    #[test]
    fn default_has_jmedseg_parameter_count() {
        let mut c = R2AttUNetConfig::default();
        c.set_io(3, 2);
        let n = c.init::<Flex>(&Default::default()).num_params() as f64;
        assert!((n / 39_427_366.0 - 1.0).abs() < 0.10, "{n}");
    }
}
