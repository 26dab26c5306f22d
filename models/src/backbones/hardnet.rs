//! HarDNet-68 (Chao, Kao, Ruan, Huang & Lin, "HarDNet: A Low Memory Traffic Network", ICCV
//! 2019) as an encoder: harmonic dense blocks, in which layer `l` reads the outputs of layers
//! `l - 2^k` (for every `k` with `2^k` dividing `l`) instead of all earlier ones as DenseNet's
//! do, and a layer with more such links is wider (growth rate times `grmul^(links - 1)`,
//! rounded to even). A block's output is the concatenation of its odd layers and its last;
//! a 1x1 conv-BN-ReLU6 follows every block, max pooling after some.
//!
//! As JMedSeg's `HarDNet.hardnet(arch=68)` and the authors' code: stem of a 3x3 stride-2
//! conv-BN-ReLU6 (32) and a 3x3 one (64), 3x3 stride-2 max pooling; five blocks of 8, 16, 16,
//! 16 and 4 layers at growth 14, 16, 20, 40, 160 (grmul 1.7), each to 128, 256, 320, 640, 1024
//! channels, max pooling after the first, third and fourth. The stage outputs the
//! segmentation heads read are the transitions of blocks 1, 3, 4 and 5: 128 channels at 1/4,
//! 320 at 1/8, 640 at 1/16 and 1024 at 1/32 of the input. The stem reads the data's channels
//! (JMedSeg's is fixed at 3); no dropout (JMedSeg builds none either).
//!
//! Names: the authors' `base.N` list is split by kind: `base.0`/`base.1` are `stem.0`/`stem.1`,
//! the blocks `base.3, 6, 8, 11, 14` are `blocks.0..4` (their layers `layers.K.conv/norm` as
//! there), the transitions `base.4, 7, 9, 12, 15` are `transitions.0..4`.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::network::scaled_width;
use crate::ops::{Ops, Pool};

/// Blocks of HarDNet-68.
pub const BLOCKS: usize = 5;
/// Whether a 2x2 max pooling follows block `i`'s transition (HarDNet-68's pattern).
const POOL_AFTER: [bool; BLOCKS] = [true, false, true, true, false];
/// The blocks whose transitions are the stage outputs (1/4, 1/8, 1/16, 1/32).
pub const STAGE_BLOCKS: [usize; 4] = [0, 2, 3, 4];

/// How to build a [`HarDNet`] (the defaults are HarDNet-68).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HarDNetConfig {
    /// The two stem convolutions' widths.
    pub stem: [usize; 2],
    /// Growth rate of each block.
    pub growth: [usize; BLOCKS],
    /// Layers in each block.
    pub layers: [usize; BLOCKS],
    /// Width of each block's 1x1 transition.
    pub transitions: [usize; BLOCKS],
    /// Width multiplier per extra link.
    pub grmul: f64,
}

impl Default for HarDNetConfig {
    fn default() -> Self {
        Self {
            stem: [32, 64],
            growth: [14, 16, 20, 40, 160],
            layers: [8, 16, 16, 16, 4],
            transitions: [128, 256, 320, 640, 1024],
            grmul: 1.7,
        }
    }
}

impl HarDNetConfig {
    /// HarDNet-68's structure at a few channels per layer, fewer layers per block.
    pub fn tiny() -> Self {
        Self {
            stem: [4, 4],
            growth: [2, 2, 2, 4, 4],
            layers: [2, 2, 2, 2, 2],
            transitions: [4, 8, 8, 8, 16],
            grmul: 1.7,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let widths = self
            .stem
            .iter()
            .chain(&self.growth)
            .chain(&self.transitions);
        if widths.chain(&self.layers).any(|&w| w == 0) {
            return Err("every HarDNet width, growth rate and layer count must be > 0".into());
        }
        if !(self.grmul.is_finite() && self.grmul >= 1.0) {
            return Err(format!("grmul must be >= 1, not {}", self.grmul));
        }
        Ok(())
    }

    pub fn scale_widths(&mut self, scale: f64) {
        for w in self.stem.iter_mut().chain(&mut self.transitions) {
            *w = scaled_width(*w, scale, 1);
        }
        for g in &mut self.growth {
            *g = scaled_width(*g, scale, 2);
        }
    }

    /// Channels of the stage outputs.
    pub fn stage_widths(&self) -> [usize; 4] {
        STAGE_BLOCKS.map(|b| self.transitions[b])
    }

    pub fn init<B: Backend>(&self, in_channels: usize, device: &B::Device) -> HarDNet<B> {
        let mut ch = self.stem[1];
        let mut blocks = Vec::with_capacity(BLOCKS);
        let mut transitions = Vec::with_capacity(BLOCKS);
        for b in 0..BLOCKS {
            let block = HarDBlock::new(ch, self.growth[b], self.grmul, self.layers[b], device);
            transitions.push(HardConv::new(
                block.out_channels(),
                self.transitions[b],
                1,
                1,
                device,
            ));
            blocks.push(block);
            ch = self.transitions[b];
        }
        HarDNet {
            stem: vec![
                HardConv::new(in_channels, self.stem[0], 3, 2, device),
                HardConv::new(self.stem[0], self.stem[1], 3, 1, device),
            ],
            blocks,
            transitions,
        }
    }
}

/// Convolution (no bias), BatchNorm, ReLU6: the authors' `ConvLayer`.
#[derive(Module, Debug)]
pub struct HardConv<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> HardConv<B> {
    fn new(input: usize, out: usize, k: usize, stride: usize, device: &B::Device) -> Self {
        let p = k / 2;
        Self {
            conv: Conv2dConfig::new([input, out], [k, k])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(out).init(device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv, &self.norm);
        o.clip(y, 0.0, 6.0)
    }
}

/// Layer `l`'s (1-based; 0 is the block's input) links and width: the authors' `get_link`.
fn links(l: usize, growth: usize, grmul: f64) -> (Vec<usize>, usize) {
    let mut links = Vec::new();
    let mut width = growth as f64;
    for i in 0.. {
        let dv = 1usize << i;
        if dv > l {
            break;
        }
        if l.is_multiple_of(dv) {
            links.push(l - dv);
            if i > 0 {
                width *= grmul;
            }
        }
    }
    // The authors' rounding to an even width: int(int(width + 1) / 2) * 2.
    let even = ((width + 1.0).floor() as usize / 2) * 2;
    (links, even)
}

/// A harmonic dense block.
#[derive(Module, Debug)]
pub struct HarDBlock<B: Backend> {
    pub layers: Vec<HardConv<B>>,
    /// `links[l - 1]`: the earlier outputs (0 = the input) layer `l` reads, concatenated in
    /// this order.
    pub links: Vec<Vec<usize>>,
    /// Width of each output, the input's first.
    pub widths: Vec<usize>,
}

impl<B: Backend> HarDBlock<B> {
    fn new(input: usize, growth: usize, grmul: f64, n: usize, device: &B::Device) -> Self {
        let mut widths = vec![input];
        let mut all_links = Vec::with_capacity(n);
        let mut layers = Vec::with_capacity(n);
        for l in 1..=n {
            let (links, out) = links(l, growth, grmul);
            let read: usize = links.iter().map(|&k| widths[k]).sum();
            layers.push(HardConv::new(read, out, 3, 1, device));
            widths.push(out);
            all_links.push(links);
        }
        Self {
            layers,
            links: all_links,
            widths,
        }
    }

    /// The outputs concatenated at the end: the odd layers' and the last's.
    fn kept(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.layers.len();
        (1..=n).filter(move |&l| l % 2 == 1 || l == n)
    }

    pub fn out_channels(&self) -> usize {
        self.kept().map(|l| self.widths[l]).sum()
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let mut outs = vec![x];
        for (layer, links) in self.layers.iter().zip(&self.links) {
            let mut read: Vec<O::T> = links.iter().map(|&k| outs[k].clone()).collect();
            let input = if read.len() == 1 {
                read.pop().expect("one link")
            } else {
                o.concat(read, 1)
            };
            let y = layer.run(o, input);
            outs.push(y);
        }
        let kept = self.kept().map(|l| outs[l].clone()).collect();
        o.concat(kept, 1)
    }
}

#[derive(Module, Debug)]
pub struct HarDNet<B: Backend> {
    pub stem: Vec<HardConv<B>>,
    pub blocks: Vec<HarDBlock<B>>,
    pub transitions: Vec<HardConv<B>>,
}

impl<B: Backend> HarDNet<B> {
    /// The stage outputs at 1/4, 1/8, 1/16 and 1/32 of the input.
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> Vec<O::T> {
        let mut y = x;
        for conv in &self.stem {
            y = conv.run(o, y);
        }
        let stem_pool = Pool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            ceil_mode: false,
        };
        y = o.max_pool(y, stem_pool);
        let mut stages = Vec::with_capacity(STAGE_BLOCKS.len());
        for (b, (block, transition)) in self.blocks.iter().zip(&self.transitions).enumerate() {
            y = o.scoped(&format!("block{b}"), |o| {
                let y = block.run(o, y);
                transition.run(o, y)
            });
            if STAGE_BLOCKS.contains(&b) {
                stages.push(y.clone());
            }
            if POOL_AFTER[b] {
                y = o.max_pool(y, Pool::square(2));
            }
        }
        stages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The authors' link rule: layer 4 reads layers 3, 2 and 0, at growth x 1.7^2 rounded to
    /// even; layer 6 reads 5 and 4.
    #[test]
    fn links_follow_the_harmonic_rule() {
        assert_eq!(links(1, 14, 1.7), (vec![0], 14));
        assert_eq!(links(2, 14, 1.7), (vec![1, 0], 24));
        assert_eq!(links(4, 14, 1.7), (vec![3, 2, 0], 40));
        assert_eq!(links(6, 14, 1.7), (vec![5, 4], 24));
    }

    /// HarDNet-68's stage widths and resolutions, and its parameter count (the paper's 17.6 M
    /// includes the 1000-class classifier, 1.0 M, that a segmentation encoder leaves out).
    #[test]
    fn hardnet68_stages() {
        let cfg = HarDNetConfig::default();
        let net = cfg.init::<Flex>(3, &Default::default());
        // Layers 1, 3, 5, 7 (14 each) and 8 (14 x 1.7^3 = 68.8, rounded to 68).
        assert_eq!(net.blocks[0].out_channels(), 4 * 14 + 68);
        let mut o = crate::graph_ops::GraphOps::new([1, 3, 64, 64]);
        let x = o.input();
        let stages = net.run(&mut o, x);
        let shapes: Vec<[usize; 4]> = stages.iter().map(|s| Ops::<Flex>::shape(&o, s)).collect();
        assert_eq!(
            shapes,
            [
                [1, 128, 16, 16],
                [1, 320, 8, 8],
                [1, 640, 4, 4],
                [1, 1024, 2, 2]
            ]
        );
        let params = net.num_params() as f64;
        let paper = 17.6e6 - (1024.0 * 1000.0 + 1000.0);
        assert!((params / paper - 1.0).abs() < 0.02, "{params} parameters");
    }
}
