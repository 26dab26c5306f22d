//! LRF-EANet (JMedSeg's `LRFEANet`): EANet's external-attention head on JMedSeg's "large
//! receptive field" encoder ([`crate::backbones::lrf_resnet`]: patch merging instead of
//! pooling, dilated aggregation blocks), with a patch-split up-sampling. JMedSeg's own
//! network; it names no paper beyond EANet's (Guo et al., TPAMI 2022).
//!
//! As JMedSeg's (base width 64): the encoder to 512 channels at 1/16; external attention with
//! 64 memory units; a patch split (1x1 conv-norm-ReLU to 4x the width, a 2x2 stride-2
//! transposed conv-norm-ReLU to 256); a 2x2 stride-2 transposed convolution (with bias) to the
//! classes; bilinear up-sampling to the input size.
//!
//! Departures: BatchNorm where JMedSeg has GroupNorm (see the encoder); no dropout (JMedSeg's
//! p = 0.1 after the split).

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::lrf_resnet::LrfResNet;
use crate::blocks::ConvBnRelu;
use crate::blocks::external_attention::ExternalAttention;
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrfEaNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The encoder's first width (64); it ends at 8x it.
    pub base_width: usize,
    /// Memory units of the external attention (64).
    pub units: usize,
}

impl Default for LrfEaNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
            units: 64,
        }
    }
}

#[derive(Module, Debug)]
pub struct LrfEaNet<B: Backend> {
    pub backbone: LrfResNet<B>,
    pub attention: ExternalAttention<B>,
    /// Patch split: 1x1 widening, then a 2x2 stride-2 transposed conv and its norm.
    pub split_widen: ConvBnRelu<B>,
    pub split_up: ConvTranspose2d<B>,
    pub split_norm: BatchNorm<B>,
    /// 2x2 stride-2 transposed convolution to the classes.
    pub up: ConvTranspose2d<B>,
}

impl ArchConfig for LrfEaNetConfig {
    type Model<B: Backend> = LrfEaNet<B>;
    const NAME: &'static str = "lrfea";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "JMedSeg's LRF-EANet (external attention after Guo, Liu, Mu & \
        Hu, IEEE TPAMI 2022, on a large-receptive-field patch-merging encoder)";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        16
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 || self.units == 0 {
            return Err("base_width and units must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.units = scaled_width(self.units, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            units: 8,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> LrfEaNet<B> {
        let top = 8 * self.base_width;
        let split = 4 * self.base_width;
        LrfEaNet {
            backbone: LrfResNet::new(self.in_channels, self.base_width, device),
            attention: ExternalAttention::new(top, self.units, device),
            split_widen: ConvBnRelu::new(top, 4 * top, 1, device),
            split_up: ConvTranspose2dConfig::new([4 * top, split], [2, 2])
                .with_stride([2, 2])
                .with_bias(false)
                .init(device),
            split_norm: BatchNormConfig::new(split).init(device),
            up: ConvTranspose2dConfig::new([split, self.num_classes], [2, 2])
                .with_stride([2, 2])
                .init(device),
        }
    }
}

impl<B: Backend> Network<B> for LrfEaNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let f = o.scoped("backbone", |o| self.backbone.run(o, x));
        o.tap(crate::network::ENCODER_TAP, &f);
        let logits = o.scoped("head", |o| {
            let y = o.scoped("attention", |o| self.attention.run(o, f));
            let y = self.split_widen.run(o, y);
            let y = o.conv_transpose(y, &self.split_up);
            let y = o.batch_norm(y, &self.split_norm);
            let y = o.relu(y);
            let y = o.conv_transpose(y, &self.up);
            let bilinear = ResizeMode::Bilinear {
                align_corners: false,
            };
            o.resize(y, [height, width], bilinear)
        });
        SegOutput::logits(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The default keeps the input size, with the encoder's 512 channels at 1/16.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = LrfEaNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.backbone.layer4.len(), 4);
        assert_eq!(model.backbone.layer3.len(), 18);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("lrfea default parameters: {}", graph.parameter_count());
    }
}
