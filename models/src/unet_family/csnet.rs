//! CS-Net (Mou et al., MICCAI 2019): a UNet with residual encoder blocks and, at the
//! bottleneck, spatial and channel affinity attention.
//!
//! As JMedSeg's `csnet` (the authors' layout): five residual encoder blocks of widths 32,
//! 64, 128, 256, 512 (conv-BN-ReLU twice, plus a 1x1 projection of the input, then ReLU) with
//! 2x max pooling between them. At the bottleneck (`x`, 512 channels, `L = h*w` positions):
//! spatial attention `x + gamma_s * V softmax(Q^T K)^T`, with Q from a 1x3 and K from a 3x1
//! conv-BN-ReLU to C/8 channels and V a 1x1 convolution; channel attention
//! `x + gamma_c * softmax(max(A) - A) X` with `A = X X^T` over the channels; both gammas
//! learned scalars starting at 0. Their sum is concatenated with `x` and fused by a 1x1
//! convolution. Decoder: 2x2 transposed convolutions, concatenation with the skip, double
//! conv-BN-ReLU; a 1x1 head.
//!
//! Departures: JMedSeg's (and the authors') network ends in a sigmoid; medseg members output
//! class logits for softmax-based losses, so the sigmoid is left out (JMedSeg's CSNet
//! collapsed on its pancreas set to the background-only Dice 0.4994). Convolutions followed
//! by BatchNorm have no bias (BatchNorm's shift makes it redundant); weights start from Burn's
//! default (PyTorch's) initialisation instead of the authors' Kaiming normal. JMedSeg states
//! no parameter count; this default has 8.9 M (3 input channels).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{DoubleConv, Head, Upsample2x, conv2d, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

/// Number of 2x down-samplings (the paper's).
const DEPTH: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first encoder block (the paper's 32); each deeper one doubles them.
    pub base_width: usize,
}

impl Default for CsNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 32,
        }
    }
}

/// Residual encoder block: conv-BN-ReLU twice plus a 1x1 projection of the input, ReLU.
#[derive(Module, Debug)]
pub struct ResEncoder<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub conv1x1: Conv2d<B>,
}

impl<B: Backend> ResEncoder<B> {
    fn new(input: usize, out: usize, device: &B::Device) -> Self {
        Self {
            conv1: conv2d(input, out, 3, false, device),
            bn1: BatchNormConfig::new(out).init(device),
            conv2: conv2d(out, out, 3, false, device),
            bn2: BatchNormConfig::new(out).init(device),
            conv1x1: conv2d(input, out, 1, true, device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let residual = o.conv(x.clone(), &self.conv1x1);
        let y = o.conv_bn(x, &self.conv1, &self.bn1);
        let y = o.relu(y);
        let y = o.conv_bn(y, &self.conv2, &self.bn2);
        let y = o.relu(y);
        let sum = o.add(y, residual);
        o.relu(sum)
    }
}

/// A learned scalar starting at zero.
fn zero_scalar<B: Backend>(device: &B::Device) -> Param<Tensor<B, 4>> {
    Param::from_tensor(Tensor::zeros([1, 1, 1, 1], device))
}

/// Spatial affinity attention.
#[derive(Module, Debug)]
pub struct SpatialAttention<B: Backend> {
    pub query: Conv2d<B>,
    pub query_bn: BatchNorm<B>,
    pub key: Conv2d<B>,
    pub key_bn: BatchNorm<B>,
    pub value: Conv2d<B>,
    pub gamma: Param<Tensor<B, 4>>,
}

impl<B: Backend> SpatialAttention<B> {
    fn new(c: usize, device: &B::Device) -> Self {
        let inner = (c / 8).max(1);
        let strip = |k: [usize; 2]| {
            Conv2dConfig::new([c, inner], k)
                .with_padding(PaddingConfig2d::Explicit(
                    k[0] / 2,
                    k[1] / 2,
                    k[0] / 2,
                    k[1] / 2,
                ))
                .with_bias(false)
                .init(device)
        };
        Self {
            query: strip([1, 3]),
            query_bn: BatchNormConfig::new(inner).init(device),
            key: strip([3, 1]),
            key_bn: BatchNormConfig::new(inner).init(device),
            value: conv2d(c, c, 1, true, device),
            gamma: zero_scalar(device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [n, c, h, w] = o.shape(&x);
        let l = h * w;
        let q = o.conv_bn(x.clone(), &self.query, &self.query_bn);
        let q = o.relu(q);
        let inner = o.shape(&q)[1];
        let q = o.reshape(q, [n, 1, inner, l]);
        let q = o.transpose(q, [0, 1, 3, 2]);
        let k = o.conv_bn(x.clone(), &self.key, &self.key_bn);
        let k = o.relu(k);
        let k = o.reshape(k, [n, 1, inner, l]);
        let affinity = o.matmul(q, k);
        let affinity = o.softmax(affinity, 3);
        let v = o.conv(x.clone(), &self.value);
        let v = o.reshape(v, [n, 1, c, l]);
        let affinity_t = o.transpose(affinity, [0, 1, 3, 2]);
        let weights = o.matmul(v, affinity_t);
        let weights = o.reshape(weights, [n, c, h, w]);
        let gamma = o.param(&self.gamma);
        let scaled = o.mul(weights, gamma);
        o.add(scaled, x)
    }
}

/// Channel affinity attention (no parameters but its scale).
#[derive(Module, Debug)]
pub struct ChannelAttention<B: Backend> {
    pub gamma: Param<Tensor<B, 4>>,
}

impl<B: Backend> ChannelAttention<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [n, c, h, w] = o.shape(&x);
        let flat = o.reshape(x.clone(), [n, 1, c, h * w]);
        let flat_t = o.transpose(flat.clone(), [0, 1, 3, 2]);
        let affinity = o.matmul(flat.clone(), flat_t);
        let max = o.reduce_max(affinity.clone(), 3);
        let affinity = o.sub(max, affinity);
        let affinity = o.softmax(affinity, 3);
        let weights = o.matmul(affinity, flat);
        let weights = o.reshape(weights, [n, c, h, w]);
        let gamma = o.param(&self.gamma);
        let scaled = o.mul(weights, gamma);
        o.add(scaled, x)
    }
}

/// One decoder stage: 2x2 transposed conv, concatenation with the skip, double conv.
#[derive(Module, Debug)]
pub struct CsUp<B: Backend> {
    pub deconv: Upsample2x<B>,
    pub conv: DoubleConv<B>,
}

#[derive(Module, Debug)]
pub struct CsNet<B: Backend> {
    /// enc_input, encoder1..encoder4.
    pub encoders: Vec<ResEncoder<B>>,
    pub spatial: SpatialAttention<B>,
    pub channel: ChannelAttention<B>,
    pub attention_fuse: Conv2d<B>,
    /// Deepest first.
    pub up: Vec<CsUp<B>>,
    pub head: Head<B>,
}

impl ArchConfig for CsNetConfig {
    type Model<B: Backend> = CsNet<B>;
    const NAME: &'static str = "csnet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Mou et al., CS-Net: Channel and Spatial Attention Network for Curvilinear Structure Segmentation, MICCAI 2019";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << DEPTH
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        // 4..64 channels (at 2..32 the loss fell 9% in the zoo test's 8 steps, short of 10%).
        Self {
            base_width: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> CsNet<B> {
        let width = |l: usize| self.base_width << l;
        let encoders = (0..=DEPTH)
            .map(|l| {
                let input = if l == 0 {
                    self.in_channels
                } else {
                    width(l - 1)
                };
                ResEncoder::new(input, width(l), device)
            })
            .collect();
        let deep = width(DEPTH);
        let up = (0..DEPTH)
            .rev()
            .map(|l| CsUp {
                deconv: Upsample2x::transposed(width(l + 1), width(l), device),
                conv: DoubleConv::new(2 * width(l), width(l), device),
            })
            .collect();
        CsNet {
            encoders,
            spatial: SpatialAttention::new(deep, device),
            channel: ChannelAttention {
                gamma: zero_scalar(device),
            },
            attention_fuse: conv2d(2 * deep, deep, 1, true, device),
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for CsNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips: Vec<O::T> = Vec::new();
        for (l, enc) in self.encoders.iter().enumerate() {
            let y = o.scoped(&format!("enc{l}"), |o| {
                let input = match skips.last() {
                    Some(prev) => pool2x(o, prev.clone()),
                    None => x.clone(),
                };
                enc.run(o, input)
            });
            skips.push(y);
        }
        let deepest = skips.pop().expect("the bottleneck");
        o.tap(crate::network::ENCODER_TAP, &deepest);
        let mut x = o.scoped("attention", |o| {
            let sab = o.scoped("spatial", |o| self.spatial.run(o, deepest.clone()));
            let cab = o.scoped("channel", |o| self.channel.run(o, deepest.clone()));
            let attention = o.add(sab, cab);
            let cat = o.concat(vec![deepest, attention], 1);
            o.conv(cat, &self.attention_fuse)
        });
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let up = stage.deconv.run(o, x);
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
    use burn::backend::Flex;

    #[test]
    fn the_default_keeps_the_input_size() {
        let dev = Default::default();
        let mut cfg = CsNetConfig::default();
        cfg.set_io(3, 2);
        let graph = crate::network::export_graph(&cfg.init::<Flex>(&dev), [1, 3, 64, 64]);
        let out = graph.shape(graph.output.expect("an output"));
        assert_eq!(out, [1, 2, 64, 64]);
        eprintln!("csnet default parameters: {}", graph.parameter_count());
    }
}
