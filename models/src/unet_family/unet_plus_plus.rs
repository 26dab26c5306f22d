//! UNet++ (Zhou et al., DLMIA 2018): nested, dense skip pathways between encoder and decoder,
//! with deep supervision.
//!
//! Node `X[i][j]` (depth `i`, column `j`) is a double conv of the concatenation of
//! `X[i][0..j]` and the up-sampled `X[i+1][j-1]`. With deep supervision (the paper's default
//! for training) every top node `X[0][1..=depth]` has a 1x1 head; training sees all of them
//! (the side ones as auxiliary outputs, each trained against the target), and the exported
//! model is the last head (the paper's "accurate" mode). Up-sampling is bilinear with
//! `align_corners`, as in JMedSeg's (and the reference PyTorch) NestedUNet.
//!
//! Defaults: `base_width` 32 (widths 32..512) and deep supervision on, as the UNet++ authors'
//! reference code (`nb_filter = [32, 64, 128, 256, 512]`, 9.2 M parameters with 3 input
//! channels). JMedSeg's `unetpp` uses widths 64..1024 and a single head (36.6 M), which is
//! `--model-opt base_width=64 --model-opt deep_supervision=false` here; we keep the authors'
//! configuration as the default (the paper is what the registry entry names, and stored
//! configurations spell their width anyway). JMedSeg's `unetppbig` (learned up-sampling
//! blocks) is [`super::unet_plus_plus_big`], which runs this file's node grid.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{DoubleConv, Head, pool2x};
use crate::network::{ArchConfig, Aux, AuxKind, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetPlusPlusConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels at depth 0 (the reference code's 32); each level doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
    /// Heads on every top node, trained as side outputs.
    pub deep_supervision: bool,
}

impl Default for UNetPlusPlusConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 32,
            depth: 4,
            deep_supervision: true,
        }
    }
}

#[derive(Module, Debug)]
pub struct UNetPlusPlus<B: Backend> {
    /// `nodes[i][j]` is `X[i][j]`; row `i` has `depth + 1 - i` nodes.
    pub nodes: Vec<Vec<DoubleConv<B>>>,
    /// One head per top node `X[0][1..=depth]` with deep supervision, else only the last.
    pub heads: Vec<Head<B>>,
}

impl ArchConfig for UNetPlusPlusConfig {
    type Model<B: Backend> = UNetPlusPlus<B>;
    const NAME: &'static str = "unetpp";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Zhou et al., UNet++: A Nested U-Net Architecture for Medical Image Segmentation, DLMIA 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.depth == 0 || self.depth > 6 {
            return Err("base_width must be > 0 and depth within 1..=6".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            depth: 3,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> UNetPlusPlus<B> {
        let width = |level: usize| self.base_width << level;
        let nodes = (0..=self.depth)
            .map(|i| {
                (0..=self.depth - i)
                    .map(|j| {
                        let input = if j == 0 {
                            if i == 0 {
                                self.in_channels
                            } else {
                                width(i - 1)
                            }
                        } else {
                            // j earlier nodes of this row plus the up-sampled one below.
                            j * width(i) + width(i + 1)
                        };
                        DoubleConv::new(input, width(i), device)
                    })
                    .collect()
            })
            .collect();
        let heads = if self.deep_supervision { self.depth } else { 1 };
        UNetPlusPlus {
            nodes,
            heads: (0..heads)
                .map(|_| Head::new(width(0), self.num_classes, device))
                .collect(),
        }
    }
}

impl<B: Backend> Network<B> for UNetPlusPlus<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        self.run_grid(o, x, None)
    }
}

impl<B: Backend> UNetPlusPlus<B> {
    /// Runs the node grid. With `ups`, the up-sampled `X[i+1][j-1]` passes through
    /// `ups[i][j-1]` before node `X[i][j]` reads it (the learned up-sampling of
    /// [`super::unet_plus_plus_big`]).
    pub fn run_grid<O: Ops<B>>(
        &self,
        o: &mut O,
        x: O::T,
        ups: Option<&[Vec<DoubleConv<B>>]>,
    ) -> SegOutput<O::T> {
        let depth = self.nodes.len() - 1;
        let mut grid: Vec<Vec<O::T>> = vec![Vec::new(); depth + 1];
        // Column by column, so every node's inputs exist when it is computed.
        for j in 0..=depth {
            for i in 0..=depth - j {
                let node = &self.nodes[i][j];
                let y = o.scoped(&format!("x{i}_{j}"), |o| {
                    if j == 0 {
                        let input = if i == 0 {
                            x.clone()
                        } else {
                            pool2x(o, grid[i - 1][0].clone())
                        };
                        return node.run(o, input);
                    }
                    let below = grid[i + 1][j - 1].clone();
                    let [_, _, h, w] = o.shape(&below);
                    let mode = ResizeMode::Bilinear {
                        align_corners: true,
                    };
                    let mut up = o.resize(below, [2 * h, 2 * w], mode);
                    if let Some(ups) = ups {
                        up = ups[i][j - 1].run(o, up);
                    }
                    let mut parts = grid[i][..j].to_vec();
                    parts.push(up);
                    let cat = o.concat(parts, 1);
                    node.run(o, cat)
                });
                if j == 0 && i == depth {
                    o.tap(crate::network::ENCODER_TAP, &y);
                }
                grid[i].push(y);
            }
        }
        let last = self.heads.len() - 1;
        let final_logits = o.scoped("head", |o| self.heads[last].run(o, grid[0][depth].clone()));
        let mut out = SegOutput::logits(final_logits);
        if o.training() {
            for (k, head) in self.heads[..last].iter().enumerate() {
                let value = o.scoped(&format!("side{}", k + 1), |o| {
                    head.run(o, grid[0][k + 1].clone())
                });
                out.aux.push(Aux {
                    name: format!("x0_{}", k + 1),
                    kind: AuxKind::SideLogits,
                    value,
                });
            }
        }
        out
    }
}
