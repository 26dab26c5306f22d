//! HRNet (Sun, Xiao, Liu & Wang, CVPR 2019; Wang et al., TPAMI 2020): instead of an encoder
//! that loses resolution and a decoder that recovers it, parallel branches at 1, 1/2, 1/4 and
//! 1/8 of the stem's resolution (widths C, 2C, 4C, 8C) run side by side, a new, coarser branch
//! joining at each stage; every multi-resolution module ends by fusing all branches into all
//! (up: 1x1 conv-BN then nearest up-sampling; down: strided 3x3 conv-BN, ReLU between), so the
//! finest branch carries high resolution from start to end.
//!
//! As JMedSeg's `hrnet` (`hrnet.HRNet`, C = 16): stem of two 3x3 conv-BN-ReLU at 64 channels;
//! layer1 of four bottlenecks (64 -> 256); transition to two branches (3x3 conv-BN-ReLU, the
//! second strided); stage 2 one module, stage 3 four, stage 4 three, each branch four basic
//! blocks; the last module outputs the finest branch only (HRNetV1), a 1x1 convolution to
//! the classes.
//!
//! JMedSeg's stem keeps the full resolution (stride 1), where the paper's halves it twice
//! (two stride-2 convolutions, logits up-sampled by 4 at the end). `stem_stride` picks:
//! 1 (JMedSeg's, the default) or 4 (the paper's: every branch at a quarter of the side, about
//! a sixteenth of the compute; bilinear up-sampling of the logits). `modules` and `blocks` set
//! the modules per stage and blocks per branch (the paper's smaller HRNets change them).
//!
//! Departures: the segmentation HRNet of the TPAMI paper (HRNetV2) concatenates all four
//! branches before its head; JMedSeg's and this one read the finest branch only (V1).

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResBlock, ResNetDepth};
use crate::blocks::{ConvBn, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HrNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// C: the finest branch's width (the others 2C, 4C, 8C).
    pub width: usize,
    /// Width of the stem and of layer1's bottlenecks (their output is 4x).
    pub stem_width: usize,
    /// 1 (JMedSeg: full resolution) or 4 (the paper: two stride-2 stem convolutions).
    pub stem_stride: usize,
    /// Multi-resolution modules in stages 2, 3 and 4.
    pub modules: [usize; 3],
    /// Basic blocks per branch in each module.
    pub blocks: usize,
}

impl Default for HrNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            width: 16,
            stem_width: 64,
            stem_stride: 1,
            modules: [1, 4, 3],
            blocks: 4,
        }
    }
}

/// One stem convolution (3x3), BatchNorm and ReLU.
#[derive(Module, Debug)]
pub struct StemConv<B: Backend> {
    pub unit: ConvBn<B>,
}

impl<B: Backend> StemConv<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = self.unit.run(o, x);
        o.relu(y)
    }
}

/// The path from branch `j` to branch `i` of a fusion: for `j > i` a 1x1 conv-BN then nearest
/// up-sampling by `2^(j-i)`; for `j < i`, `i - j` strided 3x3 conv-BN, ReLU between them.
#[derive(Module, Debug)]
pub struct FusePath<B: Backend> {
    pub convs: Vec<ConvBn<B>>,
}

impl<B: Backend> FusePath<B> {
    fn new(c: usize, i: usize, j: usize, device: &B::Device) -> Self {
        let w = |k: usize| c << k;
        let convs = if j > i {
            vec![ConvBn::new(w(j), w(i), [1, 1], device)]
        } else {
            (0..i - j)
                .map(|k| {
                    let out = if k + 1 == i - j { w(i) } else { w(j) };
                    ConvBn::strided(w(j), out, 3, 2, device)
                })
                .collect()
        };
        Self { convs }
    }

    /// `size`: branch `i`'s resolution (where an up path lands).
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T, up: bool, size: [usize; 2]) -> O::T {
        let mut y = x;
        for (k, conv) in self.convs.iter().enumerate() {
            if k > 0 {
                y = o.relu(y);
            }
            y = conv.run(o, y);
        }
        if up {
            y = o.resize(y, size, ResizeMode::Nearest);
        }
        y
    }
}

/// A multi-resolution module: basic blocks on each branch, then every output branch the sum
/// of all branches brought to its resolution, ReLU.
#[derive(Module, Debug)]
pub struct HrModule<B: Backend> {
    pub branches: Vec<Vec<ResBlock<B>>>,
    /// `fuse[i][j]`: branch `j` to output `i` (none for `j == i`).
    pub fuse: Vec<Vec<Option<FusePath<B>>>>,
}

impl<B: Backend> HrModule<B> {
    fn new(c: usize, branches: usize, outputs: usize, blocks: usize, device: &B::Device) -> Self {
        Self {
            branches: (0..branches)
                .map(|i| {
                    let w = c << i;
                    (0..blocks)
                        .map(|_| ResBlock::new(ResNetDepth::Resnet18, w, w, 1, 1, device))
                        .collect()
                })
                .collect(),
            fuse: (0..outputs)
                .map(|i| {
                    (0..branches)
                        .map(|j| (i != j).then(|| FusePath::new(c, i, j, device)))
                        .collect()
                })
                .collect(),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, xs: Vec<O::T>) -> Vec<O::T> {
        let xs: Vec<O::T> = xs
            .into_iter()
            .zip(&self.branches)
            .map(|(mut x, blocks)| {
                for block in blocks {
                    x = block.run(o, x);
                }
                x
            })
            .collect();
        let mut out = Vec::with_capacity(self.fuse.len());
        for (i, paths) in self.fuse.iter().enumerate() {
            let [_, _, h, w] = o.shape(&xs[i]);
            let mut sum = xs[i].clone();
            for (j, path) in paths.iter().enumerate() {
                if let Some(path) = path {
                    let y = path.run(o, xs[j].clone(), j > i, [h, w]);
                    sum = o.add(sum, y);
                }
            }
            out.push(o.relu(sum));
        }
        out
    }
}

#[derive(Module, Debug)]
pub struct HrNet<B: Backend> {
    pub conv1: StemConv<B>,
    pub conv2: StemConv<B>,
    pub layer1: Vec<ResBlock<B>>,
    /// layer1's output to the first two branches.
    pub transition1: Vec<StemConv<B>>,
    /// The third branch, from the second's output (strided).
    pub transition2: StemConv<B>,
    /// The fourth branch, from the third's output (strided).
    pub transition3: StemConv<B>,
    pub stage2: Vec<HrModule<B>>,
    pub stage3: Vec<HrModule<B>>,
    pub stage4: Vec<HrModule<B>>,
    pub head: Head<B>,
    pub stem_stride: usize,
}

impl ArchConfig for HrNetConfig {
    type Model<B: Backend> = HrNet<B>;
    const NAME: &'static str = "hrnet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Sun, Xiao, Liu & Wang, Deep High-Resolution Representation \
        Learning for Human Pose Estimation (HRNet), CVPR 2019";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        // Three halvings below the stem's resolution; nearest up-sampling must land exactly.
        8 * self.stem_stride
    }

    fn validate(&self) -> Result<(), String> {
        if self.width == 0 || self.stem_width == 0 {
            return Err("width and stem_width must be > 0".into());
        }
        if ![1, 4].contains(&self.stem_stride) {
            return Err(format!(
                "HRNet's stem_stride is 1 (JMedSeg) or 4 (the paper), not {}",
                self.stem_stride
            ));
        }
        if self.modules.contains(&0) || self.blocks == 0 {
            return Err("every stage needs at least one module of at least one block".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.width = scaled_width(self.width, scale, 1);
        self.stem_width = scaled_width(self.stem_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            width: 2,
            stem_width: 4,
            modules: [1, 1, 1],
            blocks: 1,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> HrNet<B> {
        let (c, s) = (self.width, self.stem_width);
        let stem_stride = if self.stem_stride == 4 { 2 } else { 1 };
        let unit = |i, o, stride| StemConv {
            unit: ConvBn::strided(i, o, 3, stride, device),
        };
        let bottleneck = |i| {
            let inplanes = if i == 0 { s } else { 4 * s };
            ResBlock::new(ResNetDepth::Resnet50, inplanes, s, 1, 1, device)
        };
        let stage = |branches: usize, n: usize| -> Vec<HrModule<B>> {
            (0..n)
                .map(|k| {
                    // The network's last module outputs the finest branch only.
                    let outputs = if branches == 4 && k + 1 == n {
                        1
                    } else {
                        branches
                    };
                    HrModule::new(c, branches, outputs, self.blocks, device)
                })
                .collect()
        };
        HrNet {
            conv1: unit(self.in_channels, s, stem_stride),
            conv2: unit(s, s, stem_stride),
            layer1: (0..4).map(bottleneck).collect(),
            transition1: vec![unit(4 * s, c, 1), unit(4 * s, 2 * c, 2)],
            transition2: unit(2 * c, 4 * c, 2),
            transition3: unit(4 * c, 8 * c, 2),
            stage2: stage(2, self.modules[0]),
            stage3: stage(3, self.modules[1]),
            stage4: stage(4, self.modules[2]),
            head: Head::new(c, self.num_classes, device),
            stem_stride: self.stem_stride,
        }
    }
}

impl<B: Backend> HrNet<B> {
    fn stage<O: Ops<B>>(o: &mut O, modules: &[HrModule<B>], mut xs: Vec<O::T>) -> Vec<O::T> {
        for m in modules {
            xs = m.run(o, xs);
        }
        xs
    }
}

impl<B: Backend> Network<B> for HrNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let y = o.scoped("stem", |o| {
            let y = self.conv1.run(o, x);
            let mut y = self.conv2.run(o, y);
            for block in &self.layer1 {
                y = block.run(o, y);
            }
            y
        });
        let mut xs = o.scoped("stage2", |o| {
            let xs = self
                .transition1
                .iter()
                .map(|t| t.run(o, y.clone()))
                .collect();
            Self::stage(o, &self.stage2, xs)
        });
        let mut xs = o.scoped("stage3", |o| {
            let coarsest = xs.last().expect("two branches").clone();
            xs.push(self.transition2.run(o, coarsest));
            Self::stage(o, &self.stage3, xs)
        });
        let finest = o.scoped("stage4", |o| {
            let coarsest = xs.last().expect("three branches").clone();
            o.tap(crate::network::ENCODER_TAP, &coarsest);
            xs.push(self.transition3.run(o, coarsest));
            Self::stage(o, &self.stage4, xs).swap_remove(0)
        });
        let mut logits = o.scoped("head", |o| self.head.run(o, finest));
        if self.stem_stride != 1 {
            let bilinear = ResizeMode::Bilinear {
                align_corners: false,
            };
            logits = o.resize(logits, [height, width], bilinear);
        }
        SegOutput::logits(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The default keeps the input size; the paper's stem gives the same shape.
    #[test]
    fn both_stems_keep_the_input_size() {
        for stem_stride in [1, 4] {
            let mut cfg = HrNetConfig {
                stem_stride,
                ..HrNetConfig::default()
            };
            cfg.set_io(1, 3);
            let model = cfg.init::<Flex>(&Default::default());
            assert_eq!(model.stage4.last().expect("a module").fuse.len(), 1);
            let graph = crate::network::export_graph(&model, [1, 1, 64, 64]);
            assert_eq!(
                graph.shape(graph.output.expect("an output")),
                [1, 3, 64, 64]
            );
            eprintln!(
                "hrnet (stem stride {stem_stride}) parameters: {}",
                graph.parameter_count()
            );
        }
    }
}
