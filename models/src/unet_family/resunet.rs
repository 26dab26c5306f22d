//! ResUNet as JMedSeg has it (`model/ResUNet.py`): a ResNet encoder (its layers 1-3, output
//! stride 16) under a UNet decoder with bilinear up-sampling.
//!
//! Encoder: the ResNet stem (skip 0, stride 2), max pooling, layer1 (skip 1, stride 4),
//! layer2 (skip 2, stride 8), layer3 (skip 3, stride 16); layer4 is not built. A double conv
//! "bottleneck" keeps layer3's width. Each of the four decoder stages concatenates the deeper
//! features with the skip of the same size, up-samples 2x (bilinear, half-pixel centres) and
//! applies a double conv (conv-BN-ReLU twice) whose inner width is half its input and whose
//! output is the next shallower skip's width (the last: half the stem's); a 1x1 head gives the
//! logits. With JMedSeg's ResNet-101 and deep stem the widths are exactly its: bottleneck
//! 1024, decoder 512, 256, 128, 64.
//!
//! Departures from JMedSeg: the backbone is selectable (`backbone=resnet34|resnet50|
//! resnet101`; JMedSeg offers 50 and 101, default 101) as is the stem (`deep_stem`, default
//! JMedSeg's 3-conv stem; `false` gives torchvision's 7x7); the deep stem ends in BatchNorm
//! and ReLU where JMedSeg's ends in a bare convolution (see [`crate::backbones::resnet`]), so
//! skip 0 is normalised; the transposed-convolution decoder its code also offers is left out
//! (JMedSeg uses the bilinear one). The encoder starts from random weights, as in JMedSeg
//! (its ResNet-101 never loads its checkpoint); loading ImageNet weights is a later issue.
//! JMedSeg states no parameter count; this default has 77.8 M (3 input channels).

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::{ConvBnRelu, DoubleConv, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The ResNet whose stem and layers 1-3 are the encoder.
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64); every width follows from it.
    pub base_width: usize,
    /// JMedSeg's 3-conv stem (true) or torchvision's 7x7 stem.
    pub deep_stem: bool,
}

impl Default for ResUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet101,
            base_width: 64,
            deep_stem: true,
        }
    }
}

impl ResUNetConfig {
    pub(crate) fn backbone_config(&self) -> ResNetConfig {
        ResNetConfig {
            base_width: self.base_width,
            deep_stem: self.deep_stem,
            stages: 3,
            ..ResNetConfig::new(self.backbone, self.in_channels)
        }
    }
}

/// A double conv whose first convolution has its own (inner) width.
#[derive(Module, Debug)]
pub struct ResUNetUp<B: Backend> {
    pub first: ConvBnRelu<B>,
    pub second: ConvBnRelu<B>,
}

#[derive(Module, Debug)]
pub struct ResUNet<B: Backend> {
    pub backbone: ResNet<B>,
    pub bottleneck: DoubleConv<B>,
    /// Deepest first.
    pub up: Vec<ResUNetUp<B>>,
    pub head: Head<B>,
}

impl ArchConfig for ResUNetConfig {
    type Model<B: Backend> = ResUNet<B>;
    const NAME: &'static str = "resunet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (encoder) with the U-Net decoder of Ronneberger et al., MICCAI 2015, as in JMedSeg's ResUNet (THU-CVlab, 2021)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // Layers 1-3 only: output stride 16.
        16
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        // Bottleneck blocks as the default's, at 2..32 channels (ResNet-50's 3/4/6 blocks).
        Self {
            backbone: ResNetDepth::Resnet50,
            base_width: 2,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> ResUNet<B> {
        let bb = self.backbone_config();
        // Skips 0..=3: the stem and layers 1-3.
        let skips = [
            bb.stem_width(),
            bb.stage_width(0),
            bb.stage_width(1),
            bb.stage_width(2),
        ];
        let outs = [(bb.stem_width() / 2).max(1), skips[0], skips[1], skips[2]];
        let up = (0..4)
            .rev()
            .map(|l| {
                let input = 2 * skips[l];
                ResUNetUp {
                    first: ConvBnRelu::new(input, skips[l], 3, device),
                    second: ConvBnRelu::new(skips[l], outs[l], 3, device),
                }
            })
            .collect();
        ResUNet {
            backbone: bb.init(device),
            bottleneck: DoubleConv::new(skips[3], skips[3], device),
            up,
            head: Head::new(outs[0], self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for ResUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let features = o.scoped("backbone", |o| self.backbone.run(o, x));
        let mut skips = vec![features.stem];
        skips.extend(features.stages);
        o.tap(
            crate::network::ENCODER_TAP,
            skips.last().expect("layer3's output"),
        );
        let deepest = skips.last().expect("layer3's output").clone();
        let mut x = o.scoped("bottleneck", |o| self.bottleneck.run(o, deepest));
        for (i, stage) in self.up.iter().enumerate() {
            let skip = skips.pop().expect("one skip per decoder stage");
            x = o.scoped(&format!("up{i}"), |o| {
                let cat = o.concat(vec![skip, x], 1);
                let [_, _, h, w] = o.shape(&cat);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                let up = o.resize(cat, [2 * h, 2 * w], mode);
                let y = stage.first.run(o, up);
                stage.second.run(o, y)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, x)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn jmedseg_widths_and_output_size() {
        let dev = Default::default();
        let mut cfg = ResUNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&dev);
        let widths: Vec<_> = model
            .up
            .iter()
            .map(|u| u.second.conv.weight.dims()[0])
            .collect();
        assert_eq!(widths, [512, 256, 128, 64]);
        assert_eq!(model.bottleneck.second.conv.weight.dims()[0], 1024);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        let out = graph.shape(graph.output.expect("an output"));
        assert_eq!(out, [1, 2, 64, 64]);
        eprintln!("resunet default parameters: {}", graph.parameter_count());
    }
}
