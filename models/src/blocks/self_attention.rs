//! Self-attention over a feature map's positions and over its channels: the context modules
//! of DANet (position and channel attention) and OCNet (object context), after SAGAN and
//! the non-local block. Scores are plain dot products (no 1/sqrt(d)), as in those papers.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::ops::Ops;

/// Every position attends to every other: `softmax(Q^T K)` over the positions, values `V`
/// gathered by it. Query and key are 1x1 convolutions to `key_channels`, the value a 1x1
/// convolution keeping the width; all with bias.
#[derive(Module, Debug)]
pub struct PositionAttention<B: Backend> {
    pub query: Conv2d<B>,
    pub key: Conv2d<B>,
    pub value: Conv2d<B>,
}

impl<B: Backend> PositionAttention<B> {
    pub fn new(channels: usize, key_channels: usize, device: &B::Device) -> Self {
        Self {
            query: conv2d(channels, key_channels, 1, true, device),
            key: conv2d(channels, key_channels, 1, true, device),
            value: conv2d(channels, channels, 1, true, device),
        }
    }

    /// The attended values `[N, C, H, W]` (no residual: DANet and OCNet add it differently).
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [n, c, h, w] = o.shape(&x);
        let q = o.conv(x.clone(), &self.query);
        let k = o.conv(x.clone(), &self.key);
        let v = o.conv(x, &self.value);
        let ck = o.shape(&q)[1];
        // [N, 1, HW, Ck] x [N, 1, Ck, HW]: scores of every query position (row) over keys.
        let q = o.reshape(q, [n, 1, ck, h * w]);
        let q = o.transpose(q, [0, 1, 3, 2]);
        let k = o.reshape(k, [n, 1, ck, h * w]);
        let scores = o.matmul(q, k);
        let attention = o.softmax(scores, 3);
        // [N, 1, C, HW] x [N, 1, HW(keys), HW(queries)].
        let v = o.reshape(v, [n, 1, c, h * w]);
        let attention = o.transpose(attention, [0, 1, 3, 2]);
        let y = o.matmul(v, attention);
        o.reshape(y, [n, c, h, w])
    }
}

/// DANet's channel attention: each channel a softmax-weighted mix of all channels, weights
/// from the channels' dot products over the positions; `gamma * mix + x`, gamma learned from
/// zero. JMedSeg (and so this) applies softmax to the dot products themselves; the DANet
/// authors' code applies it to `max - energy` (a commented-out line in JMedSeg).
#[derive(Module, Debug)]
pub struct ChannelAttention<B: Backend> {
    pub gamma: Param<Tensor<B, 4>>,
}

impl<B: Backend> ChannelAttention<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::zeros([1, 1, 1, 1], device)),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [n, c, h, w] = o.shape(&x);
        let flat = o.reshape(x.clone(), [n, 1, c, h * w]);
        let flat_t = o.transpose(flat.clone(), [0, 1, 3, 2]);
        let energy = o.matmul(flat.clone(), flat_t);
        let attention = o.softmax(energy, 3);
        let mixed = o.matmul(attention, flat);
        let mixed = o.reshape(mixed, [n, c, h, w]);
        let gamma = o.param(&self.gamma);
        let scaled = o.mul(mixed, gamma);
        o.add(scaled, x)
    }
}
