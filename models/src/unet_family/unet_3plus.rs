//! UNet 3+ (Huang et al., ICASSP 2020): full-scale skip connections and full-scale deep
//! supervision.
//!
//! The encoder is UNet's (double conv-BN-ReLU, widths 64..1024 over 4 max-poolings). Each
//! decoder stage `X_De^l` takes every scale: the shallower encoder maps max-pooled down to its
//! resolution (kernel = stride = 2^(l-i), ceil mode), the encoder map of its own level, and the
//! bottleneck and every deeper decoder stage bilinearly up-sampled to it; each of these
//! `depth + 1` inputs goes through its own 3x3 conv-BN-ReLU to `skip_width` (64) channels, the
//! five are concatenated (5 x 64 = 320 channels) and fused by one 3x3 conv-BN-ReLU to 320.
//! With deep supervision (the paper's training; on by default) a 3x3 convolution makes class
//! logits from every decoder stage and from the bottleneck, bilinearly up-sampled to the input
//! size; the side ones are auxiliary outputs while training, and the export has only the
//! finest stage's logits.
//!
//! Departures:
//! - The classification-guided module (a classifier on the bottleneck whose arg-max zeroes the
//!   side outputs of images without the organ) is left out: it needs an image-level label and
//!   its own classification loss, which medseg's objectives do not have (no auxiliary-output
//!   kind for it), and its arg-max gate has no [`Ops`] counterpart; JMedSeg leaves it out too.
//! - Outputs are logits for the softmax losses; the paper's code and JMedSeg's deep-supervision
//!   variant apply a sigmoid to each output.
//! - JMedSeg registers its variant without deep supervision and with a 1x1 output convolution
//!   (`deep_supervision=false` here, with the paper code's 3x3 head kept); its deep-supervision
//!   variant has the same structure as this file's default. Convolutions followed by
//!   BatchNorm have no bias (BatchNorm's shift makes it redundant).
//! - Bilinear up-sampling uses half-pixel centres (PyTorch's and Jittor's default).
//!
//! Parameters: 26.97 M in the paper and in JMedSeg's code (3 input channels, 2 classes); the
//! default here exports 26.96 M (BatchNorm folded into the convolutions).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{ConvBnRelu, DoubleConv, conv2d, unet_down_stages, unet_encoder};
use crate::network::{ArchConfig, Aux, AuxKind, Network, SegOutput, scaled_width};
use crate::ops::{Ops, Pool, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNet3PlusConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels of the first encoder stage (the paper's 64); each deeper stage doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings (the paper's 4).
    pub depth: usize,
    /// Channels each scale is brought to before concatenation (the paper's 64); a decoder
    /// stage has `(depth + 1) * skip_width` channels.
    pub skip_width: usize,
    /// Logits from every decoder stage and the bottleneck, trained as side outputs.
    pub deep_supervision: bool,
}

impl Default for UNet3PlusConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            depth: 4,
            skip_width: 64,
            deep_supervision: true,
        }
    }
}

/// One decoder stage: a conv-BN-ReLU per scale (shallowest first, then the bottleneck last
/// among the deeper ones in order of depth), and the fusing conv-BN-ReLU.
#[derive(Module, Debug)]
pub struct FullScaleStage<B: Backend> {
    /// `scales[s]` reads scale `s` (0 = finest encoder level, `depth` = bottleneck).
    pub scales: Vec<ConvBnRelu<B>>,
    pub fuse: ConvBnRelu<B>,
}

#[derive(Module, Debug)]
pub struct UNet3Plus<B: Backend> {
    pub stem: DoubleConv<B>,
    pub down: Vec<DoubleConv<B>>,
    /// Decoder stages, deepest (level `depth - 1`) first.
    pub decoder: Vec<FullScaleStage<B>>,
    /// 3x3 output convolutions: `heads[l]` reads decoder level `l` (`heads[depth]` the
    /// bottleneck); only `heads[0]` without deep supervision.
    pub heads: Vec<Conv2d<B>>,
}

impl ArchConfig for UNet3PlusConfig {
    type Model<B: Backend> = UNet3Plus<B>;
    const NAME: &'static str = "unet3p";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Huang et al., UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation, ICASSP 2020";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        if self.skip_width == 0 {
            return Err("skip_width must be > 0".into());
        }
        if self.depth == 0 || self.depth > 6 {
            return Err(format!("depth {} must be within 1..=6", self.depth));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.skip_width = scaled_width(self.skip_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            depth: 3,
            skip_width: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> UNet3Plus<B> {
        let width = |level: usize| self.base_width << level;
        let stage_width = (self.depth + 1) * self.skip_width;
        // What scale `s` holds when decoder level `l` reads it.
        let scale_width = |s: usize, l: usize| {
            if s <= l || s == self.depth {
                width(s)
            } else {
                stage_width
            }
        };
        let decoder = (0..self.depth)
            .rev()
            .map(|l| FullScaleStage {
                scales: (0..=self.depth)
                    .map(|s| ConvBnRelu::new(scale_width(s, l), self.skip_width, 3, device))
                    .collect(),
                fuse: ConvBnRelu::new(stage_width, stage_width, 3, device),
            })
            .collect();
        let heads = if self.deep_supervision {
            (0..=self.depth)
                .map(|l| {
                    let from = if l == self.depth {
                        width(l)
                    } else {
                        stage_width
                    };
                    conv2d(from, self.num_classes, 3, true, device)
                })
                .collect()
        } else {
            vec![conv2d(stage_width, self.num_classes, 3, true, device)]
        };
        UNet3Plus {
            stem: DoubleConv::new(self.in_channels, width(0), device),
            down: unet_down_stages(self.base_width, self.depth, device),
            decoder,
            heads,
        }
    }
}

const BILINEAR: ResizeMode = ResizeMode::Bilinear {
    align_corners: false,
};

impl<B: Backend> Network<B> for UNet3Plus<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, in_h, in_w] = o.shape(&x);
        let encoder = unet_encoder(o, &self.stem, &self.down, x);
        let depth = encoder.len() - 1;
        // `stages[l]`: decoder level l (the bottleneck stands in for level `depth`).
        let mut stages: Vec<Option<O::T>> = vec![None; depth + 1];
        stages[depth] = Some(encoder[depth].clone());
        for (k, stage) in self.decoder.iter().enumerate() {
            let l = depth - 1 - k;
            let [_, _, h, w] = o.shape(&encoder[l]);
            let y = o.scoped(&format!("dec{l}"), |o| {
                let parts = stage
                    .scales
                    .iter()
                    .enumerate()
                    .map(|(s, conv)| {
                        let input = if s < l {
                            let k = 1 << (l - s);
                            let pool = Pool {
                                ceil_mode: true,
                                ..Pool::square(k)
                            };
                            o.max_pool(encoder[s].clone(), pool)
                        } else if s == l {
                            encoder[s].clone()
                        } else {
                            let deeper = stages[s].clone().expect("deeper stages come first");
                            o.resize(deeper, [h, w], BILINEAR)
                        };
                        conv.run(o, input)
                    })
                    .collect();
                let cat = o.concat(parts, 1);
                stage.fuse.run(o, cat)
            });
            stages[l] = Some(y);
        }
        let finest = stages[0].clone().expect("decoder level 0");
        let logits = o.scoped("head", |o| o.conv(finest, &self.heads[0]));
        let mut out = SegOutput::logits(logits);
        if o.training() {
            for (l, head) in self.heads.iter().enumerate().skip(1) {
                let value = o.scoped(&format!("side{l}"), |o| {
                    let features = stages[l].clone().expect("every level");
                    let side = o.conv(features, head);
                    o.resize(side, [in_h, in_w], BILINEAR)
                });
                out.aux.push(Aux {
                    name: format!("dec{l}"),
                    kind: AuxKind::SideLogits,
                    value,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{export_graph, forward};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn the_default_has_the_papers_parameter_count() {
        let mut c = UNet3PlusConfig::default();
        c.set_io(3, 2);
        let net = c.init::<Flex>(&Default::default());
        let n = export_graph(&net, [1, 3, 32, 32]).parameter_count();
        // The paper's 26.97 M (and JMedSeg's code: 26,969,538).
        assert!(
            (n as f64 - 26_969_538.0).abs() < 0.1 * 26_969_538.0,
            "{n} parameters"
        );
    }

    #[test]
    fn deep_supervision_gives_full_size_side_logits_while_training_only() {
        let dev = Default::default();
        let c = UNet3PlusConfig::tiny();
        let net = c.init::<Autodiff<Flex>>(&dev);
        let x = Tensor::random([1, 1, 16, 16], Distribution::Default, &dev);
        let out = forward(&net, x);
        assert_eq!(out.aux.len(), c.depth);
        for aux in &out.aux {
            assert_eq!(aux.kind, AuxKind::SideLogits);
            assert_eq!(aux.value.dims(), [1, 2, 16, 16]);
        }
        let plain = UNet3PlusConfig {
            deep_supervision: false,
            ..c
        }
        .init::<Autodiff<Flex>>(&dev);
        let x = Tensor::random([1, 1, 16, 16], Distribution::Default, &dev);
        assert!(forward(&plain, x).aux.is_empty());
    }
}
