//! TernausNet (Iglovikov & Shvets, 2018): a UNet whose encoder is VGG's convolution stages
//! (meant to start from ImageNet weights) and whose decoder blocks are a 3x3 conv-ReLU and a
//! 2x up-sampling, each block's output concatenated with the VGG stage of the same size.
//!
//! Encoder: VGG's five stages (no BatchNorm) give the skips at strides 1..16; the fifth is
//! max-pooled once more for the centre block (stride 32). Decoder, with `f = num_filters`
//! (32): centre 16f -> 8f, then blocks on [deeper, skip] with inner width 16f, 16f, 8f, 4f
//! and outputs 8f, 8f (VGG11: 4f), 2f, f, a last 3x3 conv-ReLU at full size and a 1x1 head.
//!
//! The paper's network uses VGG11 and, in each decoder block, a 3x3 transposed convolution of
//! stride 2 (then ReLU). JMedSeg's `ternaus` is the authors' later VGG16 version (`UNet16`)
//! with its default decoder, which up-samples bilinearly and applies two 3x3 conv-ReLUs.
//! The default here is JMedSeg's (`encoder=vgg16`, `upsampling=bilinear`); `encoder=vgg11`
//! gives the paper's encoder and widths, and `upsampling=transposed` the transposed
//! convolutions (3x3, output padding 1 with VGG11 as in the paper; 4x4 with VGG16, as the
//! authors' `UNet16` does when asked for them). The encoder starts from random weights (as
//! JMedSeg's: not pre-trained); loading ImageNet weights is a later issue, so the paper's
//! main point, the pre-trained encoder, is not yet there. JMedSeg states no parameter count;
//! this default has 29.3 M (3 input channels;
//! VGG11: 22.9 M).

use burn::module::Module;
use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::vgg::{Vgg, VggConfig, VggDepth, vgg_stage_width};
use crate::blocks::{Head, conv2d, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};
use crate::unet_family::unet::Upsampling;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TernausNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// VGG16 (JMedSeg's, the authors' later version) or VGG11 (the paper's).
    pub encoder: VggDepth,
    /// First VGG stage's channels (VGG's 64).
    pub base_width: usize,
    /// The decoder's unit width (the paper's 32).
    pub num_filters: usize,
    /// Bilinear + two conv-ReLUs (JMedSeg's) or conv-ReLU + transposed conv (the paper's).
    pub upsampling: Upsampling,
}

impl Default for TernausNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            encoder: VggDepth::Vgg16,
            base_width: 64,
            num_filters: 32,
            upsampling: Upsampling::Bilinear,
        }
    }
}

/// Decoder block: bilinear 2x, conv-ReLU, conv-ReLU; or conv-ReLU, transposed conv, ReLU.
#[derive(Module, Debug)]
pub struct TernausUp<B: Backend> {
    pub conv: Conv2d<B>,
    pub conv2: Option<Conv2d<B>>,
    pub deconv: Option<ConvTranspose2d<B>>,
}

impl<B: Backend> TernausUp<B> {
    fn new(
        cfg: &TernausNetConfig,
        (input, middle, out): (usize, usize, usize),
        device: &B::Device,
    ) -> Self {
        let conv = conv2d(input, middle, 3, true, device);
        match cfg.upsampling {
            Upsampling::Bilinear => Self {
                conv,
                conv2: Some(conv2d(middle, out, 3, true, device)),
                deconv: None,
            },
            Upsampling::Transposed => {
                let (k, pad_out) = match cfg.encoder {
                    VggDepth::Vgg11 => (3, 1),
                    VggDepth::Vgg16 => (4, 0),
                };
                let deconv = ConvTranspose2dConfig::new([middle, out], [k, k])
                    .with_stride([2, 2])
                    .with_padding([1, 1])
                    .with_padding_out([pad_out, pad_out])
                    .init(device);
                Self {
                    conv,
                    conv2: None,
                    deconv: Some(deconv),
                }
            }
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        match (&self.conv2, &self.deconv) {
            (Some(conv2), _) => {
                let [_, _, h, w] = o.shape(&x);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                let up = o.resize(x, [2 * h, 2 * w], mode);
                let y = o.conv(up, &self.conv);
                let y = o.relu(y);
                let y = o.conv(y, conv2);
                o.relu(y)
            }
            (None, Some(deconv)) => {
                let y = o.conv(x, &self.conv);
                let y = o.relu(y);
                let y = o.conv_transpose(y, deconv);
                o.relu(y)
            }
            (None, None) => unreachable!("a decoder block up-samples one way"),
        }
    }
}

#[derive(Module, Debug)]
pub struct TernausNet<B: Backend> {
    pub encoder: Vgg<B>,
    pub center: TernausUp<B>,
    /// dec5 .. dec2.
    pub up: Vec<TernausUp<B>>,
    /// dec1: 3x3 conv-ReLU at full size.
    pub last: Conv2d<B>,
    pub head: Head<B>,
}

impl TernausNetConfig {
    pub(crate) fn vgg(&self) -> VggConfig {
        VggConfig {
            depth: self.encoder,
            in_channels: self.in_channels,
            base_width: self.base_width,
            batch_norm: false,
        }
    }
}

impl ArchConfig for TernausNetConfig {
    type Model<B: Backend> = TernausNet<B>;
    const NAME: &'static str = "ternaus";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Iglovikov & Shvets, TernausNet: U-Net with VGG11 Encoder Pre-Trained on ImageNet for Image Segmentation, arXiv:1801.05746, 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // Four poolings in VGG and one before the centre block.
        32
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.num_filters == 0 {
            return Err("base_width and num_filters must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.num_filters = scaled_width(self.num_filters, scale, 1);
    }

    fn tiny() -> Self {
        // The paper's (shallower) VGG11. Wider than other members' tiny configurations: a
        // plain VGG without BatchNorm at 2-4 channels starts with dead ReLUs and its loss
        // barely moves in 8 steps (measured: -1.5% to -3.5% at widths 2 and 4).
        Self {
            encoder: VggDepth::Vgg11,
            base_width: 8,
            num_filters: 8,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> TernausNet<B> {
        let f = self.num_filters;
        let e = |s: usize| vgg_stage_width(self.base_width, s);
        let d4 = match self.encoder {
            VggDepth::Vgg11 => 4 * f,
            VggDepth::Vgg16 => 8 * f,
        };
        let blocks = [
            (e(4) + 8 * f, 16 * f, 8 * f),
            (e(3) + 8 * f, 16 * f, d4),
            (e(2) + d4, 8 * f, 2 * f),
            (e(1) + 2 * f, 4 * f, f),
        ];
        TernausNet {
            encoder: self.vgg().init(device),
            center: TernausUp::new(self, (e(4), 16 * f, 8 * f), device),
            up: blocks
                .iter()
                .map(|&b| TernausUp::new(self, b, device))
                .collect(),
            last: conv2d(e(0) + f, f, 3, true, device),
            head: Head::new(f, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for TernausNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = o.scoped("encoder", |o| self.encoder.run(o, x));
        let deepest = skips.last().expect("five VGG stages").clone();
        o.tap(crate::network::ENCODER_TAP, &deepest);
        let mut x = o.scoped("center", |o| {
            let pooled = pool2x(o, deepest);
            self.center.run(o, pooled)
        });
        for (i, block) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder block");
            x = o.scoped(&format!("dec{}", 5 - i), |o| {
                let cat = o.concat(vec![x, skip], 1);
                block.run(o, cat)
            });
        }
        let skip = skips.pop().expect("the first VGG stage");
        let y = o.scoped("dec1", |o| {
            let cat = o.concat(vec![x, skip], 1);
            let y = o.conv(cat, &self.last);
            o.relu(y)
        });
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, y)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Every variant keeps the input size; prints the default's parameter count.
    #[test]
    fn every_variant_keeps_the_input_size() {
        let dev = Default::default();
        for (encoder, upsampling) in [
            (VggDepth::Vgg16, Upsampling::Bilinear),
            (VggDepth::Vgg16, Upsampling::Transposed),
            (VggDepth::Vgg11, Upsampling::Bilinear),
            (VggDepth::Vgg11, Upsampling::Transposed),
        ] {
            let cfg = TernausNetConfig {
                encoder,
                upsampling,
                in_channels: 3,
                ..TernausNetConfig::default()
            };
            let graph = crate::network::export_graph(&cfg.init::<Flex>(&dev), [1, 3, 64, 64]);
            let out = graph.shape(graph.output.expect("an output"));
            assert_eq!(out, [1, 2, 64, 64], "{encoder:?} {upsampling:?}");
            eprintln!(
                "ternaus {encoder:?} {upsampling:?}: {} parameters",
                graph.parameter_count()
            );
        }
    }
}
