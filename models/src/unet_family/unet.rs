//! UNet (Ronneberger et al., 2015) with BatchNorm, configurable width, depth and up-sampling.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{
    DoubleConv, Head, Upsample2x, unet_down_stages, unet_encoder, widen_single_channel_input,
};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

/// How the decoder doubles the resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Upsampling {
    /// Learned 2x2 transposed convolution (the original UNet "up-conv").
    #[default]
    Transposed,
    /// Parameter-free bilinear interpolation (half-pixel centres).
    Bilinear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage; each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings (the input side must be a multiple of 2^depth).
    pub depth: usize,
    pub upsampling: Upsampling,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 16,
            depth: 4,
            upsampling: Upsampling::Transposed,
        }
    }
}

/// One decoder stage: up-sample, concatenate the skip connection, DoubleConv.
#[derive(Module, Debug)]
pub struct UpStage<B: Backend> {
    pub up: Upsample2x<B>,
    pub conv: DoubleConv<B>,
}

#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    pub stem: DoubleConv<B>,
    pub down: Vec<DoubleConv<B>>,
    pub up: Vec<UpStage<B>>,
    pub head: Head<B>,
}

impl ArchConfig for UNetConfig {
    type Model<B: Backend> = UNet<B>;
    const NAME: &'static str = "unet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation, MICCAI 2015";

    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn set_io(&mut self, in_channels: usize, num_classes: usize) {
        self.in_channels = in_channels;
        self.num_classes = num_classes;
    }

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.depth == 0 || self.depth > 6 {
            return Err("base_width must be > 0 and depth within 1..=6".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            depth: 3,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        let width = |level: usize| self.base_width << level;
        let down = unet_down_stages(self.base_width, self.depth, device);
        let up = (0..self.depth)
            .rev()
            .map(|l| {
                // Decoder stage `l` takes the features of level l+1 up to level l.
                let (deep, skip) = (width(l + 1), width(l));
                let (up, up_out) = match self.upsampling {
                    Upsampling::Transposed => (Upsample2x::transposed(deep, skip, device), skip),
                    Upsampling::Bilinear => (Upsample2x::bilinear(), deep),
                };
                UpStage {
                    up,
                    conv: DoubleConv::new(up_out + skip, skip, device),
                }
            })
            .collect();
        UNet {
            stem: DoubleConv::new(self.in_channels, width(0), device),
            down,
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for UNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips = unet_encoder(o, &self.stem, &self.down, x);
        let mut x = skips.pop().expect("bottleneck");
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let up = stage.up.run(o, x);
                let cat = o.concat(vec![skip, up], 1);
                stage.conv.run(o, cat)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }

    fn widen_input(mut self, channels: usize) -> Result<Self, String> {
        self.stem.first.conv = widen_single_channel_input(self.stem.first.conv, channels)?;
        Ok(self)
    }
}
