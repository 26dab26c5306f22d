//! Grouped convolutions whose groups talk through a channel roll ("shift"), and the 4x4
//! stride-4 stem and output of JMedSeg's lightweight OneNet and LightNet (a course project's
//! design, described in JMedSeg's README: instead of a channel shuffle, the channels are
//! rolled by part of a group so that each group mixes only with its neighbour).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;

use crate::ops::Ops;

/// Grouped `k`x`k` convolution (no bias, "same" padding, optionally dilated), GroupNorm with
/// one group per convolution group, ReLU, then the channels rolled by `shift`.
#[derive(Module, Debug)]
pub struct ShiftGroupConv<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: GroupNorm<B>,
    pub shift: usize,
}

impl<B: Backend> ShiftGroupConv<B> {
    /// `groups` groups of `in_group` -> `out_group` channels.
    pub fn new(
        [in_group, out_group]: [usize; 2],
        groups: usize,
        kernel: usize,
        dilation: usize,
        shift: usize,
        device: &B::Device,
    ) -> Self {
        let pad = dilation * (kernel / 2);
        Self {
            conv: Conv2dConfig::new([in_group * groups, out_group * groups], [kernel, kernel])
                .with_groups(groups)
                .with_dilation([dilation, dilation])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            norm: GroupNormConfig::new(groups, out_group * groups).init(device),
            shift,
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv(x, &self.conv);
        let y = o.group_norm(y, &self.norm);
        let y = o.relu(y);
        roll_channels(o, y, self.shift)
    }
}

/// The channels rolled by `shift` (PyTorch's `roll(shift, dim=1)`): channel `c` of the
/// result is channel `(c - shift) mod C` of `x`.
pub fn roll_channels<B: Backend, O: Ops<B>>(o: &mut O, x: O::T, shift: usize) -> O::T {
    let c = o.shape(&x)[1];
    let shift = shift % c;
    if shift == 0 {
        return x;
    }
    let tail = o.slice(x.clone(), 1, c - shift, c);
    let head = o.slice(x, 1, 0, c - shift);
    o.concat(vec![tail, head], 1)
}

/// The 4x4 stride-4 convolution (with bias) that embeds non-overlapping 4x4 patches.
pub fn patch_stem<B: Backend>(in_ch: usize, out_ch: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([in_ch, out_ch], [4, 4])
        .with_stride([4, 4])
        .init(device)
}

/// The 4x4 stride-4 transposed convolution (with bias) back to the input resolution.
pub fn patch_output<B: Backend>(
    in_ch: usize,
    out_ch: usize,
    device: &B::Device,
) -> ConvTranspose2d<B> {
    ConvTranspose2dConfig::new([in_ch, out_ch], [4, 4])
        .with_stride([4, 4])
        .init(device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burn_ops::BurnOps;
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    #[test]
    fn roll_moves_channels_up_and_wraps_the_last_ones_around() {
        let dev = Default::default();
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(vec![0f32, 1., 2., 3., 4.], [1, 5, 1, 1]),
            &dev,
        );
        let mut o = BurnOps::new(&dev);
        let y = roll_channels(&mut o, x, 2);
        let values: Vec<f32> = y.into_data().to_vec().unwrap();
        assert_eq!(values, vec![3., 4., 0., 1., 2.]);
    }
}
