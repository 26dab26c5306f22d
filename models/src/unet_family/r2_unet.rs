//! R2U-Net (Alom et al., 2018): a UNet whose stages are recurrent residual convolutional
//! blocks (see [`crate::blocks::recurrent`]) instead of double convolutions.
//!
//! As JMedSeg's `r2` (model/R2UNet.py): widths 64..1024 over four 2x max-poolings, each stage
//! a recurrent residual block (1x1 projection, two recurrent 3x3 layers sharing their weights
//! across `t` steps, residual sum); each decoder stage up-samples (nearest 2x, then 3x3 conv,
//! InstanceNorm, ReLU to the skip's width), concatenates the skip before the up-sampled
//! features and applies a recurrent residual block; a 1x1 head. 39.08 M parameters with 3
//! input channels and 2 classes, as JMedSeg states.
//!
//! Choices against the paper, kept from JMedSeg: recurrence `t = 3` (the paper uses `t = 2`;
//! JMedSeg trained and reported `t = 3`, Dice .8289 on its pancreas set, its best UNet-family
//! result, so its configuration is the default; `recurrence=2` gives the paper's), and
//! InstanceNorm without affine parameters after every convolution where the paper's code has
//! BatchNorm. No departure from JMedSeg's structure. An exported graph repeats each recurrent
//! convolution's weights once per step (the graph has no weight sharing), so the listing's
//! parameter count for this network is larger than the 39.08 M learned parameters.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::recurrent::{ConvInRelu, RecurrentResidualBlock};
use crate::blocks::{Head, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct R2UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage (64); each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
    /// Recurrent steps `t` of each recurrent convolution (JMedSeg 3, the paper 2).
    pub recurrence: usize,
}

impl Default for R2UNetConfig {
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

/// Checks shared by R2U-Net and R2AttU-Net.
pub(crate) fn validate_r2(
    base_width: usize,
    depth: usize,
    recurrence: usize,
) -> Result<(), String> {
    if base_width < 2 {
        return Err(format!("base_width {base_width} must be >= 2"));
    }
    if depth == 0 || depth > 6 {
        return Err(format!("depth {depth} must be within 1..=6"));
    }
    if recurrence == 0 || recurrence > 8 {
        return Err(format!("recurrence {recurrence} must be within 1..=8"));
    }
    Ok(())
}

/// The encoder: a recurrent residual block per level, 2x max pooling between levels.
#[derive(Module, Debug)]
pub struct R2Encoder<B: Backend> {
    /// `depth + 1` stages, shallowest first.
    pub stages: Vec<RecurrentResidualBlock<B>>,
}

impl<B: Backend> R2Encoder<B> {
    pub fn new(
        in_channels: usize,
        base_width: usize,
        depth: usize,
        recurrence: usize,
        device: &B::Device,
    ) -> Self {
        let stages = (0..=depth)
            .map(|l| {
                let input = if l == 0 {
                    in_channels
                } else {
                    base_width << (l - 1)
                };
                RecurrentResidualBlock::new(input, base_width << l, recurrence, device)
            })
            .collect();
        Self { stages }
    }

    /// Every level's features, shallowest first; the last (the bottleneck) is tapped as the
    /// encoder output.
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> Vec<O::T> {
        let mut levels: Vec<O::T> = Vec::with_capacity(self.stages.len());
        for (l, stage) in self.stages.iter().enumerate() {
            let input = match levels.last() {
                None => x.clone(),
                Some(prev) => pool2x(o, prev.clone()),
            };
            let y = o.scoped(&format!("enc{l}"), |o| stage.run(o, input));
            levels.push(y);
        }
        o.tap(
            crate::network::ENCODER_TAP,
            levels.last().expect("at least one stage"),
        );
        levels
    }
}

/// Nearest 2x up-sampling then a 3x3 conv-InstanceNorm-ReLU (JMedSeg's `up_conv`).
pub fn up_conv<B: Backend, O: Ops<B>>(o: &mut O, unit: &ConvInRelu<B>, x: O::T) -> O::T {
    let [_, _, h, w] = o.shape(&x);
    let up = o.resize(x, [2 * h, 2 * w], ResizeMode::Nearest);
    unit.run(o, up)
}

/// One decoder stage: up-convolution, concatenation with the skip, recurrent residual block.
#[derive(Module, Debug)]
pub struct R2UpStage<B: Backend> {
    pub up: ConvInRelu<B>,
    pub conv: RecurrentResidualBlock<B>,
}

#[derive(Module, Debug)]
pub struct R2UNet<B: Backend> {
    pub encoder: R2Encoder<B>,
    pub up: Vec<R2UpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for R2UNetConfig {
    type Model<B: Backend> = R2UNet<B>;
    const NAME: &'static str = "r2unet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Alom et al., Recurrent Residual Convolutional Neural Network \
        based on U-Net (R2U-Net) for Medical Image Segmentation, arXiv:1802.06955, 2018";

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

    fn init<B: Backend>(&self, device: &B::Device) -> R2UNet<B> {
        let width = |level: usize| self.base_width << level;
        let t = self.recurrence;
        let up = (0..self.depth)
            .rev()
            .map(|l| R2UpStage {
                up: ConvInRelu::new(width(l + 1), width(l), device),
                conv: RecurrentResidualBlock::new(2 * width(l), width(l), t, device),
            })
            .collect();
        R2UNet {
            encoder: R2Encoder::new(self.in_channels, self.base_width, self.depth, t, device),
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for R2UNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = self.encoder.run(o, x);
        let mut x = skips.pop().expect("bottleneck");
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let up = up_conv(o, &stage.up, x);
                let cat = o.concat(vec![skip, up], 1);
                stage.conv.run(o, cat)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    /// JMedSeg's R2UNet (3 input channels, 2 classes) has 39,077,762 parameters.
    #[test]
    fn default_has_jmedseg_parameter_count() {
        let mut c = R2UNetConfig::default();
        c.set_io(3, 2);
        let n = c.init::<Flex>(&Default::default()).num_params() as f64;
        assert!((n / 39_077_762.0 - 1.0).abs() < 0.10, "{n}");
    }

    /// The graph applies each recurrent convolution `t + 1` times but counts its weights
    /// once, as Burn does (the ONNX writer also stores them once; see the export tests).
    #[test]
    fn export_counts_shared_recurrent_weights_once() {
        let c = R2UNetConfig::tiny();
        let model = c.init::<Flex>(&Default::default());
        let graph = export_graph(&model, [1, 1, 32, 32]);
        let convs = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, crate::graph::Op::Conv { .. }))
            .count();
        let distinct: std::collections::HashSet<_> =
            graph.nodes.iter().filter_map(|n| n.source).collect();
        assert!(
            convs > distinct.len(),
            "{convs} convolutions, {} sources",
            distinct.len()
        );
        assert_eq!(graph.parameter_count(), model.num_params());
    }
}
