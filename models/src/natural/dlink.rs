//! D-LinkNet (Zhou, Zhang & Wu, CVPR workshops 2018): LinkNet (a ResNet encoder whose
//! decoder blocks are added to the encoder features of the same size) with a centre of
//! cascaded dilated convolutions whose outputs are summed with the input, widening the
//! receptive field without losing resolution.
//!
//! As JMedSeg's `dlink` (`DinkNet50`): ResNet-50 stem (7x7) and layers 1-4; centre of five
//! 3x3 convolutions at dilations 1, 2, 4, 8, 16, each ReLU'd and fed to the next, the input
//! plus all five outputs summed (biases start at zero, as in its code); LinkNet decoder
//! blocks `d4 = dec4(c) + e3`, `d3 = dec3(d4) + e2`, `d2 = dec2(d3) + e1`, `d1 = dec1(d2)`;
//! a 4x4 transposed convolution (stride 2) to 32 channels, ReLU, 3x3 conv, ReLU, 3x3 conv.
//! The paper's road-extraction network is the ResNet-34 one with dilations 1, 2, 4, 8:
//! `backbone=resnet34 dilations=1,2,4,8`.
//!
//! Departures: JMedSeg ends with a sigmoid and then trains with softmax cross-entropy on
//! those values, which squeezes the logits into (0, 1): its DLinkNet row is one of the four
//! that collapsed to background (Dice 0.4995 with background included). Here the network
//! outputs logits as every member does. The encoder starts from random weights (JMedSeg's
//! ImageNet flag is on but its ResNet code loads nothing); loading them is a later issue.
//! The centre at ResNet-50 width is most of the network: five 2048-channel 3x3 convolutions,
//! 188.8 M of the default's 217.6 M parameters (3 input channels).

use burn::module::Module;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::dilated_conv;
use crate::blocks::link_decoder::{LinkDecoder, link_head, run_link_decoders, run_link_head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DLinkNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The ResNet encoder (JMedSeg's ResNet-50; the paper's ResNet-34).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// Dilations of the centre's cascaded convolutions.
    pub dilations: Vec<usize>,
    /// Channels of the final up-sampling and convolution (32).
    pub head_width: usize,
}

impl Default for DLinkNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet50,
            base_width: 64,
            dilations: vec![1, 2, 4, 8, 16],
            head_width: 32,
        }
    }
}

impl DLinkNetConfig {
    pub(crate) fn backbone_config(&self) -> ResNetConfig {
        ResNetConfig {
            base_width: self.base_width,
            ..ResNetConfig::new(self.backbone, self.in_channels)
        }
    }
}

/// The dilated centre: `x + sum_i y_i` with `y_i = relu(conv_i(y_{i-1}))`, `y_0 = x`.
#[derive(Module, Debug)]
pub struct DilatedCentre<B: Backend> {
    pub convs: Vec<Conv2d<B>>,
}

impl<B: Backend> DilatedCentre<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut y = x.clone();
        let mut sum = x;
        for conv in &self.convs {
            let z = o.conv(y, conv);
            y = o.relu(z);
            sum = o.add(sum, y.clone());
        }
        sum
    }
}

#[derive(Module, Debug)]
pub struct DLinkNet<B: Backend> {
    pub backbone: ResNet<B>,
    pub dblock: DilatedCentre<B>,
    /// decoder4 .. decoder1.
    pub decoders: Vec<LinkDecoder<B>>,
    pub finaldeconv1: ConvTranspose2d<B>,
    pub finalconv2: Conv2d<B>,
    pub finalconv3: Conv2d<B>,
}

impl ArchConfig for DLinkNetConfig {
    type Model<B: Backend> = DLinkNet<B>;
    const NAME: &'static str = "dlink";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Zhou, Zhang & Wu, D-LinkNet: LinkNet with Pretrained Encoder and \
        Dilated Convolution for High Resolution Satellite Imagery Road Extraction, CVPR \
        Workshops 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // ResNet layers 1-4: output stride 32.
        32
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.head_width == 0 {
            return Err("base_width and head_width must be > 0".into());
        }
        if self.dilations.is_empty() || self.dilations.contains(&0) {
            return Err(format!(
                "dilations must be one or more values >= 1, not {:?}",
                self.dilations
            ));
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.head_width = scaled_width(self.head_width, scale, 1);
    }

    fn tiny() -> Self {
        // Basic blocks, the fewest (ResNet-18), at 8..64 channels as CE-Net's tiny one (the
        // same decoder; narrower ones barely learned in 8 steps there).
        Self {
            backbone: ResNetDepth::Resnet18,
            base_width: 8,
            dilations: vec![1, 2, 4],
            head_width: 16,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> DLinkNet<B> {
        let bb = self.backbone_config();
        let w = |i: usize| bb.stage_width(i);
        let decoders = vec![
            LinkDecoder::new(w(3), w(2), device),
            LinkDecoder::new(w(2), w(1), device),
            LinkDecoder::new(w(1), w(0), device),
            LinkDecoder::new(w(0), w(0), device),
        ];
        let (finaldeconv1, finalconv2, finalconv3) =
            link_head(w(0), self.head_width, self.num_classes, device);
        DLinkNet {
            backbone: bb.init(device),
            dblock: DilatedCentre {
                convs: self
                    .dilations
                    .iter()
                    .map(|&d| dilated_conv(w(3), 3, d, device))
                    .collect(),
            },
            decoders,
            finaldeconv1,
            finalconv2,
            finalconv3,
        }
    }
}

impl<B: Backend> Network<B> for DLinkNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut e = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let e4 = e.pop().expect("layer4's output");
        o.tap(crate::network::ENCODER_TAP, &e4);
        let d = o.scoped("dblock", |o| self.dblock.run(o, e4));
        let d = run_link_decoders(o, &self.decoders, d, e);
        let head = (&self.finaldeconv1, &self.finalconv2, &self.finalconv3);
        SegOutput::logits(o.scoped("final", |o| run_link_head(o, head, d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The default keeps the input size; its centre is five 2048-channel 3x3 convolutions.
    #[test]
    fn default_keeps_the_input_size_and_has_the_wide_centre() {
        let mut cfg = DLinkNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        let centre: usize = model.dblock.convs.iter().map(|c| c.num_params()).sum();
        assert_eq!(centre, 5 * (9 * 2048 * 2048 + 2048));
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("dlink default parameters: {}", graph.parameter_count());
    }
}
