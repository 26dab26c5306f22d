//! OneNet: JMedSeg's lightweight segmentation network (`model/OneNet.py`). There is no paper:
//! the code cites nothing, and JMedSeg's README credits it to a student of the course (You
//! Jiacheng, section on lightweight models), describing its ideas in a paragraph: grouped
//! convolutions to cut parameters, with the channels rolled by half a group after each
//! ("channel shift", [`crate::blocks::shift_conv`]) so that every group exchanges information
//! with its neighbour, cheaper than a channel shuffle; a 4x4 stride-4 stem; DenseNet-like
//! concatenation of intermediate features before a stride-4 transposed convolution.
//!
//! The structure, from the code (defaults in brackets): a 4x4 stride-4 conv (with bias) embeds
//! the input into `stem_groups` x `group_width` channels [8 x 16 = 128]; `widenings` [3]
//! grouped 3x3 shift convs each double the groups' width and then their number (128 -> 256
//! -> 512 -> 1024 channels, rolled by half an output group); a chain of grouped 3x3 shift
//! convs at that width [64 groups of 16, rolled by 8] with the given `dilations` [1 x3, 2 x4,
//! 4 x6, 8, 16, 32]; the outputs of the chain's layers listed in `fused` [2, 6, 11, 12, 12, 13,
//! 14, 15: layer 12 twice, as JMedSeg's slicing `x[2:3] + x[6:7] + x[11:13] + x[-4:]` has it]
//! concatenated (8 x 1024 channels), a 1x1 conv to `fuse_groups` x `group_width` channels [256]
//! with GroupNorm (groups of `group_width` channels) and ReLU, and a 4x4 stride-4 transposed
//! conv to class logits. Every shift conv is conv (no bias), GroupNorm with one group per conv
//! group, ReLU, roll. 4.77 M parameters (JMedSeg: 4,765,826).
//!
//! Departures: JMedSeg's fusion has a dropout (p = 0.1) before the transposed conv, left out
//! (medseg's ops have no dropout, and the network trains without it); the input channels
//! follow the data (JMedSeg: 3, an RGB copy of the gray slice).

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::shift_conv::{
    ShiftTrunk, jmedseg_dilations, jmedseg_fused_layers, patch_output, validate_trunk,
};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels per group entering every grouped conv [16].
    pub group_width: usize,
    /// Groups of the stem's output [8].
    pub stem_groups: usize,
    /// Grouped convs that double the channels and then the groups [3].
    pub widenings: usize,
    /// One entry per layer of the dilated chain.
    pub dilations: Vec<usize>,
    /// Chain layers (from 0) whose outputs are concatenated, repeats allowed.
    pub fused: Vec<usize>,
    /// The fusion conv's output, in groups of `group_width` channels [16].
    pub fuse_groups: usize,
}

impl Default for OneNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            group_width: 16,
            stem_groups: 8,
            widenings: 3,
            dilations: jmedseg_dilations(),
            fused: jmedseg_fused_layers(),
            fuse_groups: 16,
        }
    }
}

#[derive(Module, Debug)]
pub struct OneNet<B: Backend> {
    pub trunk: ShiftTrunk<B>,
    /// Chain layers fused, in order.
    pub fused: Vec<usize>,
    pub fuse: Conv2d<B>,
    pub fuse_norm: GroupNorm<B>,
    pub output: ConvTranspose2d<B>,
}

impl ArchConfig for OneNetConfig {
    type Model<B: Backend> = OneNet<B>;
    const NAME: &'static str = "onenet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "no paper: JMedSeg's OneNet (THU-CVlab/JMedSeg, model/OneNet.py; a course project's lightweight design by You Jiacheng, described in its README)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        4
    }

    fn validate(&self) -> Result<(), String> {
        validate_trunk(
            self.group_width,
            self.stem_groups,
            self.widenings,
            &self.dilations,
            &self.fused,
        )?;
        if self.fuse_groups == 0 {
            return Err("fuse_groups must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.group_width = scaled_width(self.group_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            group_width: 4,
            stem_groups: 2,
            widenings: 2,
            dilations: vec![1, 2, 4, 8],
            fused: vec![1, 2, 2, 3],
            fuse_groups: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> OneNet<B> {
        let g = self.group_width;
        // The widening convs roll by half an output group.
        let trunk = ShiftTrunk::new(
            self.in_channels,
            g,
            self.stem_groups,
            self.widenings,
            g,
            &self.dilations,
            device,
        );
        let groups = self.stem_groups << self.widenings;
        let fuse_width = self.fuse_groups * g;
        OneNet {
            trunk,
            fused: self.fused.clone(),
            fuse: Conv2dConfig::new([self.fused.len() * groups * g, fuse_width], [1, 1])
                .with_bias(false)
                .init(device),
            fuse_norm: GroupNormConfig::new(self.fuse_groups, fuse_width).init(device),
            output: patch_output(fuse_width, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for OneNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let outputs = self.trunk.run(o, x);
        let logits = o.scoped("fuse", |o| {
            let parts = self.fused.iter().map(|&i| outputs[i].clone()).collect();
            let cat = o.concat(parts, 1);
            let y = o.conv(cat, &self.fuse);
            let y = o.group_norm(y, &self.fuse_norm);
            let y = o.relu(y);
            o.conv_transpose(y, &self.output)
        });
        SegOutput::logits(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    #[test]
    fn parameter_count_matches_jmedseg() {
        let mut config = OneNetConfig::default();
        config.set_io(3, 2);
        let model = config.init::<Flex>(&Default::default());
        let count = export_graph(&model, [1, 3, 32, 32]).parameter_count();
        // JMedSeg's model/OneNet.py: 4,765,826.
        let ratio = count as f64 / 4_765_826.0;
        eprintln!("{count} parameters (JMedSeg: 4,765,826)");
        assert!((0.9..=1.1).contains(&ratio), "{count}");
    }
}
