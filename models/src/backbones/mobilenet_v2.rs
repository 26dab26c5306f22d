//! MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, CVPR 2018) as DeepLab's encoder:
//! inverted residual blocks, each a 1x1 expansion (by `t`) with BatchNorm and ReLU6, a 3x3
//! depthwise convolution with BatchNorm and ReLU6, and a linear 1x1 projection with BatchNorm
//! (no activation: the bottleneck stays linear), with an identity shortcut where the stride
//! is 1 and the width unchanged.
//!
//! As JMedSeg's `backbone/mobilenet.py` (the PyTorch DeepLab v3+ code it ports): a 3x3
//! stride-2 conv-BN-ReLU6 to 32, then the paper's seven groups (t, c, n, s) = (1, 16, 1, 1),
//! (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1);
//! past the output stride a group keeps the resolution and dilates instead (the code's rule:
//! a group's first block keeps the previous dilation, the rest take the new one). Low-level
//! features for DeepLab's decoder: after `features[3]` (24 channels at 1/4); the last features
//! 320 channels. No final 1x1 to 1280 (a classifier's, which DeepLab leaves out).
//!
//! Widths are multiplied by `width_mult`. Names: the code's `features.N` list is `stem`
//! (`features.0`) and `blocks` (`features.1..17`), each block's `conv` Sequential as
//! `expand`/`depthwise`/`project` conv-BN units.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::blocks::ConvBn;
use crate::network::scaled_width;
use crate::ops::Ops;

/// (expansion t, width c, blocks n, stride s) of the paper's Table 2.
const GROUPS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
/// Blocks up to the low-level features (`features[1..4]`).
const LOW_LEVEL_BLOCKS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MobileNetV2Config {
    pub in_channels: usize,
    pub width_mult: f64,
    /// 8, 16 or 32.
    pub output_stride: usize,
}

impl MobileNetV2Config {
    fn width(&self, c: usize) -> usize {
        scaled_width(c, self.width_mult, 1)
    }

    /// Channels of the low-level (1/4) and the last features.
    pub fn feature_widths(&self) -> (usize, usize) {
        (self.width(24), self.width(320))
    }

    pub fn validate(&self) -> Result<(), String> {
        if ![8, 16, 32].contains(&self.output_stride) {
            return Err(format!(
                "MobileNetV2's output_stride is 8, 16 or 32, not {}",
                self.output_stride
            ));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> MobileNetV2<B> {
        let first = self.width(32);
        let mut input = first;
        let (mut current, mut rate) = (2, 1);
        let mut blocks = Vec::new();
        for (t, c, n, s) in GROUPS {
            let (stride, dilation) = if current == self.output_stride {
                let d = rate;
                rate *= s;
                (1, d)
            } else {
                current *= s;
                (s, 1)
            };
            let out = self.width(c);
            for i in 0..n {
                let stride = if i == 0 { stride } else { 1 };
                blocks.push(InvertedResidual::new(
                    input, out, stride, dilation, t, device,
                ));
                input = out;
            }
        }
        MobileNetV2 {
            stem: ConvBn::strided(self.in_channels, first, 3, 2, device),
            blocks,
        }
    }
}

/// An inverted residual block (the expansion is left out where `t` is 1).
#[derive(Module, Debug)]
pub struct InvertedResidual<B: Backend> {
    pub expand: Option<ConvBn<B>>,
    pub depthwise: Conv2d<B>,
    pub bn_depthwise: BatchNorm<B>,
    pub project: ConvBn<B>,
    pub residual: bool,
}

impl<B: Backend> InvertedResidual<B> {
    fn new(
        input: usize,
        out: usize,
        stride: usize,
        d: usize,
        t: usize,
        device: &B::Device,
    ) -> Self {
        let hidden = input * t;
        Self {
            expand: (t != 1).then(|| ConvBn::new(input, hidden, [1, 1], device)),
            depthwise: Conv2dConfig::new([hidden, hidden], [3, 3])
                .with_groups(hidden)
                .with_stride([stride, stride])
                .with_dilation([d, d])
                .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
                .with_bias(false)
                .init(device),
            bn_depthwise: BatchNormConfig::new(hidden).init(device),
            project: ConvBn::new(hidden, out, [1, 1], device),
            residual: stride == 1 && input == out,
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut y = x.clone();
        if let Some(expand) = &self.expand {
            y = expand.run(o, y);
            y = o.clip(y, 0.0, 6.0);
        }
        y = o.conv_bn(y, &self.depthwise, &self.bn_depthwise);
        y = o.clip(y, 0.0, 6.0);
        y = self.project.run(o, y);
        if self.residual { o.add(x, y) } else { y }
    }
}

#[derive(Module, Debug)]
pub struct MobileNetV2<B: Backend> {
    /// 3x3 stride-2 conv-BN, ReLU6.
    pub stem: ConvBn<B>,
    pub blocks: Vec<InvertedResidual<B>>,
}

impl<B: Backend> MobileNetV2<B> {
    /// (low-level features at 1/4, last features at the output stride).
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> (O::T, O::T) {
        let y = self.stem.run(o, x);
        let mut y = o.clip(y, 0.0, 6.0);
        let mut low = None;
        for (i, block) in self.blocks.iter().enumerate() {
            y = block.run(o, y);
            if i + 1 == LOW_LEVEL_BLOCKS {
                low = Some(y.clone());
            }
        }
        (low.expect("more than three blocks"), y)
    }
}
