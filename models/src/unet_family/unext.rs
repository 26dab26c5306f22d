//! UNeXt (Valanarasu & Patel, "UNeXt: MLP-based Rapid Medical Image Segmentation Network",
//! MICCAI 2022).
//!
//! Three convolutional stages (3x3 conv, BatchNorm, 2x max pooling, ReLU; 16, 32, 128
//! channels), then two tokenized MLP stages (160, 256): an overlapping patch embedding (3x3
//! convolution, stride 2) and LayerNorm, a shifted-MLP block (LayerNorm, then: channels split
//! into `shift_size` groups shifted by -2..2 pixels along H, a linear layer, a 3x3 depthwise
//! convolution, GELU, the groups shifted along W, a linear layer; added back residually),
//! LayerNorm. The decoder mirrors it: 3x3 conv, BatchNorm, bilinear 2x up-sampling, ReLU,
//! plus the encoder's features of that resolution (skip additions), with shifted-MLP blocks
//! after the two deepest decoder stages, a last conv at the first width, a 1x1 head. As
//! JMedSeg's `unext` (model/UNext.py): 1.47 M parameters with 3 input channels and 2 classes
//! (its structure, counted; the paper states 1.47 M).
//!
//! Shifts are zero-filled (pad, then slice: what the reference's pad-roll-crop computes) and
//! groups are `torch.chunk`'s (size `ceil(C / shift_size)`, the last one smaller).
//!
//! Departure from JMedSeg: its shifted MLP shifts along H both times (the same axis
//! argument in both rolls); this file shifts along H before the first linear layer and along
//! W before the second, as the paper describes (and its authors' code does). No dropout or
//! drop-path (both 0 in JMedSeg's configuration). Convolutions before BatchNorm have no bias
//! (BatchNorm's shift makes it redundant).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{Head, LayerNorm, conv2d, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNextConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Widths of the three convolutional stages (16, 32, 128).
    pub conv_width1: usize,
    pub conv_width2: usize,
    pub conv_width3: usize,
    /// Widths of the two tokenized MLP stages (160, 256).
    pub token_width1: usize,
    pub token_width2: usize,
    /// MLP hidden width as a multiple of the token width (1).
    pub mlp_ratio: usize,
    /// Number of channel groups, shifted by `-shift_size/2 ..= shift_size/2` (5, odd).
    pub shift_size: usize,
}

impl Default for UNextConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            conv_width1: 16,
            conv_width2: 32,
            conv_width3: 128,
            token_width1: 160,
            token_width2: 256,
            mlp_ratio: 1,
            shift_size: 5,
        }
    }
}

/// `x` `[N, C, H, W]` shifted by `s` pixels along `axis` (2 = H, 3 = W), zeros shifted in.
fn shift_along<B: Backend, O: Ops<B>>(o: &mut O, x: O::T, axis: usize, s: isize) -> O::T {
    if s == 0 {
        return x;
    }
    let len = o.shape(&x)[axis];
    let k = s.unsigned_abs();
    // pads are [top, left, bottom, right].
    let (before, after) = if axis == 2 { (0, 2) } else { (1, 3) };
    let mut pads = [0; 4];
    if s > 0 {
        pads[before] = k;
        let padded = o.pad(x, pads, 0.0);
        o.slice(padded, axis, 0, len)
    } else {
        pads[after] = k;
        let padded = o.pad(x, pads, 0.0);
        o.slice(padded, axis, k, k + len)
    }
}

/// UNeXt's shift: channel group `g` (torch.chunk groups) moved by `g - shift_size / 2`
/// pixels along `axis`.
fn shift_groups<B: Backend, O: Ops<B>>(o: &mut O, x: O::T, axis: usize, shift_size: usize) -> O::T {
    let c = o.shape(&x)[1];
    let chunk = c.div_ceil(shift_size);
    let half = (shift_size / 2) as isize;
    let mut parts = Vec::new();
    let mut start = 0;
    let mut g = 0isize;
    while start < c {
        let end = (start + chunk).min(c);
        let part = if (start, end) == (0, c) {
            x.clone()
        } else {
            o.slice(x.clone(), 1, start, end)
        };
        parts.push(shift_along(o, part, axis, g - half));
        start = end;
        g += 1;
    }
    if parts.len() == 1 {
        parts.pop().expect("one group")
    } else {
        o.concat(parts, 1)
    }
}

/// Image `[N, C, H, W]` to tokens `[N, 1, H*W, C]`.
fn to_tokens<B: Backend, O: Ops<B>>(o: &mut O, x: O::T) -> O::T {
    let [n, c, h, w] = o.shape(&x);
    let t = o.reshape(x, [n, 1, c, h * w]);
    o.transpose(t, [0, 1, 3, 2])
}

/// Tokens `[N, 1, H*W, C]` to an image `[N, C, h, w]`.
fn to_image<B: Backend, O: Ops<B>>(o: &mut O, t: O::T, h: usize, w: usize) -> O::T {
    let [n, _, l, c] = o.shape(&t);
    debug_assert_eq!(l, h * w);
    let t = o.transpose(t, [0, 1, 3, 2]);
    o.reshape(t, [n, c, h, w])
}

/// The shifted-MLP block, on an image `[N, C, H, W]`: `x + MLP(LN(x))`.
#[derive(Module, Debug)]
pub struct ShiftedMlpBlock<B: Backend> {
    pub norm: LayerNorm<B>,
    pub fc1: Linear<B>,
    /// 3x3 depthwise convolution (with bias) on the hidden features.
    pub dwconv: Conv2d<B>,
    pub fc2: Linear<B>,
    pub shift_size: usize,
}

impl<B: Backend> ShiftedMlpBlock<B> {
    fn new(dim: usize, mlp_ratio: usize, shift_size: usize, device: &B::Device) -> Self {
        let hidden = dim * mlp_ratio;
        Self {
            norm: LayerNorm::new(dim, device),
            fc1: LinearConfig::new(dim, hidden).init(device),
            dwconv: Conv2dConfig::new([hidden, hidden], [3, 3])
                .with_groups(hidden)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            fc2: LinearConfig::new(hidden, dim).init(device),
            shift_size,
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [_, _, h, w] = o.shape(&x);
        let t = to_tokens(o, x.clone());
        let t = o.layer_norm(t, &self.norm);
        let img = to_image(o, t, h, w);
        let img = shift_groups(o, img, 2, self.shift_size);
        let t = to_tokens(o, img);
        let t = o.linear(t, &self.fc1);
        let img = to_image(o, t, h, w);
        let img = o.conv(img, &self.dwconv);
        let img = o.gelu(img);
        let img = shift_groups(o, img, 3, self.shift_size);
        let t = to_tokens(o, img);
        let t = o.linear(t, &self.fc2);
        let y = to_image(o, t, h, w);
        o.add(x, y)
    }
}

/// A tokenized MLP stage: overlapping patch embedding (3x3, stride 2) and LayerNorm, a
/// shifted-MLP block, LayerNorm.
#[derive(Module, Debug)]
pub struct TokenStage<B: Backend> {
    pub embed: Conv2d<B>,
    pub embed_norm: LayerNorm<B>,
    pub block: ShiftedMlpBlock<B>,
    pub norm: LayerNorm<B>,
}

/// LayerNorm over the channels of an image `[N, C, H, W]`.
fn channel_layer_norm<B: Backend, O: Ops<B>>(o: &mut O, x: O::T, norm: &LayerNorm<B>) -> O::T {
    let [_, _, h, w] = o.shape(&x);
    let t = to_tokens(o, x);
    let t = o.layer_norm(t, norm);
    to_image(o, t, h, w)
}

impl<B: Backend> TokenStage<B> {
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv(x, &self.embed);
        let y = channel_layer_norm(o, y, &self.embed_norm);
        let y = o.scoped("block", |o| self.block.run(o, y));
        channel_layer_norm(o, y, &self.norm)
    }
}

/// A decoder stage: 3x3 conv (BatchNorm unless last), bilinear 2x, ReLU; then the skip is
/// added and, on the two deepest stages, a shifted-MLP block and LayerNorm follow.
#[derive(Module, Debug)]
pub struct UNextUpStage<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: Option<BatchNorm<B>>,
    pub mlp: Option<ShiftedMlpBlock<B>>,
    pub mlp_norm: Option<LayerNorm<B>>,
}

impl<B: Backend> UNextUpStage<B> {
    /// `last`: the final stage (conv with bias, no BatchNorm).
    fn new(
        in_ch: usize,
        out_ch: usize,
        mlp: Option<(usize, usize)>,
        last: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            conv: conv2d(in_ch, out_ch, 3, last, device),
            norm: (!last).then(|| BatchNormConfig::new(out_ch).init(device)),
            mlp: mlp.map(|(ratio, shift)| ShiftedMlpBlock::new(out_ch, ratio, shift, device)),
            mlp_norm: mlp.map(|_| LayerNorm::new(out_ch, device)),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T, skip: Option<O::T>) -> O::T {
        let y = match &self.norm {
            Some(norm) => o.conv_bn(x, &self.conv, norm),
            None => o.conv(x, &self.conv),
        };
        let [_, _, h, w] = o.shape(&y);
        let mode = ResizeMode::Bilinear {
            align_corners: false,
        };
        let y = o.resize(y, [2 * h, 2 * w], mode);
        let y = o.relu(y);
        let y = match skip {
            Some(s) => o.add(y, s),
            None => y,
        };
        match (&self.mlp, &self.mlp_norm) {
            (Some(mlp), Some(norm)) => {
                let y = o.scoped("block", |o| mlp.run(o, y));
                channel_layer_norm(o, y, norm)
            }
            _ => y,
        }
    }
}

/// A convolutional encoder stage: 3x3 conv, BatchNorm, 2x max pooling, ReLU.
#[derive(Module, Debug)]
pub struct ConvStage<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ConvStage<B> {
    fn new(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self {
            conv: conv2d(in_ch, out_ch, 3, false, device),
            norm: BatchNormConfig::new(out_ch).init(device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv, &self.norm);
        let y = pool2x(o, y);
        o.relu(y)
    }
}

#[derive(Module, Debug)]
pub struct UNext<B: Backend> {
    pub conv_stages: Vec<ConvStage<B>>,
    pub token_stages: Vec<TokenStage<B>>,
    /// Five decoder stages, deepest first; the first two carry shifted-MLP blocks and the
    /// last has no BatchNorm and no skip.
    pub up: Vec<UNextUpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for UNextConfig {
    type Model<B: Backend> = UNext<B>;
    const NAME: &'static str = "unext";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Valanarasu & Patel, UNeXt: MLP-based Rapid Medical Image \
        Segmentation Network, MICCAI 2022";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // Three poolings and two stride-2 patch embeddings.
        32
    }

    fn validate(&self) -> Result<(), String> {
        let widths = [
            ("conv_width1", self.conv_width1),
            ("conv_width2", self.conv_width2),
            ("conv_width3", self.conv_width3),
            ("token_width1", self.token_width1),
            ("token_width2", self.token_width2),
        ];
        if let Some((name, _)) = widths.iter().find(|(_, w)| *w == 0) {
            return Err(format!("{name} must be > 0"));
        }
        if self.mlp_ratio == 0 {
            return Err("mlp_ratio must be >= 1".into());
        }
        if self.shift_size == 0 || self.shift_size.is_multiple_of(2) {
            return Err(format!(
                "shift_size {} must be odd (shifts -s/2..=s/2)",
                self.shift_size
            ));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        for w in [
            &mut self.conv_width1,
            &mut self.conv_width2,
            &mut self.conv_width3,
            &mut self.token_width1,
            &mut self.token_width2,
        ] {
            *w = scaled_width(*w, scale, 1);
        }
    }

    fn tiny() -> Self {
        Self {
            conv_width1: 4,
            conv_width2: 4,
            conv_width3: 8,
            token_width1: 8,
            token_width2: 8,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> UNext<B> {
        let (c1, c2, c3) = (self.conv_width1, self.conv_width2, self.conv_width3);
        let (t1, t2) = (self.token_width1, self.token_width2);
        let token_stage = |i: usize, o: usize| TokenStage {
            embed: Conv2dConfig::new([i, o], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            embed_norm: LayerNorm::new(o, device),
            block: ShiftedMlpBlock::new(o, self.mlp_ratio, self.shift_size, device),
            norm: LayerNorm::new(o, device),
        };
        let mlp = Some((self.mlp_ratio, self.shift_size));
        let up = vec![
            UNextUpStage::new(t2, t1, mlp, false, device),
            UNextUpStage::new(t1, c3, mlp, false, device),
            UNextUpStage::new(c3, c2, None, false, device),
            UNextUpStage::new(c2, c1, None, false, device),
            UNextUpStage::new(c1, c1, None, true, device),
        ];
        UNext {
            conv_stages: vec![
                ConvStage::new(self.in_channels, c1, device),
                ConvStage::new(c1, c2, device),
                ConvStage::new(c2, c3, device),
            ],
            token_stages: vec![token_stage(c3, t1), token_stage(t1, t2)],
            up,
            head: Head::new(c1, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for UNext<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = Vec::new();
        let mut y = x;
        for (i, stage) in self.conv_stages.iter().enumerate() {
            y = o.scoped(&format!("enc{i}"), |o| stage.run(o, y));
            skips.push(y.clone());
        }
        for (i, stage) in self.token_stages.iter().enumerate() {
            y = o.scoped(&format!("tok{i}"), |o| stage.run(o, y));
            skips.push(y.clone());
        }
        // The deepest token stage is the bottleneck, not a skip.
        skips.pop();
        o.tap(crate::network::ENCODER_TAP, &y);
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop();
            y = o.scoped(&format!("up{i}"), |o| stage.run(o, y, skip));
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, y)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    /// JMedSeg's UNext (3 input channels, 2 classes), counted from its code: 1,471,938 (the
    /// paper states 1.47 M).
    #[test]
    fn default_has_jmedseg_parameter_count() {
        let mut c = UNextConfig::default();
        c.set_io(3, 2);
        let model = c.init::<Flex>(&Default::default());
        let n = export_graph(&model, [1, 3, 64, 64]).parameter_count() as f64;
        assert!((n / 1_471_938.0 - 1.0).abs() < 0.10, "{n}");
    }

    /// Groups of torch.chunk (7 channels in 5 groups of 2: four groups, shifts -2..=1), each
    /// moved with zeros shifted in.
    #[test]
    fn shifts_move_channel_groups_with_zero_fill() {
        let dev = Default::default();
        let (c, h, w) = (7, 5, 3);
        let values: Vec<f32> = (0..c * h * w).map(|v| v as f32 + 1.0).collect();
        let x = Tensor::<Flex, 4>::from_data(TensorData::new(values.clone(), [1, c, h, w]), &dev);
        let mut o = crate::burn_ops::BurnOps::new(&dev);
        let y = shift_groups(&mut o, x, 2, 5);
        let y: Vec<f32> = y.into_data().to_vec().unwrap();
        for ch in 0..c {
            let s = (ch / 2) as isize - 2;
            for i in 0..h {
                for j in 0..w {
                    let src = i as isize - s;
                    let want = if (0..h as isize).contains(&src) {
                        values[(ch * h + src as usize) * w + j]
                    } else {
                        0.0
                    };
                    assert_eq!(y[(ch * h + i) * w + j], want, "channel {ch} row {i}");
                }
            }
        }
    }
}
