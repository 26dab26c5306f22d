//! HarDNet-MSEG (Huang, Wu & Lin, "HarDNet-MSEG: A Simple Encoder-Decoder Polyp Segmentation
//! Neural Network that Achieves over 0.9 Mean Dice and 86 FPS", arXiv 2101.07172, 2021) and
//! JMedSeg's altered version: a HarDNet-68 encoder ([`crate::backbones::hardnet`]), a
//! receptive-field block (RFB) on each of its deeper stage outputs, and PraNet's cascaded
//! partial decoder ("aggregation"), which multiplies each finer map by up-sampled coarser
//! ones before concatenating, ending at 1/8 of the input, bilinearly up-sampled by 8.
//!
//! As JMedSeg's `hardnet` (`HarDNet.HarDMSEG`, RFB width 32): RFBs on the 1/8, 1/16 and 1/32
//! outputs (320, 640, 1024 channels). An RFB has four branches, a 1x1 conv and three chains
//! of 1x1, 1xk, kx1 and 3x3 at dilation k (k = 3, 5, 7), concatenated, a 3x3 conv, plus a 1x1
//! shortcut, ReLU of the sum. Every conv there and in the aggregation is conv(no bias)-BN
//! with no activation (the `BasicConv2d` of PraNet's and JMedSeg's code defines a ReLU and
//! never calls it: kept so). Up-sampling is bilinear without corner alignment (Jittor's
//! default, which JMedSeg's code gets; PraNet's PyTorch code aligns corners).
//!
//! `hardnet-alt` (JMedSeg's `HarDNet_alter.HarDMSEG_alter`): a fourth RFB on the 1/4 output
//! (128 channels) and a fourth aggregation step that joins it, so the decoder ends at 1/4
//! and up-samples by 4.
//!
//! Departures: none in structure; the encoder reads the data's channels (JMedSeg's 3).

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::hardnet::{HarDNet, HarDNetConfig};
use crate::blocks::{ConvBn, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

const BILINEAR: ResizeMode = ResizeMode::Bilinear {
    align_corners: false,
};

/// What both variants are configured by (`hardnet` and `hardnet-alt` differ in structure,
/// not in options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarDMsegSpec {
    pub in_channels: usize,
    pub num_classes: usize,
    pub backbone: HarDNetConfig,
    /// Width of the RFBs and the aggregation (32).
    pub channel: usize,
}

impl Default for HarDMsegSpec {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: HarDNetConfig::default(),
            channel: 32,
        }
    }
}

impl HarDMsegSpec {
    fn tiny() -> Self {
        Self {
            backbone: HarDNetConfig::tiny(),
            channel: 4,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.channel == 0 {
            return Err("channel must be > 0".into());
        }
        self.backbone.validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.backbone.scale_widths(scale);
        self.channel = scaled_width(self.channel, scale, 1);
    }

    /// `branches`: 3 (HarDNet-MSEG) or 4 (JMedSeg's altered one).
    fn init<B: Backend>(&self, branches: usize, device: &B::Device) -> HarDMseg<B> {
        let c = self.channel;
        let widths = self.backbone.stage_widths();
        HarDMseg {
            hardnet: self.backbone.init(self.in_channels, device),
            // Finest first: the altered network's 1/4 RFB, then 1/8, 1/16, 1/32.
            rfb: widths[4 - branches..]
                .iter()
                .map(|&w| Rfb::new(w, c, device))
                .collect(),
            agg: Aggregation::new(c, branches, self.num_classes, device),
        }
    }
}

/// A receptive-field block (PraNet's `RFB_modified`).
#[derive(Module, Debug)]
pub struct Rfb<B: Backend> {
    pub branch0: ConvBn<B>,
    /// Branches 1..3: 1x1, 1xk, kx1, 3x3 at dilation k (k = 3, 5, 7).
    pub branches: Vec<Vec<ConvBn<B>>>,
    pub conv_cat: ConvBn<B>,
    pub conv_res: ConvBn<B>,
}

impl<B: Backend> Rfb<B> {
    fn new(input: usize, c: usize, device: &B::Device) -> Self {
        Self {
            branch0: ConvBn::new(input, c, [1, 1], device),
            branches: [3, 5, 7]
                .iter()
                .map(|&k| {
                    vec![
                        ConvBn::new(input, c, [1, 1], device),
                        ConvBn::new(c, c, [1, k], device),
                        ConvBn::new(c, c, [k, 1], device),
                        ConvBn::dilated(c, c, 3, k, device),
                    ]
                })
                .collect(),
            conv_cat: ConvBn::new(4 * c, c, [3, 3], device),
            conv_res: ConvBn::new(input, c, [1, 1], device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut parts = vec![self.branch0.run(o, x.clone())];
        for chain in &self.branches {
            let mut y = x.clone();
            for conv in chain {
                y = conv.run(o, y);
            }
            parts.push(y);
        }
        let cat = o.concat(parts, 1);
        let y = self.conv_cat.run(o, cat);
        let res = self.conv_res.run(o, x);
        let sum = o.add(y, res);
        o.relu(sum)
    }
}

/// PraNet's partial decoder, with JMedSeg's fourth step when it has four inputs.
#[derive(Module, Debug)]
pub struct Aggregation<B: Backend> {
    /// `conv_upsample1..5` (6 in the altered one), as in JMedSeg.
    pub conv_upsample: Vec<ConvBn<B>>,
    /// `conv_concat2`, `3` (and `4`): after each concatenation, at 2c, 3c (4c).
    pub conv_concat: Vec<ConvBn<B>>,
    pub conv4: ConvBn<B>,
    pub conv5: Head<B>,
}

impl<B: Backend> Aggregation<B> {
    fn new(c: usize, branches: usize, classes: usize, device: &B::Device) -> Self {
        let conv = |w: usize| ConvBn::new(w, w, [3, 3], device);
        let mut conv_upsample: Vec<ConvBn<B>> = (0..4).map(|_| conv(c)).collect();
        conv_upsample.push(conv(2 * c));
        if branches == 4 {
            conv_upsample.push(conv(3 * c));
        }
        let conv_concat: Vec<ConvBn<B>> = (2..=branches).map(|k| conv(k * c)).collect();
        Self {
            conv_upsample,
            conv_concat,
            conv4: conv(branches * c),
            conv5: Head::new(branches * c, classes, device),
        }
    }

    /// `xs`: the RFB outputs, coarsest first (JMedSeg's x1 = 1/32, x2 = 1/16, x3 = 1/8, and in
    /// the altered one x4 = 1/4).
    fn run<O: Ops<B>>(&self, o: &mut O, xs: Vec<O::T>) -> O::T {
        let up = |o: &mut O, x: O::T| {
            let [_, _, h, w] = o.shape(&x);
            o.resize(x, [2 * h, 2 * w], BILINEAR)
        };
        let cu = &self.conv_upsample;
        let (x1, x2, x3) = (xs[0].clone(), xs[1].clone(), xs[2].clone());
        // x2_1 = cu1(up(x1)) * x2
        let u1 = up(o, x1.clone());
        let a = cu[0].run(o, u1.clone());
        let x2_1 = o.mul(a, x2.clone());
        // x3_1 = cu2(up(up(x1))) * cu3(up(x2)) * x3
        let uu1 = up(o, u1.clone());
        let a = cu[1].run(o, uu1);
        let u2 = up(o, x2);
        let b = cu[2].run(o, u2);
        let ab = o.mul(a, b);
        let x3_1 = o.mul(ab, x3);
        // x2_2 = cc2(cat(x2_1, cu4(up(x1))))
        let d = cu[3].run(o, u1);
        let cat = o.concat(vec![x2_1, d], 1);
        let x2_2 = self.conv_concat[0].run(o, cat);
        // x3_2 = cc3(cat(x3_1, cu5(up(x2_2))))
        let u = up(o, x2_2);
        let e = cu[4].run(o, u);
        let cat = o.concat(vec![x3_1, e], 1);
        let mut y = self.conv_concat[1].run(o, cat);
        if let (Some(x4), Some(cu6), Some(cc4)) = (xs.get(3), cu.get(5), self.conv_concat.get(2)) {
            // JMedSeg's fourth step: x4_1 = cc4(cat(x4, cu6(up(x3_2)))).
            let u = up(o, y);
            let f = cu6.run(o, u);
            let cat = o.concat(vec![x4.clone(), f], 1);
            y = cc4.run(o, cat);
        }
        let y = self.conv4.run(o, y);
        self.conv5.run(o, y)
    }
}

#[derive(Module, Debug)]
pub struct HarDMseg<B: Backend> {
    pub hardnet: HarDNet<B>,
    /// One RFB per decoded stage, finest first.
    pub rfb: Vec<Rfb<B>>,
    pub agg: Aggregation<B>,
}

impl<B: Backend> Network<B> for HarDMseg<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let stages = o.scoped("hardnet", |o| self.hardnet.run(o, x));
        o.tap(
            crate::network::ENCODER_TAP,
            stages.last().expect("four stages"),
        );
        let decoded = &stages[stages.len() - self.rfb.len()..];
        let mut rfb: Vec<O::T> = o.scoped("rfb", |o| {
            self.rfb
                .iter()
                .zip(decoded)
                .map(|(r, s)| r.run(o, s.clone()))
                .collect()
        });
        rfb.reverse();
        let y = o.scoped("aggregation", |o| self.agg.run(o, rfb));
        SegOutput::logits(o.resize(y, [height, width], BILINEAR))
    }
}

macro_rules! hardmseg_config {
    ($(#[$doc:meta])* $config:ident, $name:literal, $branches:literal, $paper:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $config(pub HarDMsegSpec);

        impl ArchConfig for $config {
            type Model<B: Backend> = HarDMseg<B>;
            const NAME: &'static str = $name;
            const FAMILY: &'static str = "natural";
            const PAPER: &'static str = $paper;

            crate::network::io_fields!(0);

            fn size_multiple(&self) -> usize {
                32
            }

            fn validate(&self) -> Result<(), String> {
                self.0.validate()
            }

            fn scale_widths(&mut self, scale: f64) {
                self.0.scale_widths(scale)
            }

            fn init<B: Backend>(&self, device: &B::Device) -> HarDMseg<B> {
                self.0.init($branches, device)
            }

            fn tiny() -> Self {
                Self(HarDMsegSpec::tiny())
            }
        }
    };
}

hardmseg_config!(
    /// HarDNet-MSEG: three RFBs, decoded at 1/8.
    HarDMsegConfig,
    "hardnet",
    3,
    "Huang, Wu & Lin, HarDNet-MSEG: A Simple Encoder-Decoder Polyp Segmentation Neural \
     Network that Achieves over 0.9 Mean Dice and 86 FPS, arXiv 2101.07172, 2021"
);
hardmseg_config!(
    /// JMedSeg's altered HarDNet-MSEG: a fourth RFB on the 1/4 stage, decoded at 1/4.
    HarDMsegAltConfig,
    "hardnet-alt",
    4,
    "JMedSeg's HarDNet_alter: HarDNet-MSEG (Huang, Wu & Lin, arXiv 2101.07172, 2021) with a \
     fourth, 1/4-resolution decoder branch"
);

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// Both keep the input size; the altered one decodes at 1/4 with 4c channels.
    #[test]
    fn both_variants_keep_the_input_size() {
        let dev = Default::default();
        let mut plain = HarDMsegConfig::default();
        plain.set_io(1, 2);
        let mut alt = HarDMsegAltConfig::default();
        alt.set_io(1, 2);
        let plain = plain.init::<Flex>(&dev);
        let alt = alt.init::<Flex>(&dev);
        assert_eq!(plain.rfb.len(), 3);
        assert_eq!(alt.agg.conv4.conv.weight.dims()[0], 128);
        for (name, graph) in [
            (
                "hardnet",
                crate::network::export_graph(&plain, [1, 1, 64, 64]),
            ),
            (
                "hardnet-alt",
                crate::network::export_graph(&alt, [1, 1, 64, 64]),
            ),
        ] {
            assert_eq!(
                graph.shape(graph.output.expect("an output")),
                [1, 2, 64, 64]
            );
            eprintln!("{name} parameters: {}", graph.parameter_count());
        }
    }
}
