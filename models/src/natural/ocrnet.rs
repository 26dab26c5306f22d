//! OCRNet (Yuan, Chen & Wang, "Object-Contextual Representations for Semantic
//! Segmentation", ECCV 2020): a first, coarse segmentation (the "soft object regions") from
//! the backbone's layer3 gathers one representation per class from layer4's pixels (their
//! features weighted by that class's spatial softmax); every pixel then mixes those class
//! representations by its relation to them and the result, beside the pixel's own feature,
//! is classified.
//!
//! As JMedSeg's `ocrnet`: its shared ResNet-101 (deep stem, output stride 16, multi-grid
//! layer4); soft object regions from layer3 (1024 channels) by a 3x3 conv-BN-ReLU to 512 and a 1x1 convolution to the classes; pixel features from layer4 by a 3x3 conv-BN-
//! ReLU to 512; region representations `softmax_positions(regions) x features`; pixel-region
//! relations `features . representations`; the mixed representations through a 1x1
//! convolution that starts at zero weight, concatenated with the pixel features, a 3x3
//! convolution (with bias) to the classes, bilinear up-sampling to the input size. Widths
//! scale with the backbone's (`base_width` 64: 512 is 8x).
//!
//! Departures: each pixel's relations are normalised over the classes (softmax over the
//! regions, as the paper's w_ik); JMedSeg's code normalises them over the positions, which
//! gives each pixel ~1/(H*W) of a representation. The soft object regions are trained as an
//! auxiliary output (the paper's auxiliary loss, weight 0.4 there, `--aux-weight` here;
//! JMedSeg computes them but leaves them out of its loss). As JMedSeg, the paper's key,
//! query and value transforms (1x1 conv-BN-ReLU pairs) and its 512-channel fusion before the
//! classifier are left out. The convolutions before BatchNorm have no bias (JMedSeg's do;
//! BatchNorm's shift makes it redundant). No dropout (JMedSeg's p = 0.05 in the region
//! branch); the stem as [`crate::backbones::resnet`] says.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::backbones::resnet::{ResNet, ResNetConfig, ResNetDepth};
use crate::blocks::{ConvBnRelu, Head, conv2d, zero_started_conv1x1};
use crate::network::{ArchConfig, Aux, AuxKind, Network, SegOutput, scaled_width};
use crate::ops::{Ops, ResizeMode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcrNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// The dilated ResNet (JMedSeg's ResNet-101).
    pub backbone: ResNetDepth,
    /// Inner width of layer1's blocks (ResNet's 64).
    pub base_width: usize,
    /// The backbone's output stride: 16 (JMedSeg's) or 8 (the paper's).
    pub output_stride: usize,
}

impl Default for OcrNetConfig {
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

impl OcrNetConfig {
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
pub struct OcrNet<B: Backend> {
    pub backbone: ResNet<B>,
    /// Soft object regions from layer3: conv-BN-ReLU, then 1x1 to the classes.
    pub regions: ConvBnRelu<B>,
    pub regions_head: Head<B>,
    /// Pixel features from layer4.
    pub pixels: ConvBnRelu<B>,
    /// 1x1 convolution of the mixed representations, zero weights at the start.
    pub context_scale: Conv2d<B>,
    /// 3x3 convolution (with bias) of [context, pixels] to the classes.
    pub classifier: Conv2d<B>,
}

impl ArchConfig for OcrNetConfig {
    type Model<B: Backend> = OcrNet<B>;
    const NAME: &'static str = "ocrnet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Yuan, Chen & Wang, Object-Contextual Representations for \
        Semantic Segmentation, ECCV 2020";

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

    fn init<B: Backend>(&self, device: &B::Device) -> OcrNet<B> {
        let bb = self.backbone_config();
        let inner = 8 * self.base_width;
        OcrNet {
            regions: ConvBnRelu::new(bb.stage_width(2), inner, 3, device),
            regions_head: Head::new(inner, self.num_classes, device),
            pixels: ConvBnRelu::new(bb.stage_width(3), inner, 3, device),
            context_scale: zero_started_conv1x1(inner, device),
            classifier: conv2d(2 * inner, self.num_classes, 3, true, device),
            backbone: bb.init(device),
        }
    }
}

/// Object-contextual representations of `pixels` `[N, C, h, w]` given the soft object
/// `regions` `[N, K, h, w]`: `[N, C, h, w]`, each pixel's mix of the K class representations.
fn object_context<B: Backend, O: Ops<B>>(o: &mut O, pixels: O::T, regions: O::T) -> O::T {
    let [n, c, h, w] = o.shape(&pixels);
    let k = o.shape(&regions)[1];
    let features = o.reshape(pixels, [n, 1, c, h * w]);
    let features_t = o.transpose(features, [0, 1, 3, 2]);
    // Each class's spatial softmax gathers its representation: [N, 1, K, C].
    let regions = o.reshape(regions, [n, 1, k, h * w]);
    let weights = o.softmax(regions, 3);
    let representations = o.matmul(weights, features_t.clone());
    // Each pixel's relation to each class, normalised over the classes: [N, 1, HW, K].
    let representations_t = o.transpose(representations.clone(), [0, 1, 3, 2]);
    let relation = o.matmul(features_t, representations_t);
    let relation = o.softmax(relation, 3);
    // [N, 1, HW, C] back to an image.
    let mixed = o.matmul(relation, representations);
    let mixed = o.transpose(mixed, [0, 1, 3, 2]);
    o.reshape(mixed, [n, c, h, w])
}

impl<B: Backend> Network<B> for OcrNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let [_, _, height, width] = o.shape(&x);
        let mut stages = o.scoped("backbone", |o| self.backbone.run(o, x)).stages;
        let deep = stages.pop().expect("layer4's output");
        let mid = stages.pop().expect("layer3's output");
        o.tap(crate::network::ENCODER_TAP, &deep);
        let bilinear = ResizeMode::Bilinear {
            align_corners: false,
        };
        let regions = o.scoped("regions", |o| {
            let y = self.regions.run(o, mid);
            self.regions_head.run(o, y)
        });
        let logits = o.scoped("ocr", |o| {
            let pixels = self.pixels.run(o, deep);
            let context = object_context(o, pixels.clone(), regions.clone());
            let context = o.conv(context, &self.context_scale);
            let cat = o.concat(vec![context, pixels], 1);
            let y = o.conv(cat, &self.classifier);
            o.resize(y, [height, width], bilinear)
        });
        let mut out = SegOutput::logits(logits);
        if o.training() {
            let value = o.scoped("regions_up", |o| {
                o.resize(regions, [height, width], bilinear)
            });
            out.aux.push(Aux {
                name: "soft_object_regions".into(),
                kind: AuxKind::SideLogits,
                value,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::forward;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor};

    /// The default keeps the input size; the soft object regions come from layer3's 1024
    /// channels and are an auxiliary output while training only.
    #[test]
    fn default_keeps_the_input_size_and_trains_the_regions() {
        let mut cfg = OcrNetConfig::default();
        cfg.set_io(3, 2);
        let model = cfg.init::<Flex>(&Default::default());
        assert_eq!(model.regions.conv.weight.dims()[1], 1024);
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
        eprintln!("ocrnet default parameters: {}", graph.parameter_count());

        let tiny = OcrNetConfig::tiny().init::<Autodiff<Flex>>(&Default::default());
        let x = Tensor::random([1, 1, 32, 32], Distribution::Default, &Default::default());
        let out = forward(&tiny, x);
        assert_eq!(out.aux.len(), 1);
        assert_eq!(out.aux[0].value.dims(), [1, 2, 32, 32]);
    }
}
