//! A small Vision Transformer segmenter: ViT encoder (Dosovitskiy et al., ICLR 2021) with
//! SETR's progressive up-sampling decoder (Zheng et al., "Rethinking Semantic Segmentation
//! from a Sequence-to-Sequence Perspective with Transformers", CVPR 2021, SETR-PUP).
//!
//! Patch embedding (a `patch`x`patch` convolution with stride `patch`), a learned position
//! embedding kept as a `[1, D, G, G]` grid and resized bilinearly when the token grid differs
//! (training crops and whole-image inference, as SETR does for other resolutions), pre-norm
//! transformer layers (multi-head self-attention, MLP with GELU), then log2(patch) stages of
//! 3x3 conv-BN-ReLU and 2x bilinear up-sampling, and a 1x1 head. No class token, no dropout.
//! The defaults are small (CPU-trainable); JMedSeg's `setr` (patch 32, hidden 1024, 8 layers,
//! 16 heads) is a configuration of the same network.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::transformer::{TransformerLayer, position_tokens};
use crate::blocks::{ConvBnRelu, Head, LayerNorm};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitSegConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Side of the square patches (a power of two: the decoder doubles log2(patch) times).
    pub patch_size: usize,
    /// Token width.
    pub embed_dim: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads (embed_dim must divide by it).
    pub heads: usize,
    /// MLP hidden width as a multiple of embed_dim.
    pub mlp_ratio: usize,
    /// Image side the position embedding grid is made for (other sizes resize it).
    pub image_size: usize,
    /// Channels of the up-sampling decoder.
    pub decoder_width: usize,
}

impl Default for VitSegConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            patch_size: 16,
            embed_dim: 192,
            layers: 6,
            heads: 3,
            mlp_ratio: 4,
            image_size: 256,
            decoder_width: 64,
        }
    }
}

#[derive(Module, Debug)]
pub struct VitSeg<B: Backend> {
    pub patch_embed: Conv2d<B>,
    /// `[1, D, G, G]`.
    pub position: Param<Tensor<B, 4>>,
    pub layers: Vec<TransformerLayer<B>>,
    pub norm: LayerNorm<B>,
    pub decoder: Vec<ConvBnRelu<B>>,
    pub head: Head<B>,
}

impl ArchConfig for VitSegConfig {
    type Model<B: Backend> = VitSeg<B>;
    const NAME: &'static str = "vit_seg";
    const FAMILY: &'static str = "transformer";
    const PAPER: &'static str = "Zheng et al., Rethinking Semantic Segmentation from a \
        Sequence-to-Sequence Perspective with Transformers (SETR-PUP), CVPR 2021";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.patch_size
    }

    fn validate(&self) -> Result<(), String> {
        if !self.patch_size.is_power_of_two() || self.patch_size < 2 {
            return Err(format!(
                "patch_size {} must be a power of two >= 2",
                self.patch_size
            ));
        }
        if self.heads == 0 || self.embed_dim == 0 || !self.embed_dim.is_multiple_of(self.heads) {
            return Err(format!(
                "embed_dim {} must be a positive multiple of heads {}",
                self.embed_dim, self.heads
            ));
        }
        if self.layers == 0 || self.mlp_ratio == 0 || self.decoder_width == 0 {
            return Err("layers, mlp_ratio and decoder_width must be > 0".into());
        }
        if self.image_size < self.patch_size || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!(
                "image_size {} must be a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        // Whole heads: the head count stays, each head narrows.
        let head_dim = scaled_width(self.embed_dim / self.heads.max(1), scale, 1);
        self.embed_dim = head_dim * self.heads.max(1);
        self.decoder_width = scaled_width(self.decoder_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            patch_size: 8,
            embed_dim: 16,
            layers: 2,
            heads: 2,
            mlp_ratio: 2,
            image_size: 32,
            decoder_width: 8,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> VitSeg<B> {
        let d = self.embed_dim;
        let grid = self.image_size / self.patch_size;
        let p = self.patch_size;
        let layers = (0..self.layers)
            .map(|_| TransformerLayer::new(d, self.heads, d * self.mlp_ratio, device))
            .collect();
        let stages = p.trailing_zeros() as usize;
        let decoder = (0..stages)
            .map(|s| {
                let input = if s == 0 { d } else { self.decoder_width };
                ConvBnRelu::new(input, self.decoder_width, 3, device)
            })
            .collect();
        VitSeg {
            patch_embed: Conv2dConfig::new([self.in_channels, d], [p, p])
                .with_stride([p, p])
                .init(device),
            // ViT's truncated-normal(0.02) start, approximated by a plain normal.
            position: Param::from_tensor(Tensor::random(
                [1, d, grid, grid],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            layers,
            norm: LayerNorm::new(d, device),
            decoder,
            head: Head::new(self.decoder_width, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for VitSeg<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let patches = o.scoped("patch_embed", |o| o.conv(x, &self.patch_embed));
        let [n, d, gh, gw] = o.shape(&patches);
        let l = gh * gw;
        // [N, D, gh, gw] -> [N, 1, D, L] -> tokens [N, 1, L, D].
        let tokens = o.reshape(patches, [n, 1, d, l]);
        let tokens = o.transpose(tokens, [0, 1, 3, 2]);
        let pos = o.scoped("position", |o| position_tokens(o, &self.position, gh, gw));
        let mut t = o.add(tokens, pos);
        for (i, layer) in self.layers.iter().enumerate() {
            t = o.scoped(&format!("layer{i}"), |o| layer.run(o, t));
        }
        let t = o.layer_norm(t, &self.norm);
        // Back to an image: [N, 1, L, D] -> [N, 1, D, L] -> [N, D, gh, gw].
        let t = o.transpose(t, [0, 1, 3, 2]);
        let mut y = o.reshape(t, [n, d, gh, gw]);
        o.tap(crate::network::ENCODER_TAP, &y);
        for (i, stage) in self.decoder.iter().enumerate() {
            y = o.scoped(&format!("decoder{i}"), |o| {
                let y = stage.run(o, y);
                let [_, _, h, w] = o.shape(&y);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                o.resize(y, [2 * h, 2 * w], mode)
            });
        }
        SegOutput::logits(o.scoped("head", |o| self.head.run(o, y)))
    }
}
