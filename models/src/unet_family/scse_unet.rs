//! scSE UNet: a UNet whose stages are each followed by concurrent spatial and channel
//! squeeze-and-excitation (Roy et al., "Concurrent Spatial and Channel 'Squeeze &
//! Excitation' in Fully Convolutional Networks", MICCAI 2018; "Recalibrating Fully
//! Convolutional Networks with Spatial and Channel 'Squeeze and Excitation' Blocks", IEEE
//! TMI 2019).
//!
//! As JMedSeg's `scseunet` (model/ScseUNet.py): the bilinear UNet (widths 64..512, a 512
//! bottleneck, decoder double convs whose first convolution halves the concatenation's
//! width), with an scSE block ([`ConcurrentSqueezeExcitation`], reduction 16) after every
//! encoder stage, the bottleneck and every decoder stage; the recalibrated encoder features
//! are both pooled and skipped. Up-sampling is bilinear (half-pixel centres), the skip comes
//! before the up-sampled features in the concatenation, a 1x1 head. 17.36 M parameters with 3
//! input channels and 2 classes (JMedSeg's structure, counted).
//!
//! Departure from JMedSeg: its gates end in a softmax (over the channel-excitation vector and
//! over the single-channel spatial map, i.e. over one element), where the papers use a
//! sigmoid; this file uses the papers' sigmoid. A softmax makes gates that sum to 1 across an
//! axis, on average 1/C, far below the paper's independent (0, 1) per element, which shrinks
//! every recalibrated feature map stage after stage; JMedSeg's scSE UNet collapsed to
//! predicting background on its pancreas set (Dice .4994, the only such failure in its table).
//! Convolutions before BatchNorm have no bias (BatchNorm's shift makes it redundant).

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::squeeze_excitation::ConcurrentSqueezeExcitation;
use crate::blocks::{ConvBnRelu, DoubleConv, Head, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScseUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage (64); each deeper stage doubles them, the bottleneck
    /// keeps the deepest stage's.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
    /// Channel-excitation reduction ratio `r` (the paper's 16).
    pub reduction: usize,
}

impl Default for ScseUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            depth: 4,
            reduction: 16,
        }
    }
}

/// A double conv followed by scSE: every stage of this network.
#[derive(Module, Debug)]
pub struct ScseStage<B: Backend> {
    pub conv: DoubleConv<B>,
    pub scse: ConcurrentSqueezeExcitation<B>,
}

impl<B: Backend> ScseStage<B> {
    fn new(input: usize, mid: usize, out: usize, reduction: usize, device: &B::Device) -> Self {
        Self {
            conv: DoubleConv {
                first: ConvBnRelu::new(input, mid, 3, device),
                second: ConvBnRelu::new(mid, out, 3, device),
            },
            scse: ConcurrentSqueezeExcitation::new(out, reduction, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = self.conv.run(o, x);
        o.scoped("scse", |o| self.scse.run(o, y))
    }
}

#[derive(Module, Debug)]
pub struct ScseUNet<B: Backend> {
    /// `depth` encoder stages then the bottleneck, shallowest first.
    pub down: Vec<ScseStage<B>>,
    /// Decoder stages, deepest first.
    pub up: Vec<ScseStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for ScseUNetConfig {
    type Model<B: Backend> = ScseUNet<B>;
    const NAME: &'static str = "scseunet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Roy et al., Concurrent Spatial and Channel 'Squeeze & \
        Excitation' in Fully Convolutional Networks, MICCAI 2018 (and IEEE TMI 2019)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width < 2 {
            return Err(format!("base_width {} must be >= 2", self.base_width));
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("depth {} must be within 1..=6", self.depth));
        }
        if self.reduction == 0 {
            return Err("reduction must be >= 1".into());
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
            reduction: 2,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> ScseUNet<B> {
        let width = |level: usize| self.base_width << level;
        let r = self.reduction;
        let deepest = width(self.depth - 1);
        let mut down: Vec<ScseStage<B>> = (0..self.depth)
            .map(|l| {
                let input = if l == 0 {
                    self.in_channels
                } else {
                    width(l - 1)
                };
                ScseStage::new(input, width(l), width(l), r, device)
            })
            .collect();
        // The bilinear UNet's bottleneck keeps the deepest width (JMedSeg's 1024 // 2).
        down.push(ScseStage::new(deepest, deepest, deepest, r, device));
        let up = (0..self.depth)
            .rev()
            .map(|l| {
                // Skip and up-sampled features both have width(l) channels.
                let out = if l == 0 { width(0) } else { width(l - 1) };
                ScseStage::new(2 * width(l), width(l), out, r, device)
            })
            .collect();
        ScseUNet {
            down,
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for ScseUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips: Vec<O::T> = Vec::with_capacity(self.down.len());
        for (l, stage) in self.down.iter().enumerate() {
            let input = match skips.last() {
                None => x.clone(),
                Some(prev) => pool2x(o, prev.clone()),
            };
            let y = o.scoped(&format!("down{l}"), |o| stage.run(o, input));
            skips.push(y);
        }
        let mut x = skips.pop().expect("bottleneck");
        o.tap(crate::network::ENCODER_TAP, &x);
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let [_, _, h, w] = o.shape(&x);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                let up = o.resize(x, [2 * h, 2 * w], mode);
                let cat = o.concat(vec![skip, up], 1);
                stage.run(o, cat)
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

    /// JMedSeg's SCSEUnet (3 input channels, 2 classes), counted from its code: 17,359,111.
    #[test]
    fn default_has_jmedseg_parameter_count() {
        let mut c = ScseUNetConfig::default();
        c.set_io(3, 2);
        let model = c.init::<Flex>(&Default::default());
        let n = export_graph(&model, [1, 3, 32, 32]).parameter_count() as f64;
        assert!((n / 17_359_111.0 - 1.0).abs() < 0.10, "{n}");
    }
}
