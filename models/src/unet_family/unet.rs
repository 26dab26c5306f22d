//! UNet (Ronneberger et al., 2015) with BatchNorm, configurable width, depth and up-sampling.
//!
//! Departures from the paper: padded ("same") convolutions, so the output has the input's size
//! and skips need no cropping; BatchNorm after every convolution.
//!
//! The default (`base_width` 16, transposed up-convolutions) is small because the demo, the
//! trainer's defaults and stored checkpoints use it. JMedSeg's `unet` is the widely used
//! PyTorch UNet (milesial/Pytorch-UNet, `bilinear=True`) at width 64, 17.3 M parameters: its
//! up-sampling is bilinear, so the bottleneck stage stops at 512 channels instead of 1024 and
//! every decoder stage halves its width in its first convolution (concatenation of `2w`
//! channels, `w` after the first convolution, `w/2` out; the last stage keeps 64).
//! `--model-opt base_width=64 --model-opt layout=jmedseg` builds that layout (17.26 M
//! parameters with 3 input channels and 2 classes, BatchNorm folded; JMedSeg counts 17.27 M
//! with its convolution biases before BatchNorm, which we leave out as redundant). With
//! `layout=jmedseg` up-sampling is always bilinear (half-pixel centres, as Jittor's and
//! PyTorch's default): the `upsampling` option belongs to the classic layout.

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

/// Which channel plan the network follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The paper's: every level doubles the width down to the bottleneck; each decoder stage
    /// concatenates the up-sampled features with the skip and returns to the skip's width.
    #[default]
    Classic,
    /// JMedSeg's (the widely used PyTorch UNet with bilinear up-sampling): the bottleneck keeps
    /// the width of the level above it and each decoder stage halves its width.
    Jmedseg,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first stage; each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings (the input side must be a multiple of 2^depth).
    pub depth: usize,
    /// Up-sampling of the classic layout (the `jmedseg` layout is always bilinear).
    pub upsampling: Upsampling,
    /// Channel plan; absent in configurations stored before it existed (= classic).
    #[serde(default)]
    pub layout: Layout,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 16,
            depth: 4,
            upsampling: Upsampling::Transposed,
            layout: Layout::Classic,
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

    crate::network::io_fields!();

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
        let (down, up) = match self.layout {
            Layout::Classic => (
                unet_down_stages(self.base_width, self.depth, device),
                (0..self.depth)
                    .rev()
                    .map(|l| {
                        // Decoder stage `l` takes the features of level l+1 up to level l.
                        let (deep, skip) = (width(l + 1), width(l));
                        let (up, up_out) = match self.upsampling {
                            Upsampling::Transposed => {
                                (Upsample2x::transposed(deep, skip, device), skip)
                            }
                            Upsampling::Bilinear => (Upsample2x::bilinear(), deep),
                        };
                        UpStage {
                            up,
                            conv: DoubleConv::new(up_out + skip, skip, device),
                        }
                    })
                    .collect(),
            ),
            Layout::Jmedseg => (
                // The bottleneck stays at the width of the level above it.
                (1..=self.depth)
                    .map(|l| {
                        let out = if l == self.depth {
                            width(l - 1)
                        } else {
                            width(l)
                        };
                        DoubleConv::new(width(l - 1), out, device)
                    })
                    .collect(),
                // Decoder stage `l`: `width(l)` up-sampled channels beside the skip's
                // `width(l)`, halved to `width(l)` by the first convolution and to
                // `width(l - 1)` by the second (the last stage keeps `width(0)`).
                (0..self.depth)
                    .rev()
                    .map(|l| UpStage {
                        up: Upsample2x::bilinear(),
                        conv: DoubleConv::with_mid(
                            2 * width(l),
                            width(l),
                            width(l.saturating_sub(1)),
                            device,
                        ),
                    })
                    .collect(),
            ),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;

    fn parameters(config: &UNetConfig) -> usize {
        let net = config.init::<burn::backend::Flex>(&Default::default());
        export_graph(&net, [1, config.in_channels, 64, 64]).parameter_count()
    }

    #[test]
    fn the_jmedseg_layout_at_width_64_has_jmedsegs_parameter_count() {
        // JMedSeg's `unet` (3 input channels, 2 classes): 17,267,458 parameters.
        let mut c = UNetConfig {
            base_width: 64,
            layout: Layout::Jmedseg,
            ..UNetConfig::default()
        };
        c.set_io(3, 2);
        let n = parameters(&c);
        assert!(
            (n as f64 - 17_267_458.0).abs() < 0.1 * 17_267_458.0,
            "{n} parameters"
        );
        // Its classic bilinear layout at the same width is much larger.
        let classic = parameters(&UNetConfig {
            upsampling: Upsampling::Bilinear,
            layout: Layout::Classic,
            ..c.clone()
        });
        assert!(classic > n * 3 / 2, "{classic} vs {n}");
    }

    #[test]
    fn configurations_stored_without_a_layout_load_as_the_classic_one() {
        let old = r#"{"in_channels":1,"num_classes":2,"base_width":16,"depth":4,"upsampling":"transposed"}"#;
        let c: UNetConfig = serde_json::from_str(old).unwrap();
        assert_eq!(c, UNetConfig::default());
    }
}
