//! DeepLab v3+ (Chen et al., ECCV 2018): a dilated ResNet, atrous spatial pyramid pooling
//! (ASPP: parallel convolutions at several dilations plus an image-level pooling branch) on
//! its last features, and a decoder that joins the ASPP output, up-sampled, with the
//! backbone's stride-4 (low-level) features before the final up-sampling.
//!
//! As JMedSeg's `deeplab` (`DeepLabv3plus2.DeepLab`): its shared ResNet-101 (deep stem,
//! output stride 16, multi-grid layer4); ASPP of a 1x1 and three 3x3 conv(no bias)-BN-ReLU
//! at dilations 6, 12, 18 (12, 24, 36 at output stride 8) and a global average pooling
//! branch (1x1 conv-BN-ReLU, broadcast back), all 256 wide, concatenated and reduced by a
//! 1x1 conv-BN-ReLU to 256; decoder: layer1's output by a 1x1 conv-BN-ReLU to 48, the ASPP
//! output bilinearly up-sampled to its size, concatenated, two 3x3 conv-BN-ReLU at 256, a
//! 1x1 convolution to the classes, bilinear up-sampling to the input size. The widths scale
//! with the backbone's (`base_width` 64: ASPP 4x, low-level 3/4x).
//!
//! Departures: no dropout (JMedSeg's 0.5 after the ASPP and in the decoder, 0.1 before the
//! classifier; medseg's ops have none); the stem's third convolution is followed by BatchNorm
//! and ReLU (see [`crate::backbones::resnet`]).
//!
//! `backbone`: resnet18/34/50/101 (JMedSeg's registered list: resnet50, resnet101,
//! res2net101), or the two the paper also uses and JMedSeg carries unregistered: `xception`
//! (the paper's aligned Xception-65, [`crate::backbones::xception`]; low-level features 128
//! wide) and `mobilenetv2` ([`crate::backbones::mobilenet_v2`]; low-level features 24 wide).
//! Their widths follow `base_width` / 64 as a width multiplier. Res2Net is not here.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::mobilenet_v2::{MobileNetV2, MobileNetV2Config};
use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::backbones::xception::{Xception, XceptionConfig};
use crate::blocks::{ConvBnRelu, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLabConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The encoder (JMedSeg's ResNet-101, dilated).
    pub backbone: DeepLabBackbone,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// 16 (ASPP dilations 6, 12, 18) or 8 (12, 24, 36).
    pub output_stride: usize,
}

impl Default for DeepLabConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: DeepLabBackbone::Resnet101,
            base_width: 64,
            output_stride: 16,
        }
    }
}

/// DeepLab's encoders: the ResNets by depth (the names the field had when it took ResNets
/// only), Xception and MobileNetV2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeepLabBackbone {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
    Xception,
    Mobilenetv2,
}

impl DeepLabBackbone {
    fn resnet(self) -> Option<ResNetDepth> {
        match self {
            Self::Resnet18 => Some(ResNetDepth::Resnet18),
            Self::Resnet34 => Some(ResNetDepth::Resnet34),
            Self::Resnet50 => Some(ResNetDepth::Resnet50),
            Self::Resnet101 => Some(ResNetDepth::Resnet101),
            Self::Xception | Self::Mobilenetv2 => None,
        }
    }
}

impl DeepLabConfig {
    /// The ResNet's configuration, when the backbone is one.
    pub(crate) fn resnet_config(&self) -> Option<ResNetConfig> {
        self.backbone.resnet().map(|depth| {
            ResNetConfig::dilated(depth, self.in_channels, self.base_width, self.output_stride)
        })
    }

    /// Xception's and MobileNetV2's width multiplier: the ResNets' `base_width` over 64.
    fn width_mult(&self) -> f64 {
        self.base_width as f64 / 64.0
    }

    fn xception_config(&self) -> XceptionConfig {
        XceptionConfig {
            in_channels: self.in_channels,
            width_mult: self.width_mult(),
            output_stride: self.output_stride,
        }
    }

    fn mobilenet_config(&self) -> MobileNetV2Config {
        MobileNetV2Config {
            in_channels: self.in_channels,
            width_mult: self.width_mult(),
            output_stride: self.output_stride,
        }
    }

    /// Channels of the low-level and the last features.
    fn feature_widths(&self) -> (usize, usize) {
        match (self.resnet_config(), self.backbone) {
            (Some(r), _) => (r.stage_width(0), r.stage_width(3)),
            (None, DeepLabBackbone::Xception) => self.xception_config().feature_widths(),
            (None, _) => self.mobilenet_config().feature_widths(),
        }
    }

    /// The three 3x3 ASPP branches' dilations.
    fn rates(&self) -> [usize; 3] {
        let k = 16 / self.output_stride.clamp(1, 16);
        [6 * k, 12 * k, 18 * k]
    }
}

/// A 3x3 conv (no bias)-BN at dilation `d`, "same" padding.
#[derive(Module, Debug)]
pub struct AtrousBranch<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

impl<B: Backend> AtrousBranch<B> {
    fn new(input: usize, out: usize, d: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([input, out], [3, 3])
                .with_dilation([d, d])
                .with_padding(PaddingConfig2d::Explicit(d, d, d, d))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(out).init(device),
        }
    }

    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv, &self.bn);
        o.relu(y)
    }
}

/// Atrous spatial pyramid pooling.
#[derive(Module, Debug)]
pub struct Aspp<B: Backend> {
    pub aspp1: ConvBnRelu<B>,
    pub atrous: Vec<AtrousBranch<B>>,
    pub image_pool: ConvBnRelu<B>,
    pub project: ConvBnRelu<B>,
}

impl<B: Backend> Aspp<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let [_, _, h, w] = o.shape(&x);
        let mut parts = vec![self.aspp1.run(o, x.clone())];
        for branch in &self.atrous {
            parts.push(branch.run(o, x.clone()));
        }
        let pooled = o.adaptive_avg_pool(x, [1, 1]);
        let pooled = self.image_pool.run(o, pooled);
        // Up-sampling a 1x1 map is a broadcast, whatever the interpolation.
        parts.push(o.resize(pooled, [h, w], ResizeMode::Nearest));
        let cat = o.concat(parts, 1);
        self.project.run(o, cat)
    }
}

/// One of the three encoders is present (`backbone` keeps the ResNet's record path of the
/// checkpoints written when it was the only one).
#[derive(Module, Debug)]
pub struct DeepLab<B: Backend> {
    pub backbone: Option<ResNet<B>>,
    pub xception: Option<Xception<B>>,
    pub mobilenet: Option<MobileNetV2<B>>,
    pub aspp: Aspp<B>,
    /// Low-level features (layer1) to their decoder width.
    pub low_level: ConvBnRelu<B>,
    pub last1: ConvBnRelu<B>,
    pub last2: ConvBnRelu<B>,
    pub head: Head<B>,
}

impl ArchConfig for DeepLabConfig {
    type Model<B: Backend> = DeepLab<B>;
    const NAME: &'static str = "deeplab";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Chen, Zhu, Papandreou, Schroff & Adam, Encoder-Decoder with \
        Atrous Separable Convolution for Semantic Image Segmentation (DeepLab v3+), ECCV 2018";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.output_stride
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        if ![8, 16].contains(&self.output_stride) {
            return Err(format!(
                "DeepLab's output_stride is 16 or 8, not {}",
                self.output_stride
            ));
        }
        match (self.resnet_config(), self.backbone) {
            (Some(r), _) => r.validate(),
            (None, DeepLabBackbone::Xception) => self.xception_config().validate(),
            (None, _) => self.mobilenet_config().validate(),
        }
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        // Bottlenecks as the default's, the fewest of them (ResNet-50), at 4..128 channels.
        Self {
            backbone: DeepLabBackbone::Resnet50,
            base_width: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> DeepLab<B> {
        let (low, high) = self.feature_widths();
        let is = |b: DeepLabBackbone| self.backbone == b;
        let aspp_width = 4 * self.base_width;
        let low_width = (3 * self.base_width / 4).max(1);
        DeepLab {
            backbone: self.resnet_config().map(|r| r.init(device)),
            xception: is(DeepLabBackbone::Xception).then(|| self.xception_config().init(device)),
            mobilenet: is(DeepLabBackbone::Mobilenetv2)
                .then(|| self.mobilenet_config().init(device)),
            aspp: Aspp {
                aspp1: ConvBnRelu::new(high, aspp_width, 1, device),
                atrous: self
                    .rates()
                    .iter()
                    .map(|&d| AtrousBranch::new(high, aspp_width, d, device))
                    .collect(),
                image_pool: ConvBnRelu::new(high, aspp_width, 1, device),
                project: ConvBnRelu::new(5 * aspp_width, aspp_width, 1, device),
            },
            low_level: ConvBnRelu::new(low, low_width, 1, device),
            last1: ConvBnRelu::new(aspp_width + low_width, aspp_width, 3, device),
            last2: ConvBnRelu::new(aspp_width, aspp_width, 3, device),
            head: Head::new(aspp_width, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for DeepLab<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let (low, high) = o.scoped("backbone", |o| {
            if let Some(resnet) = &self.backbone {
                let mut stages = resnet.run(o, x).stages;
                let high = stages.pop().expect("layer4's output");
                (stages.swap_remove(0), high)
            } else if let Some(xception) = &self.xception {
                xception.run(o, x)
            } else {
                self.mobilenet.as_ref().expect("one encoder").run(o, x)
            }
        });
        o.tap(crate::network::ENCODER_TAP, &high);
        let a = o.scoped("aspp", |o| self.aspp.run(o, high));
        let bilinear = ResizeMode::Bilinear {
            align_corners: false,
        };
        let logits = o.scoped("decoder", |o| {
            let low = self.low_level.run(o, low);
            let [_, _, h, w] = o.shape(&low);
            let up = o.resize(a, [h, w], bilinear);
            let cat = o.concat(vec![up, low], 1);
            let y = self.last1.run(o, cat);
            let y = self.last2.run(o, y);
            let y = self.head.run(o, y);
            o.resize(y, [height, width], bilinear)
        });
        SegOutput::logits(logits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// The default keeps the input size; the decoder joins 256 ASPP and 48 low-level channels.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = DeepLabConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.last1.conv.weight.dims()[1], 304);
        let dilations: Vec<usize> = model
            .aspp
            .atrous
            .iter()
            .map(|b| b.conv.dilation[0])
            .collect();
        assert_eq!(dilations, [6, 12, 18]);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("deeplab default parameters: {}", graph.parameter_count());
    }

    /// Xception and MobileNetV2 at both output strides: the input size kept, the decoder
    /// reading 128 (Xception) or 24 (MobileNetV2) low-level channels.
    #[test]
    fn xception_and_mobilenet_backbones() {
        for (backbone, low) in [
            (DeepLabBackbone::Xception, 128),
            (DeepLabBackbone::Mobilenetv2, 24),
        ] {
            for output_stride in [16, 8] {
                let mut cfg = DeepLabConfig {
                    backbone,
                    output_stride,
                    ..DeepLabConfig::default()
                };
                cfg.set_io(1, 2);
                cfg.validate().expect("a valid configuration");
                let model = cfg.init::<Flex>(&Default::default());
                assert_eq!(model.low_level.conv.weight.dims()[1], low);
                let graph = crate::network::export_graph(&model, [1, 1, 64, 64]);
                assert_eq!(
                    graph.shape(graph.output.expect("an output")),
                    [1, 2, 64, 64]
                );
                eprintln!(
                    "deeplab {backbone:?} os {output_stride} parameters: {}",
                    graph.parameter_count()
                );
            }
        }
    }
}
