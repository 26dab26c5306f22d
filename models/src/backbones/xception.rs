//! Aligned Xception (Chollet, CVPR 2017; modified by Dai et al. and by DeepLab v3+, Chen et al.
//! ECCV 2018) as DeepLab's encoder: depthwise separable convolutions (a 3x3 per-channel
//! convolution, BatchNorm, a 1x1 convolution) in residual blocks; the entry flow down-samples
//! by strided separable convolutions instead of max pooling, a long middle flow of identical
//! blocks, and an exit flow of three wide separable convolutions.
//!
//! As JMedSeg's `backbone/xception.py` (the PyTorch DeepLab v3+ code it ports): stem 3x3
//! stride-2 conv-BN-ReLU (32) and 3x3 conv-BN-ReLU (64); entry blocks 64 -> 128 -> 256 -> 728
//! (two separable convolutions each and a strided one; the third block's stride is 1 at output
//! stride 8); sixteen middle blocks of three at 728; exit block 728 -> 1024 (its separable
//! convolutions grow last), then separable convolutions to 1536, 1536, 2048, each with
//! BatchNorm and ReLU. Output stride 16 or 8: the layers past it dilate (middle 1 or 2, exit 1
//! and 2, or 2 and 4). The low-level features DeepLab's decoder reads: block 1's output after
//! a ReLU (128 channels at 1/4).
//!
//! Every width is multiplied by `width_mult` (1 = the paper's). Names follow that code
//! (`conv1`, `bn1`, `conv2`, `bn2`, `block1`.. as `entry`/`middle`/`exit` lists, `conv3`..`bn5`
//! as `tail`), but a block's `rep` Sequential is a list of units (separable convolution and
//! its BatchNorm). Departure: the stem reads the data's channels (JMedSeg's 3).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::blocks::ConvBn;
use crate::network::scaled_width;
use crate::ops::Ops;

/// The paper's widths: stem 32, 64; entry blocks 128, 256, 728; exit 1024, 1536, 2048.
const WIDTHS: [usize; 8] = [32, 64, 128, 256, 728, 1024, 1536, 2048];
/// Middle-flow blocks in DeepLab v3+'s Xception-65 (the original Xception has 8).
const MIDDLE_BLOCKS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XceptionConfig {
    pub in_channels: usize,
    pub width_mult: f64,
    /// 16 or 8.
    pub output_stride: usize,
}

impl XceptionConfig {
    pub fn widths(&self) -> [usize; 8] {
        WIDTHS.map(|w| scaled_width(w, self.width_mult, 1))
    }

    /// Channels of the low-level (1/4) and the last features.
    pub fn feature_widths(&self) -> (usize, usize) {
        let w = self.widths();
        (w[2], w[7])
    }

    pub fn validate(&self) -> Result<(), String> {
        if ![8, 16].contains(&self.output_stride) {
            return Err(format!(
                "Xception's output_stride is 16 or 8, not {}",
                self.output_stride
            ));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> Xception<B> {
        let w = self.widths();
        let os8 = self.output_stride == 8;
        let (middle_d, exit_d) = if os8 { (2, [2, 4]) } else { (1, [1, 2]) };
        let block = |i, o, reps, stride, d, start_with_relu, grow_first, is_last| {
            XBlock::new(
                XBlockSpec {
                    input: i,
                    out: o,
                    reps,
                    stride,
                    dilation: d,
                    start_with_relu,
                    grow_first,
                    is_last,
                },
                device,
            )
        };
        let entry = vec![
            block(w[1], w[2], 2, 2, 1, false, true, false),
            block(w[2], w[3], 2, 2, 1, true, true, false),
            block(w[3], w[4], 2, if os8 { 1 } else { 2 }, 1, true, true, true),
        ];
        let middle = (0..MIDDLE_BLOCKS)
            .map(|_| block(w[4], w[4], 3, 1, middle_d, true, true, false))
            .collect();
        let exit = block(w[4], w[5], 2, 1, exit_d[0], true, false, true);
        let tail = [(w[5], w[6]), (w[6], w[6]), (w[6], w[7])]
            .iter()
            .map(|&(i, o)| SepUnit::new(i, o, 1, exit_d[1], device))
            .collect();
        Xception {
            stem: vec![
                ConvBn::strided(self.in_channels, w[0], 3, 2, device),
                ConvBn::strided(w[0], w[1], 3, 1, device),
            ],
            entry,
            middle,
            exit,
            tail,
        }
    }
}

/// Depthwise 3x3 (dilated, strided), BatchNorm, pointwise 1x1 (the code's `SeparableConv2d`),
/// then the BatchNorm that follows it in every use.
#[derive(Module, Debug)]
pub struct SepUnit<B: Backend> {
    pub depthwise: Conv2d<B>,
    pub bn_depthwise: BatchNorm<B>,
    pub pointwise: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

impl<B: Backend> SepUnit<B> {
    fn new(input: usize, out: usize, stride: usize, d: usize, device: &B::Device) -> Self {
        Self {
            // "Same" padding at stride 1 (the code's fixed_padding, symmetric for 3x3).
            depthwise: Conv2dConfig::new([input, input], [3, 3])
                .with_groups(input)
                .with_stride([stride, stride])
                .with_dilation([d, d])
                .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
                .with_bias(false)
                .init(device),
            bn_depthwise: BatchNormConfig::new(input).init(device),
            pointwise: Conv2dConfig::new([input, out], [1, 1])
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out).init(device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.depthwise, &self.bn_depthwise);
        o.conv_bn(y, &self.pointwise, &self.bn)
    }
}

struct XBlockSpec {
    input: usize,
    out: usize,
    reps: usize,
    stride: usize,
    dilation: usize,
    start_with_relu: bool,
    grow_first: bool,
    is_last: bool,
}

/// A residual block of separable units, each after a ReLU (but the first, in the entry flow's
/// first block); a 1x1 conv-BN shortcut where the shape changes.
#[derive(Module, Debug)]
pub struct XBlock<B: Backend> {
    pub units: Vec<SepUnit<B>>,
    pub skip: Option<ConvBn<B>>,
    pub start_with_relu: bool,
}

impl<B: Backend> XBlock<B> {
    fn new(s: XBlockSpec, device: &B::Device) -> Self {
        let d = s.dilation;
        let mut units = Vec::new();
        if s.grow_first {
            units.push(SepUnit::new(s.input, s.out, 1, d, device));
        }
        let filters = if s.grow_first { s.out } else { s.input };
        for _ in 1..s.reps {
            units.push(SepUnit::new(filters, filters, 1, d, device));
        }
        if !s.grow_first {
            units.push(SepUnit::new(s.input, s.out, 1, d, device));
        }
        // The strided (or, in a last block, the extra) unit is not dilated, as in the code.
        if s.stride != 1 || s.is_last {
            units.push(SepUnit::new(s.out, s.out, s.stride, 1, device));
        }
        let skip = (s.out != s.input || s.stride != 1)
            .then(|| ConvBn::strided(s.input, s.out, 1, s.stride, device));
        Self {
            units,
            skip,
            start_with_relu: s.start_with_relu,
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut y = x.clone();
        for (i, unit) in self.units.iter().enumerate() {
            if i > 0 || self.start_with_relu {
                y = o.relu(y);
            }
            y = unit.run(o, y);
        }
        let skip = match &self.skip {
            Some(s) => s.run(o, x),
            None => x,
        };
        o.add(y, skip)
    }
}

#[derive(Module, Debug)]
pub struct Xception<B: Backend> {
    /// `conv1`/`bn1` and `conv2`/`bn2`, each followed by ReLU.
    pub stem: Vec<ConvBn<B>>,
    /// `block1`..`block3`.
    pub entry: Vec<XBlock<B>>,
    /// `block4`..`block19`.
    pub middle: Vec<XBlock<B>>,
    /// `block20`.
    pub exit: XBlock<B>,
    /// `conv3`/`bn3`..`conv5`/`bn5`, each followed by ReLU.
    pub tail: Vec<SepUnit<B>>,
}

impl<B: Backend> Xception<B> {
    /// (low-level features at 1/4, last features at the output stride).
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> (O::T, O::T) {
        let mut y = x;
        for unit in &self.stem {
            y = unit.run(o, y);
            y = o.relu(y);
        }
        let mut low = None;
        for (i, block) in self.entry.iter().enumerate() {
            y = block.run(o, y);
            if i == 0 {
                y = o.relu(y);
                low = Some(y.clone());
            }
        }
        for block in &self.middle {
            y = block.run(o, y);
        }
        y = self.exit.run(o, y);
        y = o.relu(y);
        for unit in &self.tail {
            y = unit.run(o, y);
            y = o.relu(y);
        }
        (low.expect("three entry blocks"), y)
    }
}
