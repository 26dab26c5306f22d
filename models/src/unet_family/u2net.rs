//! U2-Net (Qin et al., "U2-Net: Going Deeper with Nested U-Structure for Salient Object
//! Detection", Pattern Recognition 2020) and its small version U2-Net† (`u2netp`), as in
//! JMedSeg's `model/U2Net.py`.
//!
//! A UNet of six stages whose every stage is itself a small UNet, a residual U-block
//! ([`crate::blocks::rsu`]): encoder stages RSU-7, RSU-6, RSU-5, RSU-4, RSU-4F, RSU-4F with
//! 2x2 max pooling (ceil mode) between them, decoder stages RSU-4F, RSU-4, RSU-5, RSU-6,
//! RSU-7, each reading the concatenation of the deeper result (bilinearly resized to the
//! skip's size) and the encoder stage of its level. Six side outputs, a 3x3 conv (with bias)
//! to class logits on each decoder stage and on the deepest encoder stage, are bilinearly
//! resized to the input size and fused by a 1x1 conv over their concatenation. The fused map
//! is the output (and the only exported one); while training, the six side outputs are
//! auxiliary [`AuxKind::SideLogits`]. The full model's widths (mid, out) per stage are the
//! paper's (32..256 / 64..512, 44.0 M parameters); U2-Net† has 16 / 64 everywhere (1.1 M).
//!
//! Departures:
//! - Side outputs and the fused output are class logits (`num_classes` channels, softmax over
//!   classes), trained with the same class loss as the main output (medseg's objective, its
//!   auxiliary weight), where the paper has one sigmoid channel per output and the sum of
//!   seven BCE losses (JMedSeg: the sum of seven cross-entropies, 2 classes).
//! - The 3x3 convs before BatchNorm have no bias (JMedSeg's and the paper's have one, which
//!   BatchNorm cancels): a few thousand parameters fewer, the same function.
//! - `size_multiple` is 32: the network itself takes any size (ceil-mode pooling, resizing to
//!   the skip's size), but at multiples of 32 every pooling is exact and every resize an exact
//!   2x, which is what the export parity is checked on (JMedSeg trains at 512, the paper 320).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::rsu::{Rsu, pool2x_ceil, upsample_like};
use crate::blocks::{Head, conv2d};
use crate::network::{ArchConfig, Aux, AuxKind, Network, SegOutput, scaled_width};
use crate::ops::Ops;

/// Encoder stages (the decoder has one fewer).
pub const STAGES: usize = 6;

/// What both U2-Net sizes are configured by (`u2net` and `u2netp` differ in defaults only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct U2NetSpec {
    pub in_channels: usize,
    pub num_classes: usize,
    /// `[mid, out]` channels of encoder stages 1..=6 (RSU-7, 6, 5, 4, 4F, 4F).
    pub encoder: [[usize; 2]; STAGES],
    /// `[mid, out]` channels of decoder stages 1..=5 (RSU-7, 6, 5, 4, 4F; stage 5 runs first).
    pub decoder: [[usize; 2]; STAGES - 1],
}

impl U2NetSpec {
    /// The paper's full model.
    pub fn full() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            encoder: [
                [32, 64],
                [32, 128],
                [64, 256],
                [128, 512],
                [256, 512],
                [256, 512],
            ],
            decoder: [[16, 64], [32, 64], [64, 128], [128, 256], [256, 512]],
        }
    }

    /// The paper's small model (U2-Net†).
    pub fn small() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            encoder: [[16, 64]; STAGES],
            decoder: [[16, 64]; STAGES - 1],
        }
    }

    /// The full model's structure at 2..8 channels (widths growing with depth).
    fn tiny_full() -> Self {
        Self {
            encoder: [[2, 4], [2, 4], [2, 4], [4, 8], [4, 8], [4, 8]],
            decoder: [[2, 4], [2, 4], [2, 4], [4, 8], [4, 8]],
            ..Self::full()
        }
    }

    /// The small model's structure at 2 and 4 channels (the same widths everywhere).
    fn tiny_small() -> Self {
        Self {
            encoder: [[2, 4]; STAGES],
            decoder: [[2, 4]; STAGES - 1],
            ..Self::small()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self
            .encoder
            .iter()
            .chain(&self.decoder)
            .flatten()
            .any(|&w| w == 0)
        {
            return Err("every encoder and decoder width must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        for w in self.encoder.iter_mut().chain(&mut self.decoder).flatten() {
            *w = scaled_width(*w, scale, 1);
        }
    }

    /// RSU height and dilation of stage `s` (0-based, encoder and decoder alike).
    fn block(s: usize) -> (usize, bool) {
        match s {
            0..=3 => (7 - s, false),
            _ => (4, true),
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> U2Net<B> {
        let mut input = self.in_channels;
        let encoder = (0..STAGES)
            .map(|s| {
                let (height, dilated) = Self::block(s);
                let [mid, out] = self.encoder[s];
                let rsu = Rsu::new(height, dilated, input, mid, out, device);
                input = out;
                rsu
            })
            .collect();
        // Decoder stage s reads the deeper result and encoder stage s.
        let decoder = (0..STAGES - 1)
            .map(|s| {
                let (height, dilated) = Self::block(s);
                let deeper = if s == STAGES - 2 {
                    self.encoder[STAGES - 1][1]
                } else {
                    self.decoder[s + 1][1]
                };
                let [mid, out] = self.decoder[s];
                Rsu::new(
                    height,
                    dilated,
                    deeper + self.encoder[s][1],
                    mid,
                    out,
                    device,
                )
            })
            .collect();
        let side_inputs = self
            .decoder
            .iter()
            .map(|d| d[1])
            .chain([self.encoder[STAGES - 1][1]]);
        let sides = side_inputs
            .map(|c| conv2d(c, self.num_classes, 3, true, device))
            .collect();
        U2Net {
            encoder,
            decoder,
            sides,
            fuse: Head::new(STAGES * self.num_classes, self.num_classes, device),
        }
    }
}

/// U2-Net at either size.
#[derive(Module, Debug)]
pub struct U2Net<B: Backend> {
    /// Stages 1..=6.
    pub encoder: Vec<Rsu<B>>,
    /// Stages 1..=5 (index = level; run deepest first).
    pub decoder: Vec<Rsu<B>>,
    /// Side output convs on decoder stages 1..=5, then on encoder stage 6.
    pub sides: Vec<Conv2d<B>>,
    /// 1x1 conv over the six concatenated side outputs.
    pub fuse: Head<B>,
}

impl<B: Backend> Network<B> for U2Net<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let mut skips: Vec<O::T> = Vec::with_capacity(STAGES);
        let mut h = x;
        for (s, stage) in self.encoder.iter().enumerate() {
            h = o.scoped(&format!("en{}", s + 1), |o| {
                let input = if s > 0 {
                    o.max_pool(h, pool2x_ceil())
                } else {
                    h
                };
                stage.run(o, input)
            });
            skips.push(h.clone());
        }
        let deepest = skips.pop().expect("six encoder stages");
        o.tap(crate::network::ENCODER_TAP, &deepest);
        // Decoder results, deepest first; the side outputs read them and the deepest stage.
        let mut features = vec![deepest.clone()];
        let mut d = deepest;
        for (s, stage) in self.decoder.iter().enumerate().rev() {
            let skip = skips.pop().expect("one skip per decoder stage");
            d = o.scoped(&format!("de{}", s + 1), |o| {
                let [_, _, h, w] = o.shape(&skip);
                let up = upsample_like(o, d, [h, w]);
                let cat = o.concat(vec![up, skip], 1);
                stage.run(o, cat)
            });
            features.push(d.clone());
        }
        features.reverse(); // decoder stages 1..=5, then encoder stage 6
        let sides: Vec<O::T> = self
            .sides
            .iter()
            .zip(features)
            .enumerate()
            .map(|(k, (conv, f))| {
                o.scoped(&format!("side{}", k + 1), |o| {
                    let logits = o.conv(f, conv);
                    upsample_like(o, logits, [height, width])
                })
            })
            .collect();
        let fused = o.scoped("fuse", |o| {
            let cat = o.concat(sides.clone(), 1);
            self.fuse.run(o, cat)
        });
        let mut out = SegOutput::logits(fused);
        if o.training() {
            for (k, value) in sides.into_iter().enumerate() {
                out.aux.push(Aux {
                    name: format!("side{}", k + 1),
                    kind: AuxKind::SideLogits,
                    value,
                });
            }
        }
        out
    }
}

/// `u2net` and `u2netp`: the same network and options, two registry names and defaults.
macro_rules! u2net_config {
    ($(#[$doc:meta])* $config:ident, $name:literal, $default:expr, $tiny:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $config(pub U2NetSpec);

        impl Default for $config {
            fn default() -> Self {
                Self($default)
            }
        }

        impl ArchConfig for $config {
            type Model<B: Backend> = U2Net<B>;
            const NAME: &'static str = $name;
            const FAMILY: &'static str = "unet";
            const PAPER: &'static str = "Qin et al., U2-Net: Going Deeper with Nested U-Structure for Salient Object Detection, Pattern Recognition 106, 2020";

            crate::network::io_fields!(0);

            fn size_multiple(&self) -> usize {
                1 << (STAGES - 1)
            }

            fn validate(&self) -> Result<(), String> {
                self.0.validate()
            }

            fn scale_widths(&mut self, scale: f64) {
                self.0.scale_widths(scale)
            }

            fn init<B: Backend>(&self, device: &B::Device) -> U2Net<B> {
                self.0.init(device)
            }

            fn tiny() -> Self {
                Self($tiny)
            }
        }
    };
}

u2net_config!(
    /// The full U2-Net (44.0 M parameters).
    U2NetConfig,
    "u2net",
    U2NetSpec::full(),
    U2NetSpec::tiny_full()
);
u2net_config!(
    /// The small U2-Net† (1.1 M parameters).
    U2NetPConfig,
    "u2netp",
    U2NetSpec::small(),
    U2NetSpec::tiny_small()
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    fn parameters<C: ArchConfig>(mut config: C) -> usize {
        config.set_io(3, 2);
        let model = config.init::<Flex>(&Default::default());
        export_graph(&model, [1, 3, 32, 32]).parameter_count()
    }

    #[test]
    fn parameter_counts_match_jmedseg() {
        // JMedSeg's model/U2Net.py: 44.0 M and 1.1 M (3 input channels, 2 classes).
        for (count, reference) in [
            (parameters(U2NetConfig::default()), 44.0e6),
            (parameters(U2NetPConfig::default()), 1.1e6),
        ] {
            let ratio = count as f64 / reference;
            eprintln!("{count} parameters (JMedSeg: {reference})");
            assert!((0.9..=1.1).contains(&ratio), "{count} vs {reference}");
        }
    }
}
