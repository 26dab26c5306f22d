//! SegNet (Badrinarayanan, Kendall & Cipolla, 2017): a VGG16-BN encoder whose five max-poolings
//! remember where each window's maximum was, and a mirrored decoder that puts values back
//! at those places (max-unpooling) instead of learning an up-sampling or concatenating skips.
//!
//! As JMedSeg's `SegNet`: encoder stages of 2, 2, 3, 3, 3 conv-BN-ReLU at widths 64, 128, 256,
//! 512, 512; decoder stages of 3, 3, 3, 2, 1 conv-BN-ReLU, each stage's last convolution
//! narrowing to the next stage's width, then a 3x3 convolution to the classes (no BN, no
//! ReLU). Departure: JMedSeg's convolutions carry a bias that the BatchNorm after each makes
//! redundant; they are left out here (7,936 fewer parameters: 29.436 M against 29.444 M for 3
//! input channels and 2 classes).

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::blocks::{ConvBnRelu, conv2d};
use crate::network::{ArchConfig, Network, SegOutput, scaled_width};
use crate::ops::Ops;

/// Convolutions per encoder stage (VGG16's); the decoder mirrors them.
const CONVS: [usize; 5] = [2, 2, 3, 3, 3];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegNetConfig {
    pub in_channels: usize,
    pub num_classes: usize,
    /// First stage's channels (VGG's 64); stages are 1, 2, 4, 8, 8 times it.
    pub base_width: usize,
}

impl Default for SegNetConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            num_classes: 2,
            base_width: 64,
        }
    }
}

impl SegNetConfig {
    fn width(&self, stage: usize) -> usize {
        self.base_width * [1, 2, 4, 8, 8][stage]
    }
}

/// One stage: conv-BN-ReLU layers in order.
#[derive(Module, Debug)]
pub struct SegNetStage<B: Backend> {
    pub layers: Vec<ConvBnRelu<B>>,
}

impl<B: Backend> SegNetStage<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, mut x: O::T) -> O::T {
        for layer in &self.layers {
            x = layer.run(o, x);
        }
        x
    }
}

#[derive(Module, Debug)]
pub struct SegNet<B: Backend> {
    pub encoder: Vec<SegNetStage<B>>,
    /// Deepest first (JMedSeg's stage 5d .. 1d).
    pub decoder: Vec<SegNetStage<B>>,
    /// 3x3 convolution to the classes.
    pub head: Conv2d<B>,
}

impl ArchConfig for SegNetConfig {
    type Model<B: Backend> = SegNet<B>;
    const NAME: &'static str = "segnet";
    const FAMILY: &'static str = "natural";
    const PAPER: &'static str = "Badrinarayanan, Kendall & Cipolla, SegNet: A Deep Convolutional \
        Encoder-Decoder Architecture for Image Segmentation, IEEE TPAMI 2017";

    crate::network::io_fields!();

    fn size_multiple(&self) -> usize {
        1 << CONVS.len()
    }

    fn validate(&self) -> Result<(), String> {
        if self.base_width == 0 {
            return Err("base_width must be > 0".into());
        }
        Ok(())
    }

    fn scale_widths(&mut self, scale: f64) {
        self.base_width = scaled_width(self.base_width, scale, 1);
    }

    fn tiny() -> Self {
        Self {
            base_width: 4,
            ..Self::default()
        }
    }

    fn init<B: Backend>(&self, device: &B::Device) -> SegNet<B> {
        let encoder = (0..CONVS.len())
            .map(|s| {
                let input = if s == 0 {
                    self.in_channels
                } else {
                    self.width(s - 1)
                };
                let w = self.width(s);
                let layers = (0..CONVS[s])
                    .map(|i| ConvBnRelu::new(if i == 0 { input } else { w }, w, 3, device))
                    .collect();
                SegNetStage { layers }
            })
            .collect();
        // Decoder stage s (deepest first) works at stage s's width and ends at the width of
        // the stage above it; the first stage's decoder keeps its width for the head.
        let decoder = (0..CONVS.len())
            .rev()
            .map(|s| {
                let w = self.width(s);
                let out = if s == 0 { w } else { self.width(s - 1) };
                let n = if s == 0 { 1 } else { CONVS[s] };
                let layers = (0..n)
                    .map(|i| ConvBnRelu::new(w, if i + 1 == n { out } else { w }, 3, device))
                    .collect();
                SegNetStage { layers }
            })
            .collect();
        SegNet {
            encoder,
            decoder,
            head: conv2d(self.width(0), self.num_classes, 3, true, device),
        }
    }
}

impl<B: Backend> Network<B> for SegNet<B> {
    fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> SegOutput<O::T> {
        let mut x = x;
        // (indices, size before pooling) of each pooling, shallowest first.
        let mut pools = Vec::with_capacity(self.encoder.len());
        for (s, stage) in self.encoder.iter().enumerate() {
            x = o.scoped(&format!("enc{s}"), |o| {
                let y = stage.run(o, x);
                let [_, _, h, w] = o.shape(&y);
                let (pooled, indices) = o.max_pool_with_indices(y, [2, 2]);
                pools.push((indices, [h, w]));
                pooled
            });
        }
        o.tap(crate::network::ENCODER_TAP, &x);
        for (i, stage) in self.decoder.iter().enumerate() {
            let (indices, size) = pools.pop().expect("one pooling per decoder stage");
            x = o.scoped(&format!("dec{}", self.decoder.len() - 1 - i), |o| {
                let up = o.max_unpool(x, &indices, [2, 2], size);
                stage.run(o, up)
            });
        }
        SegOutput::logits(o.scoped("head", |o| o.conv(x, &self.head)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// JMedSeg's SegNet (3 input channels, 2 classes) has 29,444,162 parameters, 7,936 of
    /// them the biases BatchNorm makes redundant, which this one leaves out. (Burn's
    /// `num_params` also counts BatchNorm's running mean and variance: 2 x 7,936 more.)
    #[test]
    fn default_has_jmedseg_parameter_count_less_redundant_biases() {
        let mut c = SegNetConfig::default();
        c.set_io(3, 2);
        let model = c.init::<Flex>(&Default::default());
        let bn_channels = 7_936;
        assert_eq!(
            model.num_params(),
            29_444_162 - bn_channels + 2 * bn_channels
        );
        let graph = crate::network::export_graph(&model, [1, 3, 64, 64]);
        assert_eq!(
            graph.shape(graph.output.expect("an output")),
            [1, 2, 64, 64]
        );
    }
}
