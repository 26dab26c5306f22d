//! CE-Net (Gu et al., IEEE TMI 2019): a ResNet-34 encoder, a context extractor of a dense
//! atrous convolution (DAC) block and a residual multi-kernel pooling (RMP) block, and a
//! decoder of 1x1 / transposed 3x3 / 1x1 blocks whose outputs are added to the skips.
//!
//! As JMedSeg's `cenet` (`CE_Net_`, the authors' layout): ResNet stem (7x7) and layers 1-4;
//! DAC: four cascaded branches, 3x3 at dilation 1; dilation 3 then 1x1; dilations 1, 3 then
//! 1x1; dilations 1, 3, 5 then 1x1, each ReLU'd and summed with the input (the three dilated
//! convolutions and the 1x1 are shared between branches, as in the authors' code, which
//! recomputes the shared prefixes; here each is computed once, the same values). RMP: max
//! pooling with windows 2, 3, 5, 6 (stride = window), one shared 1x1 convolution to one
//! channel, bilinear up-sampling to the input size, concatenated with the input (+4
//! channels). Decoder block: 1x1 conv-BN-ReLU to a quarter width, 3x3 transposed conv
//! (stride 2)-BN-ReLU, 1x1 conv-BN-ReLU; `d4 = dec4(rmp) + e3`, `d3 = dec3(d4) + e2`,
//! `d2 = dec2(d3) + e1`, `d1 = dec1(d2)`; then a 4x4 transposed conv (stride 2) to 32
//! channels, ReLU, 3x3 conv, ReLU, and a 3x3 conv to the logits.
//!
//! Departures: the RMP window is clipped to the feature map (`min(window, side)`), so inputs
//! under 192 px (bottleneck under 6x6, where the original fails) still work; at JMedSeg's 512
//! px (16x16 bottleneck) nothing changes. The backbone is selectable (`backbone=resnet18|
//! resnet34|resnet50|resnet101`, default the paper's ResNet-34; the decoder's widths follow
//! the backbone's). A decoder block's quarter width is at least 1 (only reached at tiny
//! widths). Convolutions start from Burn's default initialisation, except the DAC biases at
//! zero as in the authors' code. The encoder starts from random weights (JMedSeg's
//! `pretrained=False`; the paper uses ImageNet weights): loading them is a later issue.
//! JMedSeg states no parameter count; this default has 29.0 M parameters (3 input channels).
//! The decoder blocks and head are LinkNet's, shared with D-LinkNet
//! ([`crate::blocks::link_decoder`]).

use burn::module::Module;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::link_decoder::{LinkDecoder, link_head, run_link_decoders, run_link_head};
use crate::blocks::{conv2d, dilated_conv};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, Pool, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The ResNet encoder (the paper's ResNet-34).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// Channels of the final up-sampling and convolution (the paper's 32).
    pub head_width: usize,
}

impl Default for CeNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet34,
            base_width: 64,
            head_width: 32,
        }
    }
}

impl CeNetConfig {
    pub(crate) fn backbone_config(&self) -> ResNetConfig {
        ResNetConfig {
            base_width: self.base_width,
            ..ResNetConfig::new(self.backbone, self.in_channels)
        }
    }
}

/// The RMP's pooling windows.
const RMP_WINDOWS: [usize; 4] = [2, 3, 5, 6];

/// Dense atrous convolution block.
#[derive(Module, Debug)]
pub struct Dac<B: Backend> {
    pub dilate1: Conv2d<B>,
    pub dilate2: Conv2d<B>,
    pub dilate3: Conv2d<B>,
    pub conv1x1: Conv2d<B>,
}

impl<B: Backend> Dac<B> {
    fn new(c: usize, device: &B::Device) -> Self {
        Self {
            dilate1: dilated_conv(c, 3, 1, device),
            dilate2: dilated_conv(c, 3, 3, device),
            dilate3: dilated_conv(c, 3, 5, device),
            conv1x1: dilated_conv(c, 1, 1, device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let d1 = o.conv(x.clone(), &self.dilate1);
        let b1 = o.relu(d1.clone());
        let d2 = o.conv(x.clone(), &self.dilate2);
        let b2 = o.conv(d2, &self.conv1x1);
        let b2 = o.relu(b2);
        let d21 = o.conv(d1, &self.dilate2);
        let b3 = o.conv(d21.clone(), &self.conv1x1);
        let b3 = o.relu(b3);
        let d321 = o.conv(d21, &self.dilate3);
        let b4 = o.conv(d321, &self.conv1x1);
        let b4 = o.relu(b4);
        let mut out = x;
        for b in [b1, b2, b3, b4] {
            out = o.add(out, b);
        }
        out
    }
}

/// Residual multi-kernel pooling: one shared 1x1 convolution to one channel.
#[derive(Module, Debug)]
pub struct Rmp<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Rmp<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [_, _, h, w] = o.shape(&x);
        let mut parts: Vec<O::T> = RMP_WINDOWS
            .iter()
            .map(|&k| {
                let (kh, kw) = (k.min(h), k.min(w));
                let pool = Pool {
                    kernel: [kh, kw],
                    stride: [kh, kw],
                    padding: [0, 0],
                    ceil_mode: false,
                };
                let pooled = o.max_pool(x.clone(), pool);
                let y = o.conv(pooled, &self.conv);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                o.resize(y, [h, w], mode)
            })
            .collect();
        parts.push(x);
        o.concat(parts, 1)
    }
}

#[derive(Module, Debug)]
pub struct CeNet<B: Backend> {
    pub backbone: ResNet<B>,
    pub dblock: Dac<B>,
    pub spp: Rmp<B>,
    /// decoder4 .. decoder1.
    pub decoders: Vec<LinkDecoder<B>>,
    pub finaldeconv1: ConvTranspose2d<B>,
    pub finalconv2: Conv2d<B>,
    pub finalconv3: Conv2d<B>,
}

impl ArchConfig for CeNetConfig {
    type Model<B: Backend> = CeNet<B>;
    const NAME: &'static str = "cenet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Gu et al., CE-Net: Context Encoder Network for 2D Medical Image Segmentation, IEEE TMI 2019";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // ResNet layers 1-4: output stride 32.
        32
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.head_width == 0 {
            return Err("base_width and head_width must be > 0".into());
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.head_width = scaled_width(self.head_width, scale, 1);
    }

    fn tiny() -> Self {
        // Basic blocks as the default's, the fewest of them (ResNet-18), at 8..64 channels
        // (at 2..16 and 4..32 the loss fell only 6-7% in the zoo test's 8 steps).
        Self {
            backbone: ResNetDepth::Resnet18,
            base_width: 8,
            head_width: 16,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> CeNet<B> {
        let bb = self.backbone_config();
        let w = |i: usize| bb.stage_width(i);
        let decoders = vec![
            LinkDecoder::new(w(3) + RMP_WINDOWS.len(), w(2), device),
            LinkDecoder::new(w(2), w(1), device),
            LinkDecoder::new(w(1), w(0), device),
            LinkDecoder::new(w(0), w(0), device),
        ];
        let (finaldeconv1, finalconv2, finalconv3) =
            link_head(w(0), self.head_width, self.num_classes, device);
        CeNet {
            backbone: bb.init(device),
            dblock: Dac::new(w(3), device),
            spp: Rmp {
                conv: conv2d(w(3), 1, 1, true, device),
            },
            decoders,
            finaldeconv1,
            finalconv2,
            finalconv3,
        }
    }
}

impl<B: Backend> Network<B> for CeNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut e = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let e4 = e.pop().expect("layer4's output");
        o.tap(crate::network::ENCODER_TAP, &e4);
        let c = o.scoped("dac", |o| self.dblock.run(o, e4));
        let d = o.scoped("rmp", |o| self.spp.run(o, c));
        let d = run_link_decoders(o, &self.decoders, d, e);
        let head = (&self.finaldeconv1, &self.finalconv2, &self.finalconv3);
        let logits = o.scoped("final", |o| run_link_head(o, head, d));
        SegOutput::logits(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn the_default_keeps_the_input_size_and_the_rmp_adds_four_channels() {
        let dev = Default::default();
        let mut cfg = CeNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&dev);
        assert_eq!(model.decoders[0].conv1.weight.dims()[1], 516);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        let out = graph.shape(graph.output.expect("an output"));
        assert_eq!(out, [1, 2, 64, 64]);
        eprintln!("cenet default parameters: {}", graph.parameter_count());
    }
}
