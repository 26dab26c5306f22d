//! DenseUNet as JMedSeg has it (`model/DenseUNet.py`, registered as `dense`): a UNet of
//! constant width whose stages are dense blocks with summed links.
//!
//! JMedSeg's code is a port of a BraTS repository's PyTorch DenseUNet, which is the Dense U-Net
//! of DARTS (Kaku et al., "DARTS: DenseUnet-based Automatic Rapid Tool for brain
//! Segmentation", arXiv:1911.05567, 2019; code NYUMedML/DARTS). Structure:
//! - a 1x1 convolution (with bias, nothing after it) takes the input to 64 channels, and every
//!   stage keeps 64;
//! - a dense block is 4 steps; step `k` convolves the previous step's output (3x3) and **adds**
//!   the outputs of all steps before that one (the block input counting as step 0) before
//!   BatchNorm and ReLU: `y_k = relu(bn_k(conv_k(y_{k-1}) + y_0 + .. + y_{k-2}))`; the block
//!   returns `y_4`;
//! - encoder: 4 x (dense block, 2x max pool), then a dense block at the bottom;
//! - decoder (JMedSeg's, see below): bilinear 2x up-sampling, concatenation with the encoder
//!   block's output, a double conv-BN-ReLU (128 -> 64 -> 64), a dense block; a 1x1 head.
//!
//! Departures of JMedSeg's code from the original DenseUNet (Li et al., H-DenseUNet, IEEE TMI
//! 2018, whose 2D DenseUNet is a DenseNet-161 encoder): there, dense blocks **concatenate**
//! their layers' outputs (a growth rate, bottleneck 1x1 convolutions, transition layers that
//! compress and pool) and the width grows with depth; here links are summed at a fixed width,
//! which keeps the block as cheap as 4 plain convolutions (1.78 M parameters in all). From
//! DARTS's code: JMedSeg up-samples bilinearly and uses a double conv after the concatenation
//! where DARTS has a learned 4x4 stride-2 transposed convolution and one conv-BN-ReLU.
//! Departures of this file from JMedSeg: convolutions followed by BatchNorm have no bias
//! (BatchNorm's shift makes it redundant: 1,776,130 parameters exported, 3 input channels and
//! 2 classes, against 1,778,306 in JMedSeg's code, which states no count); bilinear up-sampling uses half-pixel centres (Jittor's
//! and PyTorch's default).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{DoubleConv, Head, Upsample2x, conv2d, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of every stage (JMedSeg's 64).
    pub width: usize,
    /// Number of 2x down-samplings (JMedSeg's 4).
    pub depth: usize,
    /// Convolutions per dense block (JMedSeg's 4).
    pub block_convs: usize,
}

impl Default for DenseUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            width: 64,
            depth: 4,
            block_convs: 4,
        }
    }
}

/// A dense block whose links are summed: step `k` is
/// `relu(bn_k(conv_k(y_{k-1}) + y_0 + .. + y_{k-2}))`, `y_0` the input.
#[derive(Module, Debug)]
pub struct SummedDenseBlock<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
    pub norms: Vec<BatchNorm<B>>,
}

impl<B: Backend> SummedDenseBlock<B> {
    pub fn new(width: usize, convs: usize, device: &B::Device) -> Self {
        Self {
            convs: (0..convs)
                .map(|_| conv2d(width, width, 3, false, device))
                .collect(),
            norms: (0..convs)
                .map(|_| BatchNormConfig::new(width).init(device))
                .collect(),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut outs = vec![x];
        for (k, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            let previous = outs[k].clone();
            let y = if k == 0 {
                o.conv_bn(previous, conv, norm)
            } else {
                let mut sum = o.conv(previous, conv);
                for earlier in &outs[..k] {
                    sum = o.add(sum, earlier.clone());
                }
                o.batch_norm(sum, norm)
            };
            let y = o.relu(y);
            outs.push(y);
        }
        outs.pop().expect("at least one step")
    }
}

/// A decoder stage: up-sample, concatenate the skip, double conv, dense block.
#[derive(Module, Debug)]
pub struct DenseUpStage<B: Backend> {
    pub up: Upsample2x<B>,
    pub conv: DoubleConv<B>,
    pub block: SummedDenseBlock<B>,
}

#[derive(Module, Debug)]
pub struct DenseUNet<B: Backend> {
    /// 1x1 convolution to `width` channels.
    pub stem: Conv2d<B>,
    /// Encoder blocks, finest first; the last is the bottom block.
    pub down: Vec<SummedDenseBlock<B>>,
    pub up: Vec<DenseUpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for DenseUNetConfig {
    type Model<B: Backend> = DenseUNet<B>;
    const NAME: &'static str = "denseunet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Kaku et al., DARTS: DenseUnet-based Automatic Rapid Tool for brain Segmentation, arXiv:1911.05567, 2019 (after Li et al., H-DenseUNet, IEEE TMI 2018)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.width == 0 {
            return Err("width must be > 0".into());
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("depth {} must be within 1..=6", self.depth));
        }
        if self.block_convs == 0 || self.block_convs > 8 {
            return Err(format!(
                "block_convs {} must be within 1..=8",
                self.block_convs
            ));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.width = scaled_width(self.width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            width: 4,
            depth: 1,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> DenseUNet<B> {
        let w = self.width;
        DenseUNet {
            stem: conv2d(self.in_channels, w, 1, true, device),
            down: (0..=self.depth)
                .map(|_| SummedDenseBlock::new(w, self.block_convs, device))
                .collect(),
            up: (0..self.depth)
                .map(|_| DenseUpStage {
                    up: Upsample2x::bilinear(),
                    conv: DoubleConv::new(2 * w, w, device),
                    block: SummedDenseBlock::new(w, self.block_convs, device),
                })
                .collect(),
            head: Head::new(w, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for DenseUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut x = o.scoped("stem", |o| o.conv(x, &self.stem));
        let depth = self.down.len() - 1;
        let mut skips = Vec::with_capacity(depth);
        for (i, block) in self.down.iter().enumerate() {
            x = o.scoped(&format!("down{i}"), |o| {
                let input = if i == 0 {
                    x
                } else {
                    pool2x(o, skips.last().cloned().expect("a finer level"))
                };
                block.run(o, input)
            });
            if i < depth {
                skips.push(x.clone());
            }
        }
        o.tap(crate::network::ENCODER_TAP, &x);
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let up = stage.up.run(o, x);
                let cat = o.concat(vec![skip, up], 1);
                let y = stage.conv.run(o, cat);
                stage.block.run(o, y)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;

    #[test]
    fn the_default_has_the_parameter_count_of_jmedsegs_code() {
        let mut c = DenseUNetConfig::default();
        c.set_io(3, 2);
        let net = c.init::<burn::backend::Flex>(&Default::default());
        let n = export_graph(&net, [1, 3, 32, 32]).parameter_count();
        // Counted from JMedSeg's DenseUNet.py (3 input channels, 2 classes).
        assert!(
            (n as f64 - 1_778_306.0).abs() < 0.1 * 1_778_306.0,
            "{n} parameters"
        );
    }
}
