//! DANet (Fu et al., "Dual Attention Network for Scene Segmentation", CVPR 2019): a dilated
//! ResNet whose last features go through two attention branches side by side: position
//! attention (every position a weighted sum of all positions) and channel attention (every
//! channel a weighted sum of all channels), each between 3x3 conv-BN-ReLU layers; the two
//! are summed and classified.
//!
//! As JMedSeg's `danet`: its shared ResNet-101 (deep stem, output stride 16, multi-grid
//! layer4); the head reduces the 2048 channels to a quarter (512) by a 3x3 conv (no
//! bias)-BN-ReLU in each branch; position attention with query and key at an eighth of that
//! (64) and `gamma * attention + x`, gamma learned from zero; channel attention likewise; a
//! 3x3 conv-BN-ReLU after each; their sum by a 1x1 convolution to the classes, bilinearly
//! up-sampled to the input size. `backbone=resnet50` and `output_stride=8` (the paper's)
//! are options.
//!
//! Departures: no dropout before the classifier (JMedSeg's p = 0.1; medseg's ops have none);
//! the stem's third convolution is followed by BatchNorm and ReLU (see
//! [`crate::backbones::resnet`]); channel attention as JMedSeg's (softmax of the dot
//! products, see [`ChannelAttention`]); the paper's auxiliary outputs of each branch are
//! not trained (JMedSeg's are commented out).

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::self_attention::{ChannelAttention, PositionAttention};
use crate::blocks::{ConvBnRelu, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The dilated ResNet (JMedSeg's ResNet-101).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// The backbone's output stride: 16 (JMedSeg's) or 8 (the paper's).
    pub output_stride: usize,
}

impl Default for DaNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet101,
            base_width: 64,
            output_stride: 16,
        }
    }
}

impl DaNetConfig {
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
pub struct DaNet<B: Backend> {
    pub backbone: ResNet<B>,
    /// Position branch: reduce, attend (`pam_gamma * attention + x`), refine.
    pub pam_in: ConvBnRelu<B>,
    pub pam: PositionAttention<B>,
    pub pam_gamma: Param<Tensor<B, 4>>,
    pub pam_out: ConvBnRelu<B>,
    /// Channel branch: reduce, attend, refine.
    pub cam_in: ConvBnRelu<B>,
    pub cam: ChannelAttention<B>,
    pub cam_out: ConvBnRelu<B>,
    pub head: Head<B>,
}

impl ArchConfig for DaNetConfig {
    type Model<B: Backend> = DaNet<B>;
    const NAME: &'static str = "danet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Fu, Liu, Tian, Li, Bao, Fang & Lu, Dual Attention Network for \
        Scene Segmentation, CVPR 2019";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.output_stride
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        self.backbone_config().validate()
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        // Bottlenecks as the default's, the fewest of them (ResNet-50), at 4..128 channels.
        Self {
            backbone: ResNetDepth::Resnet50,
            base_width: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> DaNet<B> {
        let bb = self.backbone_config();
        let w = bb.stage_width(3);
        let inner = (w / 4).max(1);
        DaNet {
            backbone: bb.init(device),
            pam_in: ConvBnRelu::new(w, inner, 3, device),
            pam: PositionAttention::new(inner, (inner / 8).max(1), device),
            pam_gamma: Param::from_tensor(Tensor::zeros([1, 1, 1, 1], device)),
            pam_out: ConvBnRelu::new(inner, inner, 3, device),
            cam_in: ConvBnRelu::new(w, inner, 3, device),
            cam: ChannelAttention::new(device),
            cam_out: ConvBnRelu::new(inner, inner, 3, device),
            head: Head::new(inner, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for DaNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let features = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let f = features.last().expect("layer4's output").clone();
        o.tap(crate::network::ENCODER_TAP, &f);
        let position = o.scoped("pam", |o| {
            let y = self.pam_in.run(o, f.clone());
            let attended = self.pam.run(o, y.clone());
            let gamma = o.param(&self.pam_gamma);
            let attended = o.mul(attended, gamma);
            let y = o.add(attended, y);
            self.pam_out.run(o, y)
        });
        let channel = o.scoped("cam", |o| {
            let y = self.cam_in.run(o, f);
            let y = self.cam.run(o, y);
            self.cam_out.run(o, y)
        });
        let logits = o.scoped("head", |o| {
            let sum = o.add(position, channel);
            let y = self.head.run(o, sum);
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

    /// The default keeps the input size, with 512-channel branches and 64-channel queries.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = DaNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.pam_in.conv.weight.dims()[0], 512);
        assert_eq!(model.pam.query.weight.dims()[0], 64);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("danet default parameters: {}", graph.parameter_count());
    }
}
