//! The recurrent residual convolutional unit of R2U-Net (Alom et al., 2018), shared by the
//! members built from it (r2unet, r2attunet).
//!
//! A recurrent convolutional layer applies one 3x3 convolution (with its normalisation and
//! ReLU) `t + 1` times with the same weights: `h = f(x)`, then `t` times `h = f(x + h)`.
//! The paper's `t = 2` is one convolution followed by two recurrent steps. Normalisation is
//! InstanceNorm without affine parameters, as in JMedSeg's R2UNet (the paper and the reference
//! PyTorch code use BatchNorm).
//!
//! Weights shared across the recurrent steps are stored once in the Burn module; the export
//! graph has one convolution node per step, each marked with the weight's `ParamId`, so
//! `parameter_count()` counts them once and the ONNX writer stores one initializer.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{InstanceNorm, InstanceNormConfig};
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::ops::Ops;

/// 3x3 convolution (with bias), InstanceNorm (no affine), ReLU: R2U-Net's unit.
#[derive(Module, Debug)]
pub struct ConvInRelu<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: InstanceNorm<B>,
}

impl<B: Backend> ConvInRelu<B> {
    pub fn new(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self {
            conv: conv2d(in_ch, out_ch, 3, true, device),
            norm: InstanceNormConfig::new(out_ch)
                .with_affine(false)
                .init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv(x, &self.conv);
        let y = o.instance_norm(y, &self.norm);
        o.relu(y)
    }
}

/// A recurrent convolutional layer: one [`ConvInRelu`] applied `steps + 1` times.
#[derive(Module, Debug)]
pub struct RecurrentConv<B: Backend> {
    pub unit: ConvInRelu<B>,
    /// The paper's `t`: recurrent steps after the first application.
    pub steps: usize,
}

impl<B: Backend> RecurrentConv<B> {
    pub fn new(channels: usize, steps: usize, device: &B::Device) -> Self {
        Self {
            unit: ConvInRelu::new(channels, channels, device),
            steps,
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut h = self.unit.run(o, x.clone());
        for _ in 0..self.steps {
            let sum = o.add(x.clone(), h);
            h = self.unit.run(o, sum);
        }
        h
    }
}

/// The recurrent residual block (RRCNN): a 1x1 convolution to the output width, then two
/// recurrent convolutional layers whose result is added back onto it.
#[derive(Module, Debug)]
pub struct RecurrentResidualBlock<B: Backend> {
    pub project: Conv2d<B>,
    pub first: RecurrentConv<B>,
    pub second: RecurrentConv<B>,
}

impl<B: Backend> RecurrentResidualBlock<B> {
    pub fn new(in_ch: usize, out_ch: usize, steps: usize, device: &B::Device) -> Self {
        Self {
            project: conv2d(in_ch, out_ch, 1, true, device),
            first: RecurrentConv::new(out_ch, steps, device),
            second: RecurrentConv::new(out_ch, steps, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let x = o.conv(x, &self.project);
        let y = self.first.run(o, x.clone());
        let y = self.second.run(o, y);
        o.add(x, y)
    }
}
