//! VGG (Simonyan & Zisserman, ICLR 2015) as an encoder: the five convolution stages of VGG11
//! or VGG16 (3x3 convolutions with bias, ReLU, optionally BatchNorm), returning each stage's
//! output before its 2x2 max pooling.
//!
//! torchvision keeps these layers in one `features` Sequential indexed by position (conv,
//! [bn,] relu, ..., pool); a Burn struct cannot use numbers as field names, so here stage
//! `s`'s `k`-th convolution is `stages.{s}.convs.{k}.conv` (and `.bn`), and
//! [`torchvision_feature_index`] gives the `features.{i}` it corresponds to. Weights start
//! random, initialised as torchvision initialises an untrained VGG (Kaiming normal, fan-out,
//! zero bias), unless a checkpoint is loaded ([`super::torchvision`]).

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::{conv2d, pool2x};
use crate::ops::Ops;

/// Which VGG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VggDepth {
    Vgg11,
    Vgg16,
}

impl VggDepth {
    /// Convolutions in each of the five stages.
    pub fn convs(self) -> [usize; 5] {
        match self {
            Self::Vgg11 => [1, 1, 2, 2, 2],
            Self::Vgg16 => [2, 2, 3, 3, 3],
        }
    }
}

/// Output channels of stage `s` (0-based) for a first stage of `base` (VGG's 64): 64, 128,
/// 256, 512, 512.
pub fn vgg_stage_width(base: usize, s: usize) -> usize {
    base << s.min(3)
}

/// The position in torchvision's `vgg*(_bn).features` of stage `s`'s `k`-th convolution (its
/// BatchNorm, when there is one, is the next position).
pub fn torchvision_feature_index(depth: VggDepth, batch_norm: bool, s: usize, k: usize) -> usize {
    let per_conv = if batch_norm { 3 } else { 2 };
    let before: usize = depth.convs()[..s].iter().sum();
    // Each earlier stage ends in one max pooling.
    (before + k) * per_conv + s
}

/// torchvision's initialisation of an untrained VGG: Kaiming normal (fan-out, ReLU gain),
/// zero bias. Without BatchNorm, the default (PyTorch's uniform, a third of the variance)
/// shrinks the signal about 6x per layer: 13 layers in, VGG16's features are ~1e-5 of its
/// input and a decoder above them starts out (and trains) as if they were not there.
fn torchvision_init<B: Backend>(conv: Conv2d<B>) -> Conv2d<B> {
    let [out_ch, in_ch, kh, kw] = conv.weight.dims();
    let device = conv.weight.device();
    let std = (2.0 / (out_ch * kh * kw) as f64).sqrt();
    Conv2d {
        weight: Param::from_tensor(Tensor::random(
            [out_ch, in_ch, kh, kw],
            Distribution::Normal(0.0, std),
            &device,
        )),
        bias: Some(Param::from_tensor(Tensor::zeros([out_ch], &device))),
        ..conv
    }
}

/// One 3x3 convolution (with bias, as torchvision's VGG), optional BatchNorm, ReLU.
#[derive(Module, Debug)]
pub struct VggConv<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: Option<BatchNorm<B>>,
}

impl<B: Backend> VggConv<B> {
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = match &self.bn {
            Some(n) => o.conv_bn(x, &self.conv, n),
            None => o.conv(x, &self.conv),
        };
        o.relu(y)
    }
}

#[derive(Module, Debug)]
pub struct VggStage<B: Backend> {
    pub convs: Vec<VggConv<B>>,
}

/// VGG's convolution stages (no classifier).
#[derive(Module, Debug)]
pub struct Vgg<B: Backend> {
    pub stages: Vec<VggStage<B>>,
}

/// How to build a [`Vgg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VggConfig {
    pub depth: VggDepth,
    pub in_channels: usize,
    /// First stage's channels (VGG's 64); see [`vgg_stage_width`].
    pub base_width: usize,
    pub batch_norm: bool,
}

impl VggConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> Vgg<B> {
        let mut in_ch = self.in_channels;
        let stages = self
            .depth
            .convs()
            .iter()
            .enumerate()
            .map(|(s, &n)| {
                let out = vgg_stage_width(self.base_width, s);
                let convs = (0..n)
                    .map(|_| {
                        let c = VggConv {
                            conv: torchvision_init(conv2d(in_ch, out, 3, true, device)),
                            bn: self
                                .batch_norm
                                .then(|| BatchNormConfig::new(out).init(device)),
                        };
                        in_ch = out;
                        c
                    })
                    .collect();
                VggStage { convs }
            })
            .collect();
        Vgg { stages }
    }
}

impl<B: Backend> Vgg<B> {
    /// Each stage's output before pooling (strides 1, 2, 4, 8, 16); the input of stage `s > 0`
    /// is stage `s - 1`'s output max-pooled 2x2.
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> Vec<O::T> {
        let mut outs: Vec<O::T> = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            let y = o.scoped(&format!("vgg{}", s + 1), |o| {
                let input = match outs.last() {
                    Some(prev) => pool2x(o, prev.clone()),
                    None => x.clone(),
                };
                stage.convs.iter().fold(input, |y, c| c.run(o, y))
            });
            outs.push(y);
        }
        outs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn torchvision_positions_and_parameter_counts() {
        // vgg16.features: the last conv is features.28; vgg16_bn: features.40 (bn 41);
        // vgg11.features: conv5's second conv is features.18 (TernausNet's `encoder[18]`).
        assert_eq!(torchvision_feature_index(VggDepth::Vgg16, false, 4, 2), 28);
        assert_eq!(torchvision_feature_index(VggDepth::Vgg16, true, 4, 2), 40);
        assert_eq!(torchvision_feature_index(VggDepth::Vgg11, false, 4, 1), 18);
        assert_eq!(torchvision_feature_index(VggDepth::Vgg11, false, 2, 0), 6);
        let dev = Default::default();
        let vgg16 = VggConfig {
            depth: VggDepth::Vgg16,
            in_channels: 3,
            base_width: 64,
            batch_norm: false,
        }
        .init::<Flex>(&dev);
        // torchvision's vgg16 has 138,357,544 parameters, 123,642,856 of them in the classifier.
        assert_eq!(vgg16.num_params(), 14_714_688);
    }
}
