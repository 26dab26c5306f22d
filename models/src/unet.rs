//! UNet (Ronneberger et al., 2015) with BatchNorm, configurable width, depth and up-sampling.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{DoubleConv, Head, Pool2x, Upsample2x, widen_single_channel_input};
use crate::graph::{Graph, Op, ValueId};

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
    pub pool: Pool2x<B>,
    pub down: Vec<DoubleConv<B>>,
    pub up: Vec<UpStage<B>>,
    pub head: Head<B>,
}

impl UNetConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> UNet<B> {
        let width = |level: usize| self.base_width << level;
        let down = (1..=self.depth)
            .map(|l| DoubleConv::new(width(l - 1), width(l), device))
            .collect();
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
            pool: Pool2x::default(),
            down,
            up,
            head: Head::new(width(0), self.num_classes, device),
        }
    }
}

impl<B: Backend> UNet<B> {
    /// The same network reading `channels` inputs (see [`widen_single_channel_input`]).
    pub fn widen_input(mut self, channels: usize) -> Result<Self, String> {
        self.stem.first.conv = widen_single_channel_input(self.stem.first.conv, channels)?;
        Ok(self)
    }

    /// Logits `[batch, classes, h, w]` for an input `[batch, channels, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut skips = vec![self.stem.forward(x)];
        for stage in &self.down {
            let deepest = skips.last().expect("stem output").clone();
            skips.push(stage.forward(self.pool.forward(deepest)));
        }
        let mut x = skips.pop().expect("bottleneck");
        for stage in &self.up {
            let skip = skips.pop().expect("one skip per decoder stage");
            let up = stage.up.forward(x);
            x = stage.conv.forward(Tensor::cat(vec![skip, up], 1));
        }
        self.head.forward(x)
    }

    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        let mut skips = vec![g.scoped("stem", |g| self.stem.export(g, x))];
        for (i, stage) in self.down.iter().enumerate() {
            let deepest = *skips.last().expect("stem output");
            let y = g.scoped(&format!("down{i}"), |g| {
                let pooled = self.pool.export(g, deepest);
                stage.export(g, pooled)
            });
            skips.push(y);
        }
        let mut x = skips.pop().expect("bottleneck");
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = g.scoped(&format!("up{i}"), |g| {
                let up = stage.up.export(g, x);
                let cat = g.push(Op::ConcatChannels, &[skip, up]);
                stage.conv.export(g, cat)
            });
        }
        g.scoped("head", |g| self.head.export(g, x))
    }
}
