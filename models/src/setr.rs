//! SETR (Zheng et al., "Rethinking Semantic Segmentation from a Sequence-to-Sequence
//! Perspective with Transformers", CVPR 2021) as JMedSeg's `setr` (`transformer_seg.py`): a
//! pure transformer encoder on 32x32 patches and a progressive up-sampling decoder (SETR-PUP).
//!
//! JMedSeg's structure: each patch embedded by a linear layer (here the equivalent
//! `patch`x`patch` stride-`patch` convolution), GELU and LayerNorm; a learned position
//! embedding added, LayerNorm; 8 post-norm (BERT) layers of hidden width 1024, 16 heads, MLP
//! width 1024 (its `intermediate_size`), GELU, LayerNorm epsilon 1e-12; each token expanded by
//! a linear layer into a 2x2 grid of 1024-channel features (a map at 1/16 of the input);
//! four stages of 3x3 conv-BN-ReLU and 2x bilinear up-sampling at 512, 256, 128, 64 channels;
//! a 3x3 convolution (with bias) to the classes. [`crate::vit_seg`] is the paper's ViT form
//! (pre-norm layers, no token expansion) at CPU size.
//!
//! Departures: JMedSeg numbers positions along the flattened token sequence (ids 0..L-1),
//! so a 128 px training crop and a 256 px image put the same id at different places; here
//! the embedding is a grid resized to the token grid ([`position_tokens`]). The decoder's
//! convolutions have no bias (BatchNorm's shift makes it redundant). No dropout (JMedSeg's
//! 0.1 in the encoder; medseg's ops have none).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::transformer::{PostNormLayer, position_tokens};
use crate::blocks::{ConvBnRelu, LayerNorm, conv2d};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

/// BERT's LayerNorm epsilon (JMedSeg's `layer_norm_eps`).
const BERT_EPSILON: f64 = 1e-12;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetrConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Side of the square patches (32).
    pub patch_size: usize,
    /// Token width (1024).
    pub hidden: usize,
    /// Post-norm transformer layers (8).
    pub layers: usize,
    /// Attention heads (16); `hidden` must divide by it.
    pub heads: usize,
    /// MLP hidden width (1024).
    pub mlp_width: usize,
    /// Each token becomes a `token_grid` x `token_grid` patch of features (2).
    pub token_grid: usize,
    /// Decoder stage widths (512, 256, 128, 64); each stage doubles the resolution, so there
    /// are log2(patch_size / token_grid) of them.
    pub decoder_widths: Vec<usize>,
    /// Image side the position embedding grid is made for (other sizes resize it).
    pub image_size: usize,
}

impl Default for SetrConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            patch_size: 32,
            hidden: 1024,
            layers: 8,
            heads: 16,
            mlp_width: 1024,
            token_grid: 2,
            decoder_widths: vec![512, 256, 128, 64],
            image_size: 256,
        }
    }
}

#[derive(Module, Debug)]
pub struct Setr<B: Backend> {
    pub patch_embed: Conv2d<B>,
    pub embed_norm: LayerNorm<B>,
    /// `[1, D, G, G]`.
    pub position: Param<Tensor<B, 4>>,
    pub position_norm: LayerNorm<B>,
    pub layers: Vec<PostNormLayer<B>>,
    /// Token to a `token_grid`^2 patch of `hidden` features (JMedSeg's `final_dense`).
    pub expand: Linear<B>,
    pub token_grid: usize,
    pub decoder: Vec<ConvBnRelu<B>>,
    pub head: Conv2d<B>,
}

impl ArchConfig for SetrConfig {
    type Model<B: Backend> = Setr<B>;
    const NAME: &'static str = "setr";
    const FAMILY: &'static str = "transformer";
    const PAPER: &'static str = "Zheng et al., Rethinking Semantic Segmentation from a \
        Sequence-to-Sequence Perspective with Transformers (SETR), CVPR 2021";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.patch_size
    }

    fn validate(&self) -> Result<(), String> {
        if self.hidden == 0 || self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden {} must be a positive multiple of heads {}",
                self.hidden, self.heads
            ));
        }
        if self.mlp_width == 0 || self.decoder_widths.contains(&0) {
            return Err("mlp_width and decoder_widths must be > 0".into());
        }
        if self.token_grid == 0 || !self.patch_size.is_multiple_of(self.token_grid) {
            return Err(format!(
                "patch_size {} must be a multiple of token_grid {}",
                self.patch_size, self.token_grid
            ));
        }
        let factor = self.patch_size / self.token_grid;
        if !factor.is_power_of_two()
            || factor.trailing_zeros() as usize != self.decoder_widths.len()
        {
            return Err(format!(
                "the decoder must up-sample patch_size / token_grid = {factor} by doubling: \
                 log2 of it stages, not {}",
                self.decoder_widths.len()
            ));
        }
        if self.image_size < self.patch_size {
            return Err(format!(
                "image_size {} is smaller than one patch ({})",
                self.image_size, self.patch_size
            ));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.hidden = scaled_width(self.hidden, scale, self.heads);
        self.mlp_width = scaled_width(self.mlp_width, scale, 1);
        for w in &mut self.decoder_widths {
            *w = scaled_width(*w, scale, 1);
        }
    }

    fn tiny() -> Self {
        Self {
            patch_size: 8,
            hidden: 16,
            layers: 1,
            heads: 2,
            mlp_width: 16,
            token_grid: 2,
            decoder_widths: vec![8, 8],
            image_size: 32,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> Setr<B> {
        let (d, p, s) = (self.hidden, self.patch_size, self.token_grid);
        let grid = self.image_size / p;
        let layers = (0..self.layers)
            .map(|_| PostNormLayer::new(d, self.heads, self.mlp_width, BERT_EPSILON, device))
            .collect();
        let mut input = d;
        let decoder = self
            .decoder_widths
            .iter()
            .map(|&w| {
                let stage = ConvBnRelu::new(input, w, 3, device);
                input = w;
                stage
            })
            .collect();
        Setr {
            patch_embed: Conv2dConfig::new([self.in_channels, d], [p, p])
                .with_stride([p, p])
                .init(device),
            embed_norm: LayerNorm::new(d, device).with_epsilon(BERT_EPSILON),
            position: Param::from_tensor(Tensor::random(
                [1, d, grid, grid],
                Distribution::Normal(0.0, 0.02),
                device,
            )),
            position_norm: LayerNorm::new(d, device).with_epsilon(BERT_EPSILON),
            layers,
            expand: LinearConfig::new(d, s * s * d).init(device),
            token_grid: s,
            decoder,
            head: conv2d(input, self.num_classes, 3, true, device),
        }
    }
}

/// Expanded tokens `[N, 1, gh*gw, s*s*D]`, each laid out `(s, s, D)`, to the image
/// `[N, D, gh*s, gw*s]` (token `(i, j)`'s feature `(a, b, c)` at channel `c`, pixel
/// `(i*s + a, j*s + b)`), with 4-axis reshapes and transposes only.
fn patches_to_image<B: Backend, O: Ops<B>>(
    o: &mut O,
    e: O::T,
    [n, gh, gw]: [usize; 3],
    s: usize,
    d: usize,
) -> O::T {
    // Rows (n, i) of [j, a, (b, c)] -> [(n, i), a, j, (b, c)]: now (n, i, a, j, b, c).
    let e = o.reshape(e, [n * gh, gw, s, s * d]);
    let e = o.transpose(e, [0, 2, 1, 3]);
    let e = o.reshape(e, [n, 1, gh * s * gw * s, d]);
    let e = o.transpose(e, [0, 1, 3, 2]);
    o.reshape(e, [n, d, gh * s, gw * s])
}

impl<B: Backend> Network<B> for Setr<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let patches = o.scoped("patch_embed", |o| o.conv(x, &self.patch_embed));
        let [n, d, gh, gw] = o.shape(&patches);
        let l = gh * gw;
        // [N, D, gh, gw] -> tokens [N, 1, L, D], GELU and LayerNorm (JMedSeg's InputDense).
        let tokens = o.reshape(patches, [n, 1, d, l]);
        let tokens = o.transpose(tokens, [0, 1, 3, 2]);
        let tokens = o.gelu(tokens);
        let tokens = o.layer_norm(tokens, &self.embed_norm);
        let pos = o.scoped("position", |o| position_tokens(o, &self.position, gh, gw));
        let t = o.add(tokens, pos);
        let mut t = o.layer_norm(t, &self.position_norm);
        for (i, layer) in self.layers.iter().enumerate() {
            t = o.scoped(&format!("layer{i}"), |o| layer.run(o, t));
        }
        let y = o.scoped("expand", |o| {
            let e = o.linear(t, &self.expand);
            patches_to_image(o, e, [n, gh, gw], self.token_grid, d)
        });
        o.tap(crate::network::ENCODER_TAP, &y);
        let mut y = y;
        let bilinear = ResizeMode::Bilinear {
            align_corners: false,
        };
        for (i, stage) in self.decoder.iter().enumerate() {
            y = o.scoped(&format!("decoder{i}"), |o| {
                let y = stage.run(o, y);
                let [_, _, h, w] = o.shape(&y);
                o.resize(y, [2 * h, 2 * w], bilinear)
            });
        }
        SegOutput::logits(o.scoped("head", |o| o.conv(y, &self.head)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::burn_ops::BurnOps;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// The default keeps the input size.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = SetrConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("setr default parameters: {}", graph.parameter_count());
    }

    /// The token expansion puts feature `(a, b, c)` of token `(i, j)` at channel `c`, pixel
    /// `(i*s + a, j*s + b)`, as JMedSeg's rearrange does.
    #[test]
    fn expanded_tokens_land_in_their_patch() {
        let cfg = SetrConfig {
            patch_size: 4,
            hidden: 3,
            heads: 1,
            token_grid: 2,
            decoder_widths: vec![2],
            image_size: 8,
            layers: 0,
            ..SetrConfig::default()
        };
        let dev = Default::default();
        let mut model = cfg.init::<Flex>(&dev);
        let (s, d, gh, gw) = (2usize, 3usize, 2usize, 3usize);
        // Identity-like expansion: output (a, b, c) = a*100 + b*10 + c + token value.
        let mut weight = vec![0f32; d * s * s * d];
        let mut bias = vec![0f32; s * s * d];
        for a in 0..s {
            for b in 0..s {
                for c in 0..d {
                    let out = (a * s + b) * d + c;
                    bias[out] = (a * 100 + b * 10 + c) as f32;
                    weight[c * s * s * d + out] = 1.0;
                }
            }
        }
        model.expand.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(weight, [d, s * s * d]),
            &dev,
        ));
        model.expand.bias = Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(bias, [s * s * d]),
            &dev,
        )));
        // Token (i, j) carries 1000 * (i * gw + j) in every feature.
        let tokens: Vec<f32> = (0..gh * gw)
            .flat_map(|t| std::iter::repeat_n(1000.0 * t as f32, d))
            .collect();
        let t = Tensor::<Flex, 4>::from_data(TensorData::new(tokens, [1, 1, gh * gw, d]), &dev);
        let mut o = BurnOps::new(&dev);
        let e = o.linear(t, &model.expand);
        let img: Vec<f32> = patches_to_image(&mut o, e, [1, gh, gw], s, d)
            .into_data()
            .to_vec()
            .unwrap();
        let (h, w) = (gh * s, gw * s);
        for c in 0..d {
            for y in 0..h {
                for x in 0..w {
                    let (i, a, j, b) = (y / s, y % s, x / s, x % s);
                    let want = 1000.0 * (i * gw + j) as f32 + (a * 100 + b * 10 + c) as f32;
                    assert_eq!(img[(c * h + y) * w + x], want, "c {c} y {y} x {x}");
                }
            }
        }
    }
}
