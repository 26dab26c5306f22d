//! JMedSeg's "large receptive field" ResNet (`LRFresnetS` in `model/LRFEANet.py`), the
//! encoder of LRF-EANet: no max pooling and no strided 3x3 convolutions; the resolution falls
//! by patch merging (a `p`x`p` stride-`p` convolution widening `p^2` times, then a 1x1
//! convolution), and each stage is a run of aggregation blocks (a dilated 3x3 convolution to
//! twice the width, a 1x1 back, added to the input) whose dilations widen the receptive field.
//!
//! As JMedSeg's (base width 64, output stride 16): merge(in -> 64, 2), one aggregation block,
//! merge(64 -> 64, 2); layer1: 5 blocks at 64; merge(64 -> 128); layer2: 5 blocks at 128;
//! merge(128 -> 256); layer3: 18 blocks at 256, dilations 1, 1, 2 repeated; a 1x1
//! conv-norm-ReLU to 512; layer4: 4 blocks at 512, dilations 1, 2, 4, 8.
//!
//! Departure: BatchNorm where JMedSeg has GroupNorm (1 to 32 groups by width), as in the
//! zoo's other ResNet-style encoders (it folds into the convolutions at export). It returns
//! its last map only: its one user takes no skips.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::blocks::ConvBnRelu;
use crate::ops::Ops;

/// Dilations of the aggregation blocks of layer1..layer4.
fn layer_dilations() -> [Vec<usize>; 4] {
    [
        vec![1; 5],
        vec![1; 5],
        [1, 1, 2].repeat(6),
        vec![1, 2, 4, 8],
    ]
}

/// `p`x`p` stride-`p` conv to `in * p^2` channels, norm, ReLU; 1x1 conv to `out`, norm, ReLU.
#[derive(Module, Debug)]
pub struct PatchMerge<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
    pub project: ConvBnRelu<B>,
}

impl<B: Backend> PatchMerge<B> {
    pub fn new(input: usize, output: usize, patch: usize, device: &B::Device) -> Self {
        let wide = input * patch * patch;
        Self {
            conv: Conv2dConfig::new([input, wide], [patch, patch])
                .with_stride([patch, patch])
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(wide).init(device),
            project: ConvBnRelu::new(wide, output, 1, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv, &self.norm);
        let y = o.relu(y);
        self.project.run(o, y)
    }
}

/// `relu(x + norm(conv1x1(relu(norm(conv3x3_d(x))))))`, the hidden width twice the input's.
#[derive(Module, Debug)]
pub struct Aggregation<B: Backend> {
    pub conv1: Conv2d<B>,
    pub norm1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub norm2: BatchNorm<B>,
}

impl<B: Backend> Aggregation<B> {
    pub fn new(c: usize, dilation: usize, device: &B::Device) -> Self {
        let d = dilation;
        Self {
            conv1: Conv2dConfig::new([c, 2 * c], [3, 3])
                .with_dilation([d, d])
                .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
                .with_bias(false)
                .init(device),
            norm1: BatchNormConfig::new(2 * c).init(device),
            conv2: Conv2dConfig::new([2 * c, c], [1, 1])
                .with_bias(false)
                .init(device),
            norm2: BatchNormConfig::new(c).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x.clone(), &self.conv1, &self.norm1);
        let y = o.relu(y);
        let y = o.conv_bn(y, &self.conv2, &self.norm2);
        let y = o.add(y, x);
        o.relu(y)
    }
}

#[derive(Module, Debug)]
pub struct LrfResNet<B: Backend> {
    pub merge1: PatchMerge<B>,
    pub stem_block: Aggregation<B>,
    pub merge2: PatchMerge<B>,
    pub layer1: Vec<Aggregation<B>>,
    pub merge3: PatchMerge<B>,
    pub layer2: Vec<Aggregation<B>>,
    pub merge4: PatchMerge<B>,
    pub layer3: Vec<Aggregation<B>>,
    /// 1x1 conv-norm-ReLU doubling layer3's width for layer4.
    pub widen: ConvBnRelu<B>,
    pub layer4: Vec<Aggregation<B>>,
}

impl<B: Backend> LrfResNet<B> {
    /// `base_width` is JMedSeg's 64; the output has `8 * base_width` channels at 1/16.
    pub fn new(in_channels: usize, base_width: usize, device: &B::Device) -> Self {
        let b = base_width;
        let [d1, d2, d3, d4] = layer_dilations();
        let layer = |c: usize, ds: Vec<usize>| -> Vec<Aggregation<B>> {
            ds.into_iter()
                .map(|d| Aggregation::new(c, d, device))
                .collect()
        };
        Self {
            merge1: PatchMerge::new(in_channels, b, 2, device),
            stem_block: Aggregation::new(b, 1, device),
            merge2: PatchMerge::new(b, b, 2, device),
            layer1: layer(b, d1),
            merge3: PatchMerge::new(b, 2 * b, 2, device),
            layer2: layer(2 * b, d2),
            merge4: PatchMerge::new(2 * b, 4 * b, 2, device),
            layer3: layer(4 * b, d3),
            widen: ConvBnRelu::new(4 * b, 8 * b, 1, device),
            layer4: layer(8 * b, d4),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let run_layer = |o: &mut O, blocks: &[Aggregation<B>], x: O::T| {
            blocks.iter().fold(x, |y, block| block.run(o, y))
        };
        let y = o.scoped("merge1", |o| self.merge1.run(o, x));
        let y = o.scoped("stem_block", |o| self.stem_block.run(o, y));
        let y = o.scoped("merge2", |o| self.merge2.run(o, y));
        let y = o.scoped("layer1", |o| run_layer(o, &self.layer1, y));
        let y = o.scoped("merge3", |o| self.merge3.run(o, y));
        let y = o.scoped("layer2", |o| run_layer(o, &self.layer2, y));
        let y = o.scoped("merge4", |o| self.merge4.run(o, y));
        let y = o.scoped("layer3", |o| run_layer(o, &self.layer3, y));
        let y = o.scoped("widen", |o| self.widen.run(o, y));
        o.scoped("layer4", |o| run_layer(o, &self.layer4, y))
    }
}
