//! External attention (Guo, Liu, Mu & Hu, "Beyond Self-attention: External Attention using
//! Two Linear Layers for Visual Tasks", TPAMI 2022): instead of attending to each other, the
//! positions attend to `k` learned memory units (a 1x1 convolution, the "key memory"),
//! normalised twice (softmax over the positions, then each position's weights to sum to one
//! over the units), and read back through a second memory (1x1 convolution k -> c). Linear in
//! the number of positions. Used by EANet and LRF-EANet.

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::nn::BatchNormConfig;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::graph::Weights;
use crate::ops::Ops;

/// The paper's "double normalisation" guard against a zero sum.
const EPSILON: f32 = 1e-9;

/// `relu(x + norm(conv2(M_v(dnorm(M_k(conv1(x)))))))`, as the authors' (and JMedSeg's) block.
#[derive(Module, Debug)]
pub struct ExternalAttention<B: Backend> {
    /// 1x1 convolution c -> c with bias, before the memories.
    pub conv_in: Conv2d<B>,
    /// Key memory: 1x1 convolution c -> k, no bias.
    pub memory_key: Conv2d<B>,
    /// Value memory: 1x1 convolution k -> c, no bias.
    pub memory_value: Conv2d<B>,
    /// 1x1 convolution c -> c, no bias, and its normalisation.
    pub conv_out: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ExternalAttention<B> {
    pub fn new(channels: usize, units: usize, device: &B::Device) -> Self {
        Self {
            conv_in: conv2d(channels, channels, 1, true, device),
            memory_key: conv2d(channels, units, 1, false, device),
            memory_value: conv2d(units, channels, 1, false, device),
            conv_out: conv2d(channels, channels, 1, false, device),
            norm: BatchNormConfig::new(channels).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv(x.clone(), &self.conv_in);
        let scores = o.conv(y, &self.memory_key);
        let [n, k, h, w] = o.shape(&scores);
        // Softmax over the positions, per memory unit.
        let flat = o.reshape(scores, [n, 1, k, h * w]);
        let attention = o.softmax(flat, 3);
        // Then each position's weights over the units sum to one.
        let mean = o.reduce_mean(attention.clone(), 2);
        let sum = o.mul_scalar(mean, k as f32);
        let eps = o.constant(Weights::new(vec![1, 1, 1, 1], vec![EPSILON]));
        let sum = o.add(sum, eps);
        let attention = o.div(attention, sum);
        let attention = o.reshape(attention, [n, k, h, w]);
        let read = o.conv(attention, &self.memory_value);
        let read = o.conv_bn(read, &self.conv_out, &self.norm);
        let y = o.add(read, x);
        o.relu(y)
    }
}
