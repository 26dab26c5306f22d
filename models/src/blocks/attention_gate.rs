//! The additive attention gate of Attention U-Net (Oktay et al., MIDL 2018), shared by every
//! member that gates its skip connections (attunet, r2attunet).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;

use crate::blocks::conv2d;
use crate::ops::Ops;

/// Additive attention gate: coefficients in (0, 1) per pixel, multiplied onto the skip.
#[derive(Module, Debug)]
pub struct AttentionGate<B: Backend> {
    pub w_g: Conv2d<B>,
    pub bn_g: BatchNorm<B>,
    pub w_x: Conv2d<B>,
    pub bn_x: BatchNorm<B>,
    pub psi: Conv2d<B>,
    pub bn_psi: BatchNorm<B>,
}

impl<B: Backend> AttentionGate<B> {
    pub fn new(gate_ch: usize, skip_ch: usize, inner: usize, device: &B::Device) -> Self {
        Self {
            w_g: conv2d(gate_ch, inner, 1, true, device),
            bn_g: BatchNormConfig::new(inner).init(device),
            w_x: conv2d(skip_ch, inner, 1, true, device),
            bn_x: BatchNormConfig::new(inner).init(device),
            psi: conv2d(inner, 1, 1, true, device),
            bn_psi: BatchNormConfig::new(1).init(device),
        }
    }

    /// `x` gated by `g` (same spatial size).
    pub fn run<O: Ops<B>>(&self, o: &mut O, g: O::T, x: O::T) -> O::T {
        let g1 = o.conv_bn(g, &self.w_g, &self.bn_g);
        let x1 = o.conv_bn(x.clone(), &self.w_x, &self.bn_x);
        let sum = o.add(g1, x1);
        let a = o.relu(sum);
        let psi = o.conv_bn(a, &self.psi, &self.bn_psi);
        let coefficients = o.sigmoid(psi);
        o.mul(x, coefficients)
    }
}
