//! TransUNet (Chen et al., "TransUNet: Transformers Make Strong Encoders for Medical Image
//! Segmentation", arXiv 2021): a hybrid encoder, where a ResNet's first three layers
//! (stride 16) feed a ViT that reads each position of their output as a token (patch size
//! 1), and a cascaded up-sampler (CUP) that brings the transformer's output back to the input
//! size with the ResNet's features as UNet skips.
//!
//! The paper's R50-ViT-B/16: ResNet-50 layers 1-3 (widths 256, 512, 1024); a 1x1 patch
//! embedding to 768 with a learned position embedding; 12 pre-norm transformer layers (12
//! heads, MLP 3072) and a final LayerNorm; the token grid as a 768-channel map, a 3x3
//! conv-BN-ReLU to 512; four decoder blocks, each a 2x bilinear up-sampling (corners
//! aligned, as the authors' `UpsamplingBilinear2d`), the skip of that resolution (layer2,
//! layer1, the stem's stride-2 output; none at full size) concatenated and two 3x3
//! conv-BN-ReLU, at 256, 128, 64, 16 channels; a 3x3 convolution to the classes.
//!
//! Departures: the ResNet is the zoo's shared one (torchvision's, with BatchNorm and 6 blocks
//! in layer3) where the paper's is BiT's ResNet-v2 (GroupNorm, weight-standardised
//! convolutions, 9 blocks in layer3), so that the ResNet weight files the zoo loads fit it;
//! the position embedding is a grid resized to the token grid ([`position_tokens`]) so that
//! training crops and whole images agree. JMedSeg carries TransUNet's code but does not
//! register it (its weight file is empty). No dropout.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::transformer::{TransformerLayer, position_tokens};
use crate::blocks::{ConvBnRelu, LayerNorm, conv2d};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransUNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The ResNet whose layers 1-3 start the encoder (ResNet-50).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// Token width (ViT-B's 768).
    pub hidden: usize,
    /// Transformer layers (12).
    pub layers: usize,
    /// Attention heads (12); `hidden` must divide by it.
    pub heads: usize,
    /// MLP hidden width as a multiple of `hidden` (4).
    pub mlp_ratio: usize,
    /// Width of the 3x3 convolution after the transformer (512).
    pub head_width: usize,
    /// The four decoder blocks' widths (256, 128, 64, 16).
    pub decoder_widths: Vec<usize>,
    /// Image side the position embedding grid is made for (other sizes resize it).
    pub image_size: usize,
}

impl Default for TransUNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet50,
            base_width: 64,
            hidden: 768,
            layers: 12,
            heads: 12,
            mlp_ratio: 4,
            head_width: 512,
            decoder_widths: vec![256, 128, 64, 16],
            image_size: 256,
        }
    }
}

impl TransUNetConfig {
    pub(crate) fn backbone_config(&self) -> ResNetConfig {
        ResNetConfig {
            base_width: self.base_width,
            stages: 3,
            ..ResNetConfig::new(self.backbone, self.in_channels)
        }
    }
}

/// A CUP block: 2x up-sampling, the skip concatenated where there is one, two conv-BN-ReLU.
#[derive(Module, Debug)]
pub struct CupBlock<B: Backend> {
    pub conv1: ConvBnRelu<B>,
    pub conv2: ConvBnRelu<B>,
}

#[derive(Module, Debug)]
pub struct TransUNet<B: Backend> {
    pub backbone: ResNet<B>,
    /// 1x1 convolution from layer3's channels to the tokens.
    pub patch_embed: Conv2d<B>,
    /// `[1, D, G, G]`.
    pub position: Param<Tensor<B, 4>>,
    pub layers: Vec<TransformerLayer<B>>,
    pub norm: LayerNorm<B>,
    pub conv_more: ConvBnRelu<B>,
    pub decoder: Vec<CupBlock<B>>,
    pub head: Conv2d<B>,
}

impl ArchConfig for TransUNetConfig {
    type Model<B: Backend> = TransUNet<B>;
    const NAME: &'static str = "transunet";
    const FAMILY: &'static str = "transformer";
    const PAPER: &'static str = "Chen et al., TransUNet: Transformers Make Strong Encoders for \
        Medical Image Segmentation, arXiv 2102.04306, 2021";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        16
    }

    fn validate(&self) -> Result<(), String> {
        if self.hidden == 0 || self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden {} must be a positive multiple of heads {}",
                self.hidden, self.heads
            ));
        }
        if self.mlp_ratio == 0 || self.head_width == 0 || self.decoder_widths.contains(&0) {
            return Err("mlp_ratio, head_width and decoder_widths must be > 0".into());
        }
        if self.decoder_widths.len() != 4 {
            return Err(format!(
                "the decoder up-samples 16x in four blocks: 4 decoder_widths, not {}",
                self.decoder_widths.len()
            ));
        }
        if self.image_size < 16 {
            return Err(format!("image_size {} is below 16", self.image_size));
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.hidden = scaled_width(self.hidden, scale, self.heads);
        self.head_width = scaled_width(self.head_width, scale, 1);
        for w in &mut self.decoder_widths {
            *w = scaled_width(*w, scale, 1);
        }
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            hidden: 16,
            layers: 1,
            heads: 2,
            mlp_ratio: 2,
            head_width: 8,
            decoder_widths: vec![8, 8, 4, 4],
            image_size: 32,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> TransUNet<B> {
        let bb = self.backbone_config();
        let d = self.hidden;
        let layers = (0..self.layers)
            .map(|_| TransformerLayer::new(d, self.heads, d * self.mlp_ratio, device))
            .collect();
        // Skips at strides 8, 4, 2, then none.
        let skips = [bb.stage_width(1), bb.stage_width(0), bb.stem_width(), 0];
        let mut input = self.head_width;
        let decoder = self
            .decoder_widths
            .iter()
            .zip(skips)
            .map(|(&w, skip)| {
                let block = CupBlock {
                    conv1: ConvBnRelu::new(input + skip, w, 3, device),
                    conv2: ConvBnRelu::new(w, w, 3, device),
                };
                input = w;
                block
            })
            .collect();
        let grid = (self.image_size / 16).max(1);
        TransUNet {
            patch_embed: Conv2dConfig::new([bb.stage_width(2), d], [1, 1]).init(device),
            position: Param::from_tensor(Tensor::random(
                [1, d, grid, grid],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            layers,
            norm: LayerNorm::new(d, device),
            conv_more: ConvBnRelu::new(d, self.head_width, 3, device),
            decoder,
            head: conv2d(input, self.num_classes, 3, true, device),
            backbone: bb.init(device),
        }
    }
}

impl<B: Backend> Network<B> for TransUNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let features = o.scoped("backbone", |o| self.backbone.run(o, x));
        let mut stages = features.stages;
        let deep = stages.pop().expect("layer3's output");
        // Skips deepest first: layer2 (stride 8), layer1 (4), the stem (2).
        let mut skips: Vec<Option<O::T>> = stages.into_iter().rev().map(Some).collect();
        skips.push(Some(features.stem));
        skips.push(None);

        let patches = o.scoped("patch_embed", |o| o.conv(deep, &self.patch_embed));
        let [n, d, gh, gw] = o.shape(&patches);
        let tokens = o.reshape(patches, [n, 1, d, gh * gw]);
        let tokens = o.transpose(tokens, [0, 1, 3, 2]);
        let pos = o.scoped("position", |o| position_tokens(o, &self.position, gh, gw));
        let mut t = o.add(tokens, pos);
        for (i, layer) in self.layers.iter().enumerate() {
            t = o.scoped(&format!("layer{i}"), |o| layer.run(o, t));
        }
        let t = o.layer_norm(t, &self.norm);
        let t = o.transpose(t, [0, 1, 3, 2]);
        let y = o.reshape(t, [n, d, gh, gw]);
        o.tap(crate::network::ENCODER_TAP, &y);
        let mut y = o.scoped("conv_more", |o| self.conv_more.run(o, y));
        let bilinear = ResizeMode::Bilinear {
            align_corners: true,
        };
        for (i, (block, skip)) in self.decoder.iter().zip(skips).enumerate() {
            y = o.scoped(&format!("decoder{i}"), |o| {
                let [_, _, h, w] = o.shape(&y);
                let up = o.resize(y, [2 * h, 2 * w], bilinear);
                let cat = match skip {
                    Some(s) => o.concat(vec![up, s], 1),
                    None => up,
                };
                let z = block.conv1.run(o, cat);
                block.conv2.run(o, z)
            });
        }
        SegOutput::logits(o.scoped("head", |o| o.conv(y, &self.head)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The default keeps the input size; the paper states 105.3 M parameters for R50-ViT-B/16,
    /// whose layer3 has three more bottlenecks (~3.3 M) than the ResNet-50 here (102.0 M).
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = TransUNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        let n = graph.parameter_count() as f64;
        eprintln!("transunet default parameters: {n}");
        assert!((n / 105.3e6 - 1.0).abs() < 0.10, "{n}");
    }
}
