//! LightNet: the lighter sibling of OneNet in JMedSeg (`model/LightNet.py`). There is no
//! paper and the code cites nothing; it is the same course project's design as OneNet (see
//! [`crate::unet_family::onenet`] and [`crate::blocks::shift_conv`]): grouped convolutions
//! whose groups exchange information through a channel roll, a 4x4 stride-4 stem and a 4x4
//! stride-4 transposed-conv output. Where OneNet concatenates the chain's features (a 1x1
//! conv over 8 x 1024 channels, half its parameters), LightNet fuses them by multiplication.
//!
//! The structure, from the code (defaults in brackets): the stem to `stem_groups` x
//! `group_width` channels [4 x 16 = 64]; `widenings` [4] grouped 3x3 shift convs (64 -> 128
//! -> ... -> 1024 channels); a chain of grouped 3x3 shift convs at that width [64 groups of
//! 16] with the given `dilations` [1 x3, 2 x4, 4 x6, 8, 16, 32]; multiplicative fusion of the
//! chain outputs listed in `fused` [2, 6, 11, 12, 12, 13, 14, 15, layer 12 twice as in
//! JMedSeg]: starting from the last, for each earlier one (last to first) `f = fuse_i(f * x_i)`
//! with `fuse_i` a grouped 1x1 shift conv [7 of them]; then `decode_stages` [2] grouped 1x1
//! shift convs, each halving the groups and the channels (1024 -> 512 -> 256), and the
//! transposed conv to class logits. Every roll is by half a group [8]; every shift conv is conv
//! (no bias), GroupNorm with one group per conv group, ReLU, roll. 2.84 M parameters (JMedSeg:
//! 2,836,802).
//!
//! Input: JMedSeg's LightNet is gray: it sums its input's channels (the data loader reads the
//! gray CT slice as RGB, so three equal channels) into one, and its stem reads that one
//! channel. Here the stem reads `in_channels` channels as the data has them (a gray slice is
//! one channel in medseg, and then the network is JMedSeg's; for RGB or stacked slices the
//! stem learns its own mixture where JMedSeg adds the channels with equal weights).

use burn::module::Module;
use burn::nn::conv::ConvTranspose2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::shift_conv::{
    ShiftGroupConv, ShiftTrunk, jmedseg_dilations, jmedseg_fused_layers, patch_output,
    validate_trunk,
};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LightNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels per group entering every 3x3 grouped conv [16].
    pub group_width: usize,
    /// Groups of the stem's output [4].
    pub stem_groups: usize,
    /// Grouped convs that double the channels and then the groups [4].
    pub widenings: usize,
    /// One entry per layer of the dilated chain.
    pub dilations: Vec<usize>,
    /// Chain layers (from 0) fused by multiplication, repeats allowed (at least two).
    pub fused: Vec<usize>,
    /// 1x1 grouped convs after the fusion, each halving the channels [2].
    pub decode_stages: usize,
}

impl Default for LightNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            group_width: 16,
            stem_groups: 4,
            widenings: 4,
            dilations: jmedseg_dilations(),
            fused: jmedseg_fused_layers(),
            decode_stages: 2,
        }
    }
}

#[derive(Module, Debug)]
pub struct LightNet<B: Backend> {
    pub trunk: ShiftTrunk<B>,
    /// Chain layers fused, in order.
    pub fused: Vec<usize>,
    /// `fuse[i]` follows the product with chain output `fused[i]`.
    pub fuse: Vec<ShiftGroupConv<B>>,
    pub decode: Vec<ShiftGroupConv<B>>,
    pub output: ConvTranspose2d<B>,
}

impl ArchConfig for LightNetConfig {
    type Model<B: Backend> = LightNet<B>;
    const NAME: &'static str = "lightnet";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "no paper: JMedSeg's LightNet (THU-CVlab/JMedSeg, model/LightNet.py; OneNet's course-project design with multiplicative fusion)";

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
        if self.fused.len() < 2 {
            return Err("fused must list at least two layers to multiply".into());
        }
        let groups = self.stem_groups << self.widenings;
        if (groups.trailing_zeros() as usize) < self.decode_stages {
            return Err(format!(
                "decode_stages: {} halvings do not divide the chain's {groups} groups \
                 (stem_groups << widenings)",
                self.decode_stages
            ));
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.group_width = scaled_width(self.group_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            // Groups of 4 learned too slowly for the zoo test (8 Adam steps moved the loss
            // 5%, the multiplicative fusion of near-zero features); groups of 8 move it 14%.
            group_width: 8,
            stem_groups: 2,
            widenings: 2,
            dilations: vec![1, 2, 4, 8],
            fused: vec![1, 2, 2, 3],
            decode_stages: 2,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> LightNet<B> {
        let g = self.group_width;
        let groups = self.stem_groups << self.widenings;
        let trunk = ShiftTrunk::new(
            self.in_channels,
            g,
            self.stem_groups,
            self.widenings,
            g / 2,
            &self.dilations,
            device,
        );
        let fuse = (1..self.fused.len())
            .map(|_| ShiftGroupConv::new([g, g], groups, 1, 1, g / 2, device))
            .collect();
        // Stage k: `groups >> (k + 1)` groups of 2g -> g channels.
        let decode = (0..self.decode_stages)
            .map(|k| ShiftGroupConv::new([2 * g, g], groups >> (k + 1), 1, 1, g / 2, device))
            .collect();
        let out_width = (groups >> self.decode_stages) * g;
        LightNet {
            trunk,
            fused: self.fused.clone(),
            fuse,
            decode,
            output: patch_output(out_width, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for LightNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let outputs = self.trunk.run(o, x);
        let (last, earlier) = self.fused.split_last().expect("at least two fused layers");
        let mut f = outputs[*last].clone();
        for (i, conv) in self.fuse.iter().enumerate().rev() {
            f = o.scoped(&format!("fuse{i}"), |o| {
                let product = o.mul(f, outputs[earlier[i]].clone());
                conv.run(o, product)
            });
        }
        for (k, stage) in self.decode.iter().enumerate() {
            f = o.scoped(&format!("decode{k}"), |o| stage.run(o, f));
        }
        SegOutput::logits(o.scoped("output", |o| o.conv_transpose(f, &self.output)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    #[test]
    fn parameter_count_matches_jmedseg() {
        let mut config = LightNetConfig::default();
        config.set_io(3, 2);
        let model = config.init::<Flex>(&Default::default());
        let count = export_graph(&model, [1, 3, 32, 32]).parameter_count();
        // JMedSeg's model/LightNet.py: 2,836,802 (a 1-channel stem; ours reads 3 here).
        eprintln!("{count} parameters (JMedSeg: 2,836,802)");
        let ratio = count as f64 / 2_836_802.0;
        assert!((0.9..=1.1).contains(&ratio), "{count}");
    }
}
