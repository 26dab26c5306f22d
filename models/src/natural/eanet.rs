//! EANet (Guo, Liu, Mu & Hu, "Beyond Self-attention: External Attention using Two Linear
//! Layers for Visual Tasks", TPAMI 2022; its segmentation network): a dilated ResNet, a 3x3
//! conv-norm-ReLU to 512, one external-attention block (64 memory units; see
//! [`crate::blocks::external_attention`]), and a head of two transposed convolutions that
//! up-sample 4x before the final bilinear resize.
//!
//! As JMedSeg's `eanet`: ResNet-101 at output stride 16 (deep stem, multi-grid layer4);
//! `fc0` 3x3 conv (no bias)-norm-ReLU 2048 -> 512; external attention with k = 64; `fc1` a 3x3
//! stride-2 transposed conv (no bias, padding 1, output padding 1)-norm-ReLU to 256; `fc2` a
//! 2x2 stride-2 transposed convolution (with bias) to the classes; bilinear up-sampling to
//! the input size. Widths scale with the backbone's (`base_width` 64).
//!
//! Departures: JMedSeg's EANet carries its own ResNet whose every norm is a GroupNorm (1 to
//! 32 groups by width) and whose stem's third convolution has no norm of its own; this one
//! uses the zoo's shared dilated ResNet with BatchNorm (so that every ResNet network shares
//! one backbone and its weight files), and BatchNorm in the head too. No dropout (JMedSeg's
//! p = 0.1 after `fc1`; medseg's ops have none).

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::ConvBnRelu;
use crate::blocks::external_attention::ExternalAttention;
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EaNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The dilated ResNet (JMedSeg's ResNet-101).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// The backbone's output stride (16).
    pub output_stride: usize,
    /// Memory units of the external attention (64).
    pub units: usize,
}

impl Default for EaNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet101,
            base_width: 64,
            output_stride: 16,
            units: 64,
        }
    }
}

impl EaNetConfig {
    pub(crate) fn backbone_config(&self) -> ResNetConfig {
        ResNetConfig::dilated(
            self.backbone,
            self.in_channels,
            self.base_width,
            self.output_stride,
        )
    }
}

#[derive(Module, Debug)]
pub struct EaNet<B: Backend> {
    pub backbone: ResNet<B>,
    pub reduce: ConvBnRelu<B>,
    pub attention: ExternalAttention<B>,
    /// 3x3 stride-2 transposed conv, its norm (then ReLU).
    pub up1: ConvTranspose2d<B>,
    pub up1_norm: BatchNorm<B>,
    /// 2x2 stride-2 transposed convolution to the classes.
    pub up2: ConvTranspose2d<B>,
}

impl ArchConfig for EaNetConfig {
    type Model<B: Backend> = EaNet<B>;
    const NAME: &'static str = "eanet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Guo, Liu, Mu & Hu, Beyond Self-attention: External Attention \
        using Two Linear Layers for Visual Tasks, IEEE TPAMI 2022";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.output_stride
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        if self.units == 0 {
            return Err("units must be > 0".into());
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
        self.units = scaled_width(self.units, scale, 1);
    }

    fn tiny() -> Self {
        // Bottlenecks as the default's, the fewest of them (ResNet-50), at 4..128 channels.
        Self {
            backbone: ResNetDepth::Resnet50,
            base_width: 4,
            units: 8,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> EaNet<B> {
        let bb = self.backbone_config();
        let w = bb.stage_width(3);
        let (inner, up_width) = (8 * self.base_width, 4 * self.base_width);
        EaNet {
            backbone: bb.init(device),
            reduce: ConvBnRelu::new(w, inner, 3, device),
            attention: ExternalAttention::new(inner, self.units, device),
            up1: ConvTranspose2dConfig::new([inner, up_width], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_padding_out([1, 1])
                .with_bias(false)
                .init(device),
            up1_norm: BatchNormConfig::new(up_width).init(device),
            up2: ConvTranspose2dConfig::new([up_width, self.num_classes], [2, 2])
                .with_stride([2, 2])
                .init(device),
        }
    }
}

impl<B: Backend> Network<B> for EaNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let features = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let f = features.last().expect("layer4's output").clone();
        o.tap(crate::network::ENCODER_TAP, &f);
        let logits = o.scoped("head", |o| {
            let y = self.reduce.run(o, f);
            let y = o.scoped("attention", |o| self.attention.run(o, y));
            let y = o.conv_transpose(y, &self.up1);
            let y = o.batch_norm(y, &self.up1_norm);
            let y = o.relu(y);
            let y = o.conv_transpose(y, &self.up2);
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

    /// JMedSeg's EANet (3 input channels, 2 classes) states 53,242,818 parameters (a comment
    /// in its code); counted from the graph (learned weights: BatchNorm's scale and shift
    /// where it has GroupNorm's, no running statistics).
    #[test]
    fn default_is_jmedsegs_size() {
        let mut cfg = EaNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        let n = graph.parameter_count() as f64;
        assert!((n / 53_242_818.0 - 1.0).abs() < 0.10, "{n}");
        eprintln!("eanet default parameters: {n}");
    }
}
