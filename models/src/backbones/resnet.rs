//! ResNet (He et al., CVPR 2016) as an encoder: ResNet-18/34 (basic blocks) and 50/101
//! (bottlenecks, stride on the 3x3 convolution as torchvision's "v1.5"), an optional width
//! scale, the torchvision 7x7 stem or the deep 3-conv stem of JMedSeg's shared backbone,
//! 1 to 4 stages (a member that uses layers 1-3 only builds no `layer4`), and output stride
//! 32, 16 or 8 with dilated last layers and DeepLab's multi-grid (PSPNet, DeepLab).
//!
//! Names follow torchvision's `resnet*` modules: `conv1`, `bn1`, `layer1`..`layer4`, each
//! block `conv1`/`bn1`/`conv2`/`bn2` (and `conv3`/`bn3` in a bottleneck) and `downsample`. The
//! one difference in keys: torchvision's `downsample.0` / `downsample.1` (a Sequential) are
//! `downsample.conv` / `downsample.bn` here. The deep stem's second and third convolutions are
//! `conv2`/`bn2`/`conv3`/`bn3` at the top level, as in the deep-base ResNets of PSPNet's
//! semseg code (whose ImageNet checkpoints use those keys). Weights start random unless a
//! checkpoint is loaded ([`super::torchvision`]).
//!
//! Departure from JMedSeg's deep stem: its third stem convolution goes straight into max
//! pooling (the BatchNorm and ReLU after it are commented out in its code); here it is
//! followed by BatchNorm and ReLU, as in the deep-stem ResNets it was taken from, so every
//! stage (and a skip taken from the stem) sees normalised, rectified features.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::ops::{Ops, Pool};

/// Which ResNet: the number of layers names the block kind and the blocks per stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
}

impl ResNetDepth {
    /// Blocks in layer1..layer4.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Self::Resnet18 => [2, 2, 2, 2],
            Self::Resnet34 => [3, 4, 6, 3],
            Self::Resnet50 => [3, 4, 6, 3],
            Self::Resnet101 => [3, 4, 23, 3],
        }
    }

    pub fn bottleneck(self) -> bool {
        matches!(self, Self::Resnet50 | Self::Resnet101)
    }

    /// Output channels over a block's inner width (4 for bottlenecks).
    pub fn expansion(self) -> usize {
        if self.bottleneck() { 4 } else { 1 }
    }
}

/// How to build a [`ResNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResNetConfig {
    pub depth: ResNetDepth,
    pub in_channels: usize,
    /// Inner width of layer1's blocks (torchvision's 64); layer `i` has `base_width << i`, and
    /// the stem `base_width` (the deep stem `base_width, base_width, 2 * base_width`).
    pub base_width: usize,
    /// JMedSeg's 3-conv stem (3x3 stride 2, 3x3, 3x3) instead of torchvision's 7x7 stride 2.
    pub deep_stem: bool,
    /// How many of layer1..layer4 to build (1..=4).
    pub stages: usize,
    /// Down-sampling of the last layer: 32 (plain), or 16 / 8 where the last one / two
    /// layers keep the resolution and dilate their 3x3 convolutions instead (2, then 4), as
    /// DeepLab's and PSPNet's backbones do.
    pub output_stride: usize,
    /// DeepLab v3's multi-grid: layer4's blocks dilate by 1, 2, 4 times its dilation (JMedSeg's
    /// shared backbone always does, with three blocks in layer4 as every bottleneck ResNet has).
    pub multi_grid: bool,
}

impl ResNetConfig {
    pub fn new(depth: ResNetDepth, in_channels: usize) -> Self {
        Self {
            depth,
            in_channels,
            base_width: 64,
            deep_stem: false,
            stages: 4,
            output_stride: 32,
            multi_grid: false,
        }
    }

    /// JMedSeg's shared dilated backbone (PSPNet, DeepLab): deep stem, the given output
    /// stride, multi-grid layer4.
    pub fn dilated(
        depth: ResNetDepth,
        in_channels: usize,
        base_width: usize,
        output_stride: usize,
    ) -> Self {
        Self {
            base_width,
            deep_stem: true,
            output_stride,
            multi_grid: true,
            ..Self::new(depth, in_channels)
        }
    }

    /// Channels of the stem's output.
    pub fn stem_width(&self) -> usize {
        if self.deep_stem {
            2 * self.base_width
        } else {
            self.base_width
        }
    }

    /// Output channels of layer `i` (0-based: layer1 is 0).
    pub fn stage_width(&self, i: usize) -> usize {
        (self.base_width << i) * self.depth.expansion()
    }

    /// Down-sampling of layer `i`'s output (0-based): 4, 8, 16, 32, capped at the output
    /// stride.
    pub fn stage_stride(&self, i: usize) -> usize {
        (4 << i).min(self.output_stride)
    }

    /// (stride of the first block, dilation) of layer `i`: a layer past the output stride
    /// keeps the resolution and doubles the dilation instead.
    fn stage_stride_and_dilation(&self, i: usize) -> (usize, usize) {
        if i == 0 {
            return (1, 1);
        }
        if 4 << i <= self.output_stride {
            (2, 1)
        } else {
            (1, (4 << i) / self.output_stride)
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("the backbone's base_width must be > 0".into());
        }
        if !(1..=4).contains(&self.stages) {
            return Err(format!("a ResNet has 1..=4 stages, not {}", self.stages));
        }
        if ![8, 16, 32].contains(&self.output_stride) {
            return Err(format!(
                "the backbone's output_stride is 8, 16 or 32, not {}",
                self.output_stride
            ));
        }
        Ok(())
    }

    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet<B> {
        let b = self.base_width;
        let bn = |c: usize| BatchNormConfig::new(c).init(device);
        let (conv1, bn1, conv2, bn2, conv3, bn3) = if self.deep_stem {
            (
                conv(self.in_channels, b, 3, 2, 1, device),
                bn(b),
                Some(conv(b, b, 3, 1, 1, device)),
                Some(bn(b)),
                Some(conv(b, 2 * b, 3, 1, 1, device)),
                Some(bn(2 * b)),
            )
        } else {
            (
                conv(self.in_channels, b, 7, 2, 3, device),
                bn(b),
                None,
                None,
                None,
                None,
            )
        };
        let mut inplanes = self.stem_width();
        let mut layers: Vec<Vec<ResBlock<B>>> = (0..4)
            .map(|i| {
                if i >= self.stages {
                    return Vec::new();
                }
                let planes = b << i;
                let (stride, dilation) = self.stage_stride_and_dilation(i);
                (0..self.depth.blocks()[i])
                    .map(|k| {
                        let s = if k == 0 { stride } else { 1 };
                        let grid = if self.multi_grid && i == 3 {
                            1 << k.min(2)
                        } else {
                            1
                        };
                        let d = dilation * grid;
                        let block = ResBlock::new(self.depth, inplanes, planes, s, d, device);
                        inplanes = planes * self.depth.expansion();
                        block
                    })
                    .collect()
            })
            .collect();
        let layer4 = layers.pop().expect("four layers");
        let layer3 = layers.pop().expect("four layers");
        let layer2 = layers.pop().expect("four layers");
        let layer1 = layers.pop().expect("four layers");
        ResNet {
            conv1,
            bn1,
            conv2,
            bn2,
            conv3,
            bn3,
            layer1,
            layer2,
            layer3,
            layer4,
        }
    }
}

/// A `k`x`k` convolution without bias (BatchNorm follows), given stride and padding.
fn conv<B: Backend>(
    in_ch: usize,
    out_ch: usize,
    k: usize,
    stride: usize,
    pad: usize,
    device: &B::Device,
) -> Conv2d<B> {
    Conv2dConfig::new([in_ch, out_ch], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// A `k`x`k` convolution without bias at dilation `d`, padded to keep the size at stride 1.
fn dilated<B: Backend>(
    in_ch: usize,
    out_ch: usize,
    k: usize,
    stride: usize,
    d: usize,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = d * (k / 2);
    Conv2dConfig::new([in_ch, out_ch], [k, k])
        .with_stride([stride, stride])
        .with_dilation([d, d])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// The projection shortcut: 1x1 convolution (strided) and BatchNorm (torchvision's
/// `downsample.0` and `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    pub conv: Conv2d<B>,
    pub bn: BatchNorm<B>,
}

/// A residual block: basic (3x3, 3x3) or, with `conv3`, bottleneck (1x1, 3x3, 1x1).
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    pub conv2: Conv2d<B>,
    pub bn2: BatchNorm<B>,
    pub conv3: Option<Conv2d<B>>,
    pub bn3: Option<BatchNorm<B>>,
    pub downsample: Option<Downsample<B>>,
}

impl<B: Backend> ResBlock<B> {
    pub fn new(
        depth: ResNetDepth,
        inplanes: usize,
        planes: usize,
        stride: usize,
        dilation: usize,
        device: &B::Device,
    ) -> Self {
        let out = planes * depth.expansion();
        let bn = |c: usize| BatchNormConfig::new(c).init(device);
        let downsample = (stride != 1 || inplanes != out).then(|| Downsample {
            conv: conv(inplanes, out, 1, stride, 0, device),
            bn: bn(out),
        });
        if depth.bottleneck() {
            Self {
                conv1: conv(inplanes, planes, 1, 1, 0, device),
                bn1: bn(planes),
                conv2: dilated(planes, planes, 3, stride, dilation, device),
                bn2: bn(planes),
                conv3: Some(conv(planes, out, 1, 1, 0, device)),
                bn3: Some(bn(out)),
                downsample,
            }
        } else {
            Self {
                conv1: dilated(inplanes, planes, 3, stride, dilation, device),
                bn1: bn(planes),
                conv2: dilated(planes, planes, 3, 1, dilation, device),
                bn2: bn(planes),
                conv3: None,
                bn3: None,
                downsample,
            }
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let shortcut = match &self.downsample {
            Some(d) => o.conv_bn(x.clone(), &d.conv, &d.bn),
            None => x.clone(),
        };
        let y = o.conv_bn(x, &self.conv1, &self.bn1);
        let y = o.relu(y);
        let y = o.conv_bn(y, &self.conv2, &self.bn2);
        let y = match (&self.conv3, &self.bn3) {
            (Some(c), Some(n)) => {
                let y = o.relu(y);
                o.conv_bn(y, c, n)
            }
            _ => y,
        };
        let sum = o.add(y, shortcut);
        o.relu(sum)
    }
}

/// A ResNet's convolutional part (no pooling head, no classifier).
#[derive(Module, Debug)]
pub struct ResNet<B: Backend> {
    pub conv1: Conv2d<B>,
    pub bn1: BatchNorm<B>,
    /// Deep stem only.
    pub conv2: Option<Conv2d<B>>,
    pub bn2: Option<BatchNorm<B>>,
    pub conv3: Option<Conv2d<B>>,
    pub bn3: Option<BatchNorm<B>>,
    pub layer1: Vec<ResBlock<B>>,
    pub layer2: Vec<ResBlock<B>>,
    pub layer3: Vec<ResBlock<B>>,
    /// Empty when the backbone was built with fewer stages.
    pub layer4: Vec<ResBlock<B>>,
}

/// What a [`ResNet`] computes: the stem's output (stride 2, before max pooling) and each
/// built layer's output (strides 4, 8, 16, 32).
#[derive(Debug, Clone)]
pub struct ResNetFeatures<T> {
    pub stem: T,
    pub stages: Vec<T>,
}

impl<B: Backend> ResNet<B> {
    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> ResNetFeatures<O::T> {
        let stem = o.scoped("stem", |o| {
            let y = o.conv_bn(x, &self.conv1, &self.bn1);
            let mut y = o.relu(y);
            for (c, n) in [(&self.conv2, &self.bn2), (&self.conv3, &self.bn3)] {
                if let (Some(c), Some(n)) = (c, n) {
                    let z = o.conv_bn(y, c, n);
                    y = o.relu(z);
                }
            }
            y
        });
        let pool = Pool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            ceil_mode: false,
        };
        let mut x = o.max_pool(stem.clone(), pool);
        let mut stages = Vec::new();
        for (i, layer) in [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
            .into_iter()
            .enumerate()
        {
            if layer.is_empty() {
                break;
            }
            x = o.scoped(&format!("layer{}", i + 1), |o| {
                layer.iter().enumerate().fold(x, |y, (k, block)| {
                    o.scoped(&k.to_string(), |o| block.run(o, y))
                })
            });
            stages.push(x.clone());
        }
        ResNetFeatures { stem, stages }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    #[test]
    fn stages_have_the_documented_widths_and_strides_and_torchvision_counts() {
        let dev = Default::default();
        for (depth, deep_stem, stages) in [
            (ResNetDepth::Resnet18, false, 4),
            (ResNetDepth::Resnet50, true, 3),
        ] {
            let cfg = ResNetConfig {
                base_width: 4,
                deep_stem,
                stages,
                ..ResNetConfig::new(depth, 3)
            };
            let net = cfg.init::<Flex>(&dev);
            let x = Tensor::<Flex, 4>::random([1, 3, 64, 64], Distribution::Default, &dev);
            let f = net.run(&mut crate::burn_ops::BurnOps::new(&dev), x);
            assert_eq!(f.stem.dims(), [1, cfg.stem_width(), 32, 32]);
            assert_eq!(f.stages.len(), stages);
            for (i, s) in f.stages.iter().enumerate() {
                let side = 64 / cfg.stage_stride(i);
                assert_eq!(s.dims(), [1, cfg.stage_width(i), side, side], "{depth:?}");
            }
        }
        // torchvision's parameter counts without the classifier (fc: 512*1000+1000 for
        // ResNet-18/34, 2048*1000+1000 for 50/101): 11.69 M, 21.80 M, 25.56 M, 44.55 M.
        // Burn's count also holds BatchNorm's running mean and variance (2 per channel:
        // 4,800, 8,512 and 26,560 BatchNorm channels).
        for (depth, full, fc, bn_channels) in [
            (ResNetDepth::Resnet18, 11_689_512, 513_000, 4_800),
            (ResNetDepth::Resnet34, 21_797_672, 513_000, 8_512),
            (ResNetDepth::Resnet50, 25_557_032, 2_049_000, 26_560),
        ] {
            let net = ResNetConfig::new(depth, 3).init::<Flex>(&dev);
            assert_eq!(net.num_params(), full - fc + 2 * bn_channels, "{depth:?}");
        }
    }

    /// Output stride 16 / 8 keeps the last one / two layers at the resolution before them,
    /// with dilated 3x3 convolutions (2, then 4), and the multi-grid dilates layer4's blocks
    /// by 1, 2, 4 times that, as JMedSeg's backbone; the parameters do not change.
    #[test]
    fn output_stride_dilates_instead_of_striding() {
        let dev = Default::default();
        for (os, sides, layer4) in [
            (16, [16, 8, 4, 4], [2, 4, 8]),
            (8, [16, 8, 8, 8], [4, 8, 16]),
        ] {
            let cfg = ResNetConfig {
                base_width: 4,
                deep_stem: true,
                output_stride: os,
                multi_grid: true,
                ..ResNetConfig::new(ResNetDepth::Resnet50, 3)
            };
            let net = cfg.init::<Flex>(&dev);
            let x = Tensor::<Flex, 4>::random([1, 3, 64, 64], Distribution::Default, &dev);
            let f = net.run(&mut crate::burn_ops::BurnOps::new(&dev), x);
            for (i, s) in f.stages.iter().enumerate() {
                assert_eq!(s.dims()[2], sides[i], "os {os} layer{}", i + 1);
                assert_eq!(64 / cfg.stage_stride(i), sides[i], "os {os} layer{}", i + 1);
            }
            let dilations: Vec<usize> = net.layer4.iter().map(|b| b.conv2.dilation[0]).collect();
            assert_eq!(dilations, layer4, "os {os}");
            let plain = ResNetConfig {
                output_stride: 32,
                multi_grid: false,
                ..cfg
            };
            assert_eq!(net.num_params(), plain.init::<Flex>(&dev).num_params());
        }
        let bad = ResNetConfig {
            output_stride: 4,
            ..ResNetConfig::new(ResNetDepth::Resnet18, 1)
        };
        assert!(bad.validate().unwrap_err().contains("output_stride"));
    }
}
