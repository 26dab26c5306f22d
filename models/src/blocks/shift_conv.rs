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

/// The trunk OneNet and LightNet share: a 4x4 stride-4 stem to `stem_groups` groups of
/// `group_width` channels, widening shift convs (each doubles the groups' width, then the next
/// one doubles their number), and a chain of shift convs at the final width with the given
/// dilations, rolled by half a group.
#[derive(Module, Debug)]
pub struct ShiftTrunk<B: Backend> {
    pub stem: Conv2d<B>,
    pub widen: Vec<ShiftGroupConv<B>>,
    pub layers: Vec<ShiftGroupConv<B>>,
}

impl<B: Backend> ShiftTrunk<B> {
    /// Groups of `group_width` in the chain: `stem_groups << widenings`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_ch: usize,
        group_width: usize,
        stem_groups: usize,
        widenings: usize,
        widen_shift: usize,
        dilations: &[usize],
        device: &B::Device,
    ) -> Self {
        let g = group_width;
        let widen = (0..widenings)
            .map(|k| ShiftGroupConv::new([g, 2 * g], stem_groups << k, 3, 1, widen_shift, device))
            .collect();
        let groups = stem_groups << widenings;
        let layers = dilations
            .iter()
            .map(|&d| ShiftGroupConv::new([g, g], groups, 3, d, g / 2, device))
            .collect();
        Self {
            stem: patch_stem(in_ch, stem_groups * g, device),
            widen,
            layers,
        }
    }

    /// Every chain layer's output, first to last (the last offered as the encoder tap).
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> Vec<O::T> {
        let mut h = o.scoped("stem", |o| o.conv(x, &self.stem));
        for (k, stage) in self.widen.iter().enumerate() {
            h = o.scoped(&format!("widen{k}"), |o| stage.run(o, h));
        }
        let mut outputs = Vec::with_capacity(self.layers.len());
        for (k, layer) in self.layers.iter().enumerate() {
            h = o.scoped(&format!("layer{k}"), |o| layer.run(o, h));
            outputs.push(h.clone());
        }
        o.tap(crate::network::ENCODER_TAP, &h);
        outputs
    }
}

/// The dilations of JMedSeg's 16-layer chain (OneNet and LightNet alike).
pub fn jmedseg_dilations() -> Vec<usize> {
    [[1; 3].as_slice(), &[2; 4], &[4; 6], &[8, 16, 32]].concat()
}

/// The chain layers JMedSeg fuses: its `x[2:3] + x[6:7] + x[11:13] + x[-4:]` (layer 12 twice).
pub fn jmedseg_fused_layers() -> Vec<usize> {
    vec![2, 6, 11, 12, 12, 13, 14, 15]
}

/// Checks the trunk's options and the fused layers; the reason names the option.
pub fn validate_trunk(
    group_width: usize,
    stem_groups: usize,
    widenings: usize,
    dilations: &[usize],
    fused: &[usize],
) -> Result<(), String> {
    if group_width == 0 || stem_groups == 0 {
        return Err("group_width and stem_groups must be > 0".into());
    }
    if widenings > 8 {
        return Err("widenings must be at most 8".into());
    }
    if dilations.is_empty() || dilations.contains(&0) {
        return Err("dilations must list at least one layer, each dilation > 0".into());
    }
    if fused.is_empty() || fused.iter().any(|&i| i >= dilations.len()) {
        return Err(format!(
            "fused must list at least one layer, each below the {} of dilations",
            dilations.len()
        ));
    }
    Ok(())
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
