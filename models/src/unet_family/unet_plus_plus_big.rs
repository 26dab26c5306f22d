//! JMedSeg's big UNet++ (`unetppbig`, `NestedUNet_Big` in its `model/NestedUNet.py`): UNet++
//! (Zhou et al., DLMIA 2018) at widths 64..1024 whose up-sampling is learned.
//!
//! The node grid is [`super::unet_plus_plus`]'s (node `X[i][j]` is a double conv of
//! `X[i][0..j]` concatenated with the up-sampled `X[i+1][j-1]`, run by
//! [`UNetPlusPlus::run_grid`]). What makes this variant: where `unetpp` only interpolates
//! `X[i+1][j-1]` 2x, here each of the `depth * (depth + 1) / 2` up-sampling paths has its own
//! block, bilinear 2x then a double conv-BN-ReLU that keeps the row's width `w` with `w / 2`
//! channels in between (JMedSeg's `Up(w, w)` called without a skip). This adds 16.5 M
//! parameters to JMedSeg's `unetpp`: 53.2 M with 3 input channels and 2 classes in JMedSeg's
//! code (it states no count).
//!
//! Defaults are JMedSeg's: base width 64, depth 4, one head (no deep supervision; the option
//! adds `unetpp`'s side heads). Departures: the interpolation is `unetpp`'s (bilinear with
//! `align_corners`, shared with it); convolutions followed by BatchNorm have no bias.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::DoubleConv;
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;
use crate::unet_family::unet_plus_plus::{UNetPlusPlus, UNetPlusPlusConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UNetPlusPlusBigConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// Channels at depth 0 (JMedSeg's 64); each level doubles them.
    pub base_width: usize,
    /// Number of 2x down-samplings.
    pub depth: usize,
    /// Heads on every top node, trained as side outputs (JMedSeg: off).
    pub deep_supervision: bool,
}

impl Default for UNetPlusPlusBigConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            depth: 4,
            deep_supervision: false,
        }
    }
}

impl UNetPlusPlusBigConfig {
    /// The node grid's configuration.
    fn grid(&self) -> UNetPlusPlusConfig {
        UNetPlusPlusConfig {
            in_channels: self.in_channels,
            num_classes: self.num_classes,
            base_width: self.base_width,
            depth: self.depth,
            deep_supervision: self.deep_supervision,
        }
    }
}

#[derive(Module, Debug)]
pub struct UNetPlusPlusBig<B: Backend> {
    pub nested: UNetPlusPlus<B>,
    /// `ups[i][j-1]` brings `X[i+1][j-1]` up to node `X[i][j]`.
    pub ups: Vec<Vec<DoubleConv<B>>>,
}

impl ArchConfig for UNetPlusPlusBigConfig {
    type Model<B: Backend> = UNetPlusPlusBig<B>;
    const NAME: &'static str = "unetpp-big";
    const FAMILY: &'static str = "unet";
    const PAPER: &'static str = "Zhou et al., UNet++: A Nested U-Net Architecture for Medical Image Segmentation, DLMIA 2018 (JMedSeg's NestedUNet_Big variant)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.grid().size_multiple()
    }

    fn validate(&self) -> Result<(), String> {
        self.grid().validate()
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

    fn init<B: Backend>(&self, device: &B::Device) -> UNetPlusPlusBig<B> {
        let width = |level: usize| self.base_width << level;
        let ups = (0..self.depth)
            .map(|i| {
                let w = width(i + 1);
                (1..=self.depth - i)
                    .map(|_| DoubleConv::with_mid(w, w / 2, w, device))
                    .collect()
            })
            .collect();
        UNetPlusPlusBig {
            nested: self.grid().init(device),
            ups,
        }
    }
}

impl<B: Backend> Network<B> for UNetPlusPlusBig<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        self.nested.run_grid(o, x, Some(&self.ups))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::export_graph;
    use burn::backend::Flex;

    fn parameters<C: ArchConfig>(mut c: C) -> usize {
        c.set_io(3, 2);
        let net = c.init::<Flex>(&Default::default());
        export_graph(&net, [1, 3, 16, 16]).parameter_count()
    }

    #[test]
    fn the_default_has_the_parameter_count_of_jmedsegs_code() {
        let n = parameters(UNetPlusPlusBigConfig::default());
        // Counted from JMedSeg's NestedUNet_Big (3 input channels, 2 classes).
        assert!(
            (n as f64 - 53_159_746.0).abs() < 0.1 * 53_159_746.0,
            "{n} parameters"
        );
        // JMedSeg's plain `unetpp` (widths 64..1024, one head): 36,629,698.
        let plain = parameters(UNetPlusPlusConfig {
            base_width: 64,
            deep_supervision: false,
            ..UNetPlusPlusConfig::default()
        });
        assert!(
            (plain as f64 - 36_629_698.0).abs() < 0.1 * 36_629_698.0,
            "{plain} parameters"
        );
    }
}
