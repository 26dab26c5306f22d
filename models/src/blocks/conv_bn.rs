//! A convolution of any kernel, stride and dilation followed by BatchNorm and no activation:
//! the unit of HRNet's fusion paths and of HarDNet-MSEG's receptive-field blocks, where the
//! activation (if any) comes after a sum, and of MultiResUNet's shortcuts.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::ops::Ops;

#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ConvBn<B> {
    /// Stride 1, "same" padding (odd kernel sides), no bias (BatchNorm's shift replaces it).
    pub fn new(in_ch: usize, out_ch: usize, kernel: [usize; 2], device: &B::Device) -> Self {
        Self::build(in_ch, out_ch, kernel, 1, 1, device)
    }

    /// A `k`x`k` convolution moving by `stride`, padded by `k / 2` (PyTorch's usual).
    pub fn strided(
        in_ch: usize,
        out_ch: usize,
        k: usize,
        stride: usize,
        device: &B::Device,
    ) -> Self {
        Self::build(in_ch, out_ch, [k, k], stride, 1, device)
    }

    /// A `k`x`k` convolution at dilation `d`, padded to keep the size.
    pub fn dilated(in_ch: usize, out_ch: usize, k: usize, d: usize, device: &B::Device) -> Self {
        Self::build(in_ch, out_ch, [k, k], 1, d, device)
    }

    fn build(
        in_ch: usize,
        out_ch: usize,
        [kh, kw]: [usize; 2],
        stride: usize,
        d: usize,
        device: &B::Device,
    ) -> Self {
        let (ph, pw) = (d * (kh / 2), d * (kw / 2));
        Self {
            conv: Conv2dConfig::new([in_ch, out_ch], [kh, kw])
                .with_stride([stride, stride])
                .with_dilation([d, d])
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(out_ch).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        o.conv_bn(x, &self.conv, &self.norm)
    }
}
