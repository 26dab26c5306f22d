//! Attention U-Net (Oktay et al., MIDL 2018): a UNet whose skip connections pass through
//! additive attention gates driven by the decoder's coarser features.
//!
//! As JMedSeg's `attunet` (the layout of the widely used PyTorch version): each decoder stage
//! up-samples (nearest 2x, then 3x3 conv-BN-ReLU), gates the skip with
//! `x * sigmoid(BN(conv1x1(relu(BN(W_g g) + BN(W_x x)))))` at the skip's resolution, then
//! concatenates and applies a double conv. Departure from the paper: the paper computes the
//! gate from the coarser gating signal with a strided `W_x` and resamples the coefficients;
//! JMedSeg (and this file) up-samples first, so both inputs of the gate share a resolution.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::attention_gate::AttentionGate;
use crate::blocks::{ConvBnRelu, DoubleConv, Head, unet_down_stages, unet_encoder};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage (the paper's 64); each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
}

impl Default for AttentionUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            depth: 4,
        }
    }
}

/// One decoder stage: up-convolution, gate on the skip, concatenation, double conv.
#[derive(Module, Debug)]
pub struct AttentionUpStage<B: Backend> {
    pub up: ConvBnRelu<B>,
    pub gate: AttentionGate<B>,
    pub conv: DoubleConv<B>,
}

#[derive(Module, Debug)]
pub struct AttentionUNet<B: Backend> {
    pub stem: DoubleConv<B>,
    pub down: Vec<DoubleConv<B>>,
    pub up: Vec<AttentionUpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for AttentionUNetConfig {
    type Model<B: Backend> = AttentionUNet<B>;
    const NAME: &'static str = "attunet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str =
        "Oktay et al., Attention U-Net: Learning Where to Look for the Pancreas, MIDL 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width < 2 || self.depth == 0 || self.depth > 6 {
            return Err("base_width must be >= 2 and depth within 1..=6".into());
        }
        Ok(())
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

    fn init<B: Backend>(&self, device: &B::Device) -> AttentionUNet<B> {
        let width = |level: usize| self.base_width << level;
        let down = unet_down_stages(self.base_width, self.depth, device);
        let up = (0..self.depth)
            .rev()
            .map(|l| {
                let (deep, skip) = (width(l + 1), width(l));
                AttentionUpStage {
                    up: ConvBnRelu::new(deep, skip, 3, device),
                    // The gate's inner width is half the skip's, as in the paper's code.
                    gate: AttentionGate::new(skip, skip, (skip / 2).max(1), device),
                    conv: DoubleConv::new(2 * skip, skip, device),
                }
            })
            .collect();
        AttentionUNet {
            stem: DoubleConv::new(self.in_channels, width(0), device),
            down,
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for AttentionUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = unet_encoder(o, &self.stem, &self.down, x);
        let mut x = skips.pop().expect("bottleneck");
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let [_, _, h, w] = o.shape(&x);
                let up = o.resize(x, [2 * h, 2 * w], ResizeMode::Nearest);
                let up = stage.up.run(o, up);
                let gated = stage.gate.run(o, up.clone(), skip);
                let cat = o.concat(vec![gated, up], 1);
                stage.conv.run(o, cat)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }
}
