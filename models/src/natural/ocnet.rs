//! OCNet (Yuan et al., "OCNet: Object Context for Semantic Segmentation", IJCV 2021; arXiv
//! 2018): a dilated ResNet whose last features are reduced and given their "object context":
//! self-attention over the positions (each pixel a weighted sum of the pixels most like it,
//! which tend to be of its own object), concatenated with the features and fused.
//!
//! As JMedSeg's `ocnet` (its base OC module): its shared ResNet-101 (deep stem, output stride
//! 16, multi-grid layer4); a 3x3 conv (no bias)-BN-ReLU to a quarter of the backbone's width
//! (512); position attention with query and key at half of that (256); a 1x1 convolution of
//! the context that starts at zero weight (so training starts from the plain features);
//! context and features concatenated, a 3x3 conv-BN-ReLU back to 512, a 1x1 convolution to
//! the classes, bilinear up-sampling to the input size. `backbone=resnet50` and
//! `output_stride=8` (the paper's) are options.
//!
//! Departures: no dropout before the classifier (JMedSeg's p = 0.1; medseg's ops have none);
//! the stem's third convolution is followed by BatchNorm and ReLU (see
//! [`crate::backbones::resnet`]); the paper's pyramid (P-OC) and atrous (ASP-OC) variants
//! are not offered (JMedSeg has the base OC only).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::self_attention::PositionAttention;
use crate::blocks::{ConvBnRelu, Head, zero_started_conv1x1};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The dilated ResNet (JMedSeg's ResNet-101).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// The backbone's output stride: 16 (JMedSeg's) or 8 (the paper's).
    pub output_stride: usize,
}

impl Default for OcNetConfig {
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

impl OcNetConfig {
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
pub struct OcNet<B: Backend> {
    pub backbone: ResNet<B>,
    pub reduce: ConvBnRelu<B>,
    pub context: PositionAttention<B>,
    /// 1x1 convolution of the context, zero weights at the start.
    pub context_scale: Conv2d<B>,
    pub fuse: ConvBnRelu<B>,
    pub head: Head<B>,
}

impl ArchConfig for OcNetConfig {
    type Model<B: Backend> = OcNet<B>;
    const NAME: &'static str = "ocnet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Yuan, Huang, Wang, Chen & Wang, OCNet: Object Context for \
        Semantic Segmentation, IJCV 2021 (arXiv 2018)";

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

    fn init<B: Backend>(&self, device: &B::Device) -> OcNet<B> {
        let bb = self.backbone_config();
        let w = bb.stage_width(3);
        let inner = (w / 4).max(1);
        OcNet {
            backbone: bb.init(device),
            reduce: ConvBnRelu::new(w, inner, 3, device),
            context: PositionAttention::new(inner, (inner / 2).max(1), device),
            context_scale: zero_started_conv1x1(inner, device),
            fuse: ConvBnRelu::new(2 * inner, inner, 3, device),
            head: Head::new(inner, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for OcNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let features = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let f = features.last().expect("layer4's output").clone();
        o.tap(crate::network::ENCODER_TAP, &f);
        let logits = o.scoped("head", |o| {
            let y = self.reduce.run(o, f);
            let context = self.context.run(o, y.clone());
            let context = o.conv(context, &self.context_scale);
            let cat = o.concat(vec![context, y], 1);
            let y = self.fuse.run(o, cat);
            let y = self.head.run(o, y);
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

    /// The default keeps the input size, with 512 channels, 256-channel queries and a context
    /// that starts silent.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = OcNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.reduce.conv.weight.dims()[0], 512);
        assert_eq!(model.context.query.weight.dims()[0], 256);
        let scale: Vec<f32> = model
            .context_scale
            .weight
            .val()
            .into_data()
            .to_vec()
            .unwrap();
        assert!(scale.iter().all(|&v| v == 0.0));
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("ocnet default parameters: {}", graph.parameter_count());
    }
}
