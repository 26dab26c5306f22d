//! The residual U-block (RSU) of U2-Net (Qin et al., Pattern Recognition 2020): a small UNet
//! inside a block, whose output is added to the block's input projection.
//!
//! RSU-L: an input conv (`in -> out`), then `L - 1` encoder convs (`out -> mid`, then
//! `mid -> mid`), each but the first after a 2x2 max pooling with ceil mode, a bridge conv with
//! dilation 2, and `L - 1` decoder convs reading the concatenation of the deeper result
//! (bilinearly resized to the skip's size, half-pixel centres) and the skip (the last one
//! gives `out` channels); the result plus the input conv's output. RSU-LF ("F": dilated) keeps
//! the resolution: no pooling and no resizing; encoder conv `i` (from 0, bridge included) has
//! dilation `2^i` and each decoder conv its skip's. Every conv is 3x3, BatchNorm, ReLU.

use burn::module::Module;
use burn::nn::conv::Conv2dConfig;
use burn::nn::{BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::blocks::ConvBnRelu;
use crate::ops::{Ops, Pool, ResizeMode};

/// A 3x3 conv-BN-ReLU with dilation `d` (padding `d`, so the size is kept).
pub fn dilated_conv_bn_relu<B: Backend>(
    in_ch: usize,
    out_ch: usize,
    d: usize,
    device: &B::Device,
) -> ConvBnRelu<B> {
    ConvBnRelu {
        conv: Conv2dConfig::new([in_ch, out_ch], [3, 3])
            .with_dilation([d, d])
            .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
            // No bias: BatchNorm's shift makes it redundant.
            .with_bias(false)
            .init(device),
        norm: BatchNormConfig::new(out_ch).init(device),
    }
}

/// One residual U-block, RSU-L or RSU-LF.
#[derive(Module, Debug)]
pub struct Rsu<B: Backend> {
    /// `in -> out`, the residual's other branch.
    pub input: ConvBnRelu<B>,
    /// `L` convs, shallowest first; the last is the bridge (no pooling before it).
    pub encoder: Vec<ConvBnRelu<B>>,
    /// `L - 1` convs, deepest first.
    pub decoder: Vec<ConvBnRelu<B>>,
    /// RSU-LF: dilations instead of pooling.
    pub dilated: bool,
}

impl<B: Backend> Rsu<B> {
    /// RSU-`height` (`dilated`: RSU-`height`F) taking `in_ch` to `out_ch` through `mid_ch`.
    pub fn new(
        height: usize,
        dilated: bool,
        in_ch: usize,
        mid_ch: usize,
        out_ch: usize,
        device: &B::Device,
    ) -> Self {
        assert!(height >= 2, "an RSU needs a height of at least 2");
        // Dilation of encoder conv `i` (the bridge is `height - 1`).
        let dilation = |i: usize| {
            if dilated {
                1 << i
            } else if i == height - 1 {
                2
            } else {
                1
            }
        };
        let encoder = (0..height)
            .map(|i| {
                let input = if i == 0 { out_ch } else { mid_ch };
                dilated_conv_bn_relu(input, mid_ch, dilation(i), device)
            })
            .collect();
        // Decoder conv for skip `i` (deepest first), as dilated as its skip.
        let decoder = (0..height - 1)
            .rev()
            .map(|i| {
                let out = if i == 0 { out_ch } else { mid_ch };
                let d = if dilated { dilation(i) } else { 1 };
                dilated_conv_bn_relu(2 * mid_ch, out, d, device)
            })
            .collect();
        Self {
            input: dilated_conv_bn_relu(in_ch, out_ch, 1, device),
            encoder,
            decoder,
            dilated,
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let residual = o.scoped("in", |o| self.input.run(o, x));
        let (bridge, skips) = self.encoder.split_last().expect("an RSU has encoder convs");
        let mut skip_values: Vec<O::T> = Vec::with_capacity(skips.len());
        let mut h = residual.clone();
        for (i, conv) in skips.iter().enumerate() {
            h = o.scoped(&format!("en{}", i + 1), |o| {
                let input = if i > 0 && !self.dilated {
                    o.max_pool(h, pool2x_ceil())
                } else {
                    h
                };
                conv.run(o, input)
            });
            skip_values.push(h.clone());
        }
        let mut d = o.scoped("bridge", |o| bridge.run(o, h));
        for (j, conv) in self.decoder.iter().enumerate() {
            let skip = skip_values.pop().expect("one skip per decoder conv");
            d = o.scoped(&format!("de{}", skip_values.len() + 1), |o| {
                let deeper = if j > 0 && !self.dilated {
                    let [_, _, h, w] = o.shape(&skip);
                    upsample_like(o, d, [h, w])
                } else {
                    d
                };
                let cat = o.concat(vec![deeper, skip], 1);
                conv.run(o, cat)
            });
        }
        o.add(d, residual)
    }
}

/// 2x2 max pooling, stride 2, ceil mode (an odd side keeps its last row).
pub fn pool2x_ceil() -> Pool {
    Pool {
        ceil_mode: true,
        ..Pool::square(2)
    }
}

/// Bilinear resizing (half-pixel centres) to `size`: U2-Net's up-sampling to a skip's size.
pub fn upsample_like<B: Backend, O: Ops<B>>(o: &mut O, x: O::T, size: [usize; 2]) -> O::T {
    if o.shape(&x)[2..] == size {
        return x;
    }
    let mode = ResizeMode::Bilinear {
        align_corners: false,
    };
    o.resize(x, size, mode)
}
