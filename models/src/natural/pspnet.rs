//! PSPNet (Zhao et al., CVPR 2017): a dilated ResNet whose last feature map is average-pooled
//! into a pyramid of grids (1x1, 2x2, 3x3, 6x6), each reduced by a 1x1 convolution and
//! up-sampled back, so every position sees context from the whole image at several scales.
//!
//! As JMedSeg's `pspnet`: its shared ResNet-101 (deep 3-conv stem, output stride 16, layer4
//! dilated by 2 with the multi-grid 1, 2, 4); four pyramid branches, each adaptive average
//! pooling to its grid, 1x1 conv (no bias)-BN-ReLU to a quarter of the backbone's width
//! (512) and bilinear up-sampling (half-pixel centres) to the feature map's size; the feature
//! map and the four branches concatenated (4096 channels), a 3x3 conv (no bias)-BN-ReLU to
//! 512, a 1x1 convolution to the classes, and bilinear up-sampling to the input size.
//! `backbone=resnet50` and `output_stride=8` (the paper's) are options.
//!
//! Departures: no dropout before the classifier (JMedSeg's p = 0.3; medseg's ops have none);
//! the backbone's stem has BatchNorm and ReLU after its third convolution (see
//! [`crate::backbones::resnet`]); no auxiliary loss on layer3 (the paper's; JMedSeg has none
//! either). The pooling grids use PyTorch's adaptive bins, uneven where the map is not a
//! multiple of the grid (16x16 into 3x3 and 6x6 at 256 px), which the exporter writes exactly.

use burn::module::Module;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::{ConvBnRelu, Head};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The dilated ResNet (JMedSeg's and the paper's ResNet-101).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// The backbone's output stride: 16 (JMedSeg's) or 8 (the paper's).
    pub output_stride: usize,
    /// The pyramid's grid sizes.
    pub bins: Vec<usize>,
}

impl Default for PspNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            backbone: ResNetDepth::Resnet101,
            base_width: 64,
            output_stride: 16,
            bins: vec![1, 2, 3, 6],
        }
    }
}

impl PspNetConfig {
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
pub struct PspNet<B: Backend> {
    pub backbone: ResNet<B>,
    /// One 1x1 conv-BN-ReLU per pyramid level, in `bins` order.
    pub pyramid: Vec<ConvBnRelu<B>>,
    /// Grid size of each pyramid level.
    pub bins: Vec<usize>,
    pub fuse: ConvBnRelu<B>,
    pub head: Head<B>,
}

impl ArchConfig for PspNetConfig {
    type Model<B: Backend> = PspNet<B>;
    const NAME: &'static str = "pspnet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str =
        "Zhao, Shi, Qi, Wang & Jia, Pyramid Scene Parsing Network, CVPR 2017";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        self.output_stride
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        if self.bins.is_empty() || self.bins.contains(&0) {
            return Err(format!(
                "bins must be one or more grid sizes >= 1, not {:?}",
                self.bins
            ));
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

    fn init<B: Backend>(&self, device: &B::Device) -> PspNet<B> {
        let bb = self.backbone_config();
        let w = bb.stage_width(3);
        let reduced = (w / 4).max(1);
        PspNet {
            backbone: bb.init(device),
            pyramid: self
                .bins
                .iter()
                .map(|_| ConvBnRelu::new(w, reduced, 1, device))
                .collect(),
            bins: self.bins.clone(),
            fuse: ConvBnRelu::new(w + self.bins.len() * reduced, reduced, 3, device),
            head: Head::new(reduced, self.num_classes, device),
        }
    }
}

impl<B: Backend> Network<B> for PspNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let features = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let f = features.last().expect("layer4's output").clone();
        o.tap(crate::network::ENCODER_TAP, &f);
        let [_, _, h, w] = o.shape(&f);
        let bilinear = ResizeMode::Bilinear {
            align_corners: false,
        };
        let mut parts = vec![f.clone()];
        for (i, (branch, &bin)) in self.pyramid.iter().zip(&self.bins).enumerate() {
            parts.push(o.scoped(&format!("pool{i}"), |o| {
                let pooled = o.adaptive_avg_pool(f.clone(), [bin, bin]);
                let y = branch.run(o, pooled);
                o.resize(y, [h, w], bilinear)
            }));
        }
        let logits = o.scoped("head", |o| {
            let cat = o.concat(parts, 1);
            let y = self.fuse.run(o, cat);
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

    /// The default keeps the input size with its pyramid at 2048 + 4 x 512 channels.
    #[test]
    fn default_keeps_the_input_size() {
        let mut cfg = PspNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.fuse.conv.weight.dims()[1], 4096);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("pspnet default parameters: {}", graph.parameter_count());
    }
}
