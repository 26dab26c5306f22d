//! MultiResUNet (Ibtehaz & Rahman, "MultiResUNet: Rethinking the U-Net architecture for
//! multimodal biomedical image segmentation", Neural Networks 2020).
//!
//! MultiRes blocks replace the UNet's double convolutions: a chain of three 3x3
//! conv-BN-ReLU layers (the second and third approximating 5x5 and 7x7 receptive fields)
//! whose outputs are concatenated, with `W = alpha * U` channels split `int(0.167 W)`,
//! `int(0.333 W)`, `int(0.5 W)` (alpha = 1.67, `U` = 32, 64, .., 512), BatchNorm, plus a
//! 1x1 conv-BN shortcut, ReLU, BatchNorm. Res paths replace the plain skips: chains of
//! (3x3 conv-BN-ReLU + 1x1 conv-BN shortcut, ReLU, BatchNorm) of length 4, 3, 2, 1 from the
//! shallowest skip down. The decoder up-samples with 2x2 transposed convolutions to `U`
//! channels and concatenates `[up-sampled, res path]`. As JMedSeg's `multires`
//! (model/MultiResUNet.py, nf = 32): 7.24 M parameters with 3 input channels and 2 classes
//! (its structure, counted; the paper states 7.26 M).
//!
//! Departures: convolutions pad with zeros (the paper's Keras `padding='same'`) where
//! JMedSeg pads by reflection (medseg's ops have only constant padding); the head is
//! JMedSeg's 1x1 convolution followed by BatchNorm, producing logits (the paper's head ends
//! in a sigmoid, which the losses apply here). Convolutions before BatchNorm have no bias, as
//! in JMedSeg. No dropout (JMedSeg's default).

use burn::module::Module;
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{ConvBn, ConvBnRelu, Upsample2x, pool2x};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiResUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// `U` of the first level (JMedSeg's nf = 32); each deeper level doubles it.
    pub base_width: usize,
    /// Width multiplier `alpha` of the MultiRes blocks (`W = alpha * U`; the paper's 1.67).
    pub alpha: f64,
    /// Number of 2x down-samplings (res path lengths are depth, depth-1, .., 1).
    pub depth: usize,
}

impl Default for MultiResUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 32,
            alpha: 1.67,
            depth: 4,
        }
    }
}

/// The three chained widths of a MultiRes block for `u` (truncated, as the paper's code).
pub fn multires_widths(u: usize, alpha: f64) -> [usize; 3] {
    let w = alpha * u as f64;
    [
        (w * 0.167) as usize,
        (w * 0.333) as usize,
        (w * 0.5) as usize,
    ]
}

/// The smallest `U` whose narrowest MultiRes branch has a channel.
fn min_width(alpha: f64) -> usize {
    (1..=1 << 16)
        .find(|&u| multires_widths(u, alpha)[0] >= 1)
        .unwrap_or(1 << 16)
}

#[derive(Module, Debug)]
pub struct MultiResBlock<B: Backend> {
    pub shortcut: ConvBn<B>,
    pub conv3: ConvBnRelu<B>,
    pub conv5: ConvBnRelu<B>,
    pub conv7: ConvBnRelu<B>,
    pub norm_cat: BatchNorm<B>,
    pub norm_out: BatchNorm<B>,
}

impl<B: Backend> MultiResBlock<B> {
    fn new(in_ch: usize, u: usize, alpha: f64, device: &B::Device) -> Self {
        let [a, b, c] = multires_widths(u, alpha);
        let out = a + b + c;
        Self {
            shortcut: ConvBn::new(in_ch, out, [1, 1], device),
            conv3: ConvBnRelu::new(in_ch, a, 3, device),
            conv5: ConvBnRelu::new(a, b, 3, device),
            conv7: ConvBnRelu::new(b, c, 3, device),
            norm_cat: BatchNormConfig::new(out).init(device),
            norm_out: BatchNormConfig::new(out).init(device),
        }
    }

    fn out_channels(u: usize, alpha: f64) -> usize {
        multires_widths(u, alpha).iter().sum()
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let shortcut = self.shortcut.run(o, x.clone());
        let c3 = self.conv3.run(o, x);
        let c5 = self.conv5.run(o, c3.clone());
        let c7 = self.conv7.run(o, c5.clone());
        let cat = o.concat(vec![c3, c5, c7], 1);
        let cat = o.batch_norm(cat, &self.norm_cat);
        let sum = o.add(shortcut, cat);
        let y = o.relu(sum);
        o.batch_norm(y, &self.norm_out)
    }
}

/// One step of a res path: 3x3 conv-BN-ReLU plus a 1x1 conv-BN shortcut, ReLU, BatchNorm.
#[derive(Module, Debug)]
pub struct ResPathBlock<B: Backend> {
    pub shortcut: ConvBn<B>,
    pub conv: ConvBnRelu<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ResPathBlock<B> {
    fn new(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self {
            shortcut: ConvBn::new(in_ch, out_ch, [1, 1], device),
            conv: ConvBnRelu::new(in_ch, out_ch, 3, device),
            norm: BatchNormConfig::new(out_ch).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let shortcut = self.shortcut.run(o, x.clone());
        let y = self.conv.run(o, x);
        let sum = o.add(shortcut, y);
        let y = o.relu(sum);
        o.batch_norm(y, &self.norm)
    }
}

/// One decoder level: 2x2 transposed convolution, concatenation with the res path, MultiRes
/// block.
#[derive(Module, Debug)]
pub struct MultiResUpStage<B: Backend> {
    pub up: Upsample2x<B>,
    pub block: MultiResBlock<B>,
}

#[derive(Module, Debug)]
pub struct MultiResUNet<B: Backend> {
    /// `depth + 1` encoder MultiRes blocks, shallowest first.
    pub down: Vec<MultiResBlock<B>>,
    /// Res path of level `l` has `depth - l` blocks.
    pub paths: Vec<Vec<ResPathBlock<B>>>,
    /// Decoder levels, deepest first.
    pub up: Vec<MultiResUpStage<B>>,
    /// 1x1 convolution and BatchNorm to the class logits.
    pub head: ConvBn<B>,
}

impl ArchConfig for MultiResUNetConfig {
    type Model<B: Backend> = MultiResUNet<B>;
    const NAME: &'static str = "multires";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Ibtehaz & Rahman, MultiResUNet: Rethinking the U-Net \
        Architecture for Multimodal Biomedical Image Segmentation, Neural Networks 121, 2020";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 16.0) {
            return Err(format!("alpha {} must be within (0, 16]", self.alpha));
        }
        let min = min_width(self.alpha);
        if self.base_width < min {
            return Err(format!(
                "base_width {} must be >= {min} at alpha {} (every MultiRes branch needs a channel)",
                self.base_width, self.alpha
            ));
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("depth {} must be within 1..=6", self.depth));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, min_width(self.alpha));
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            depth: 3,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> MultiResUNet<B> {
        let u = |level: usize| self.base_width << level;
        let out = |level: usize| MultiResBlock::<B>::out_channels(u(level), self.alpha);
        let down = (0..=self.depth)
            .map(|l| {
                let input = if l == 0 { self.in_channels } else { out(l - 1) };
                MultiResBlock::new(input, u(l), self.alpha, device)
            })
            .collect();
        let paths = (0..self.depth)
            .map(|l| {
                (0..self.depth - l)
                    .map(|k| {
                        let input = if k == 0 { out(l) } else { u(l) };
                        ResPathBlock::new(input, u(l), device)
                    })
                    .collect()
            })
            .collect();
        let up = (0..self.depth)
            .rev()
            .map(|l| MultiResUpStage {
                up: Upsample2x::transposed(out(l + 1), u(l), device),
                block: MultiResBlock::new(2 * u(l), u(l), self.alpha, device),
            })
            .collect();
        MultiResUNet {
            down,
            paths,
            up,
            head: ConvBn::new(out(0), self.num_classes, [1, 1], device),
        }
    }
}

impl<B: Backend> Network<B> for MultiResUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut skips: Vec<O::T> = Vec::with_capacity(self.paths.len());
        let mut y = x;
        for (l, block) in self.down.iter().enumerate() {
            y = o.scoped(&format!("down{l}"), |o| block.run(o, y));
            if let Some(path) = self.paths.get(l) {
                let skip = o.scoped(&format!("respath{l}"), |o| {
                    path.iter().fold(y.clone(), |s, b| b.run(o, s))
                });
                skips.push(skip);
                y = pool2x(o, y);
            }
        }
        o.tap(crate::network::ENCODER_TAP, &y);
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            y = o.scoped(&format!("up{i}"), |o| {
                let up = stage.up.run(o, y);
                let cat = o.concat(vec![up, skip], 1);
                stage.block.run(o, cat)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, y)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    #[test]
    fn widths_follow_the_paper() {
        assert_eq!(multires_widths(32, 1.67), [8, 17, 26]);
        assert_eq!(min_width(1.67), 4);
    }

    /// JMedSeg's MultiResUnet (nf = 32, 3 input channels, 2 classes), counted from its code:
    /// 7,244,828 (the paper states 7.26 M).
    #[test]
    fn default_has_jmedseg_parameter_count() {
        let mut c = MultiResUNetConfig::default();
        c.set_io(3, 2);
        let model = c.init::<Flex>(&Default::default());
        let n = export_graph(&model, [1, 3, 32, 32]).parameter_count() as f64;
        assert!((n / 7_244_828.0 - 1.0).abs() < 0.10, "{n}");
    }
}
