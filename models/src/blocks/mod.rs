//! Building blocks shared by the architectures. Each block describes its computation once, in
//! `run`, generic over [`Ops`]: the same code is the Burn forward pass and the export graph.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::ops::{Ops, Pool, ResizeMode};

pub mod attention_gate;
pub mod conv_bn;
pub mod external_attention;
pub mod group_norm;
pub mod link_decoder;
pub mod recurrent;
pub mod rsu;
pub mod self_attention;
pub mod shift_conv;
pub mod squeeze_excitation;
pub mod transformer;

pub use conv_bn::ConvBn;

/// A `k`x`k` convolution with "same" padding (odd `k`), optionally dilated.
pub fn conv2d<B: Backend>(
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    bias: bool,
    device: &B::Device,
) -> Conv2d<B> {
    let pad = kernel / 2;
    Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(bias)
        .init(device)
}

/// 3x3 (or kxk) convolution, BatchNorm, ReLU: the unit of every UNet-family encoder.
#[derive(Module, Debug)]
pub struct ConvBnRelu<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
}

impl<B: Backend> ConvBnRelu<B> {
    pub fn new(in_ch: usize, out_ch: usize, kernel: usize, device: &B::Device) -> Self {
        Self {
            // No bias: BatchNorm's shift makes it redundant.
            conv: conv2d(in_ch, out_ch, kernel, false, device),
            norm: BatchNormConfig::new(out_ch).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = o.conv_bn(x, &self.conv, &self.norm);
        o.relu(y)
    }
}

/// A `k`x`k` convolution `c -> c` with "same" padding at dilation `d` and its bias starting
/// at zero (as the CE-Net and D-LinkNet authors' code starts their dilated blocks).
pub fn dilated_conv<B: Backend>(c: usize, k: usize, d: usize, device: &B::Device) -> Conv2d<B> {
    let pad = d * (k / 2);
    let mut conv = Conv2dConfig::new([c, c], [k, k])
        .with_dilation([d, d])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(device);
    conv.bias = Some(Param::from_tensor(Tensor::zeros([c], device)));
    conv
}

/// A 1x1 convolution `c -> c` (with bias) whose weights start at zero, so that a branch
/// added or concatenated through it starts silent (OCNet's and OCRNet's context).
pub fn zero_started_conv1x1<B: Backend>(c: usize, device: &B::Device) -> Conv2d<B> {
    let mut conv = conv2d(c, c, 1, true, device);
    conv.weight = Param::from_tensor(Tensor::zeros([c, c, 1, 1], device));
    conv
}

/// Widens a convolution that reads one input channel to read `channels` of them (odd): the
/// old kernel goes to the centre channel and the others start at zero, so on an input whose
/// centre channel is the old input the widened convolution computes exactly what the old one
/// did. Used to start a model on stacked neighbouring slices (2.5D) from a single-slice one.
pub fn widen_single_channel_input<B: Backend>(
    conv: Conv2d<B>,
    channels: usize,
) -> Result<Conv2d<B>, String> {
    let weight = conv.weight.val();
    let [out_ch, in_ch, kh, kw] = weight.dims();
    if in_ch != 1 || channels.is_multiple_of(2) {
        return Err(format!(
            "can only widen a 1-channel input to an odd number of channels (the centre one is \
             the old input), not {in_ch} to {channels}"
        ));
    }
    let centre = channels / 2;
    let wide = Tensor::zeros([out_ch, channels, kh, kw], &weight.device())
        .slice_assign([0..out_ch, centre..centre + 1, 0..kh, 0..kw], weight);
    Ok(Conv2d {
        // A new leaf: `slice_assign` tracked the old weight.
        weight: Param::from_tensor(wide.detach()),
        ..conv
    })
}

/// BatchNorm of an NCHW tensor, computing exactly what `BatchNorm::forward` computes (biased
/// batch variance in training, running statistics in inference, same running updates) but on
/// a `[N*C, H*W]` view: Burn's own version broadcasts `[1, C, 1, 1]` over NCHW, which the flex
/// CPU backend walks element by element (measured ~4x slower UNet training steps), while
/// per-row scalars hit its SIMD path.
pub fn batch_norm_2d<B: Backend>(norm: &BatchNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let rows = x.reshape([n * c, h * w]);
    let (mean, var) = if B::ad_enabled(&rows.device()) {
        let row_mean = rows.clone().mean_dim(1).reshape([n, c]);
        let row_sq_mean = rows.clone().square().mean_dim(1).reshape([n, c]);
        let mean = row_mean.mean_dim(0).reshape([c]);
        // E[x^2] - E[x]^2, clamped against rounding below zero.
        let var = row_sq_mean
            .mean_dim(0)
            .reshape([c])
            .sub(mean.clone().square())
            .clamp_min(0.0);
        let m = norm.momentum;
        let update = |state: &burn::module::RunningState<Tensor<B, 1>>, batch: Tensor<B, 1>| {
            let next = state
                .value_sync()
                .mul_scalar(1.0 - m)
                .add(batch.detach().mul_scalar(m));
            state.update(next.detach());
        };
        update(&norm.running_mean, mean.clone());
        update(&norm.running_var, var.clone());
        (mean, var)
    } else {
        (norm.running_mean.value(), norm.running_var.value())
    };
    let scale = norm.gamma.val().div(var.add_scalar(norm.epsilon).sqrt());
    let shift = norm.beta.val().sub(mean.mul(scale.clone()));
    let per_row = |t: Tensor<B, 1>| t.reshape([1, c]).repeat_dim(0, n).reshape([n * c, 1]);
    rows.mul(per_row(scale))
        .add(per_row(shift))
        .reshape([n, c, h, w])
}

/// Two ConvBnRelu in a row: the UNet stage.
#[derive(Module, Debug)]
pub struct DoubleConv<B: Backend> {
    pub first: ConvBnRelu<B>,
    pub second: ConvBnRelu<B>,
}

impl<B: Backend> DoubleConv<B> {
    pub fn new(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self::with_mid(in_ch, out_ch, out_ch, device)
    }

    /// The first convolution ends at `mid_ch` channels instead of `out_ch` (the widely used
    /// PyTorch UNet's decoder halves the width this way).
    pub fn with_mid(in_ch: usize, mid_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self {
            first: ConvBnRelu::new(in_ch, mid_ch, 3, device),
            second: ConvBnRelu::new(mid_ch, out_ch, 3, device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        let y = self.first.run(o, x);
        self.second.run(o, y)
    }
}

/// The UNet encoder's stages below the stem: level `l` (1..=depth) takes `base << (l-1)`
/// channels to `base << l`.
pub fn unet_down_stages<B: Backend>(
    base_width: usize,
    depth: usize,
    device: &B::Device,
) -> Vec<DoubleConv<B>> {
    (1..=depth)
        .map(|l| DoubleConv::new(base_width << (l - 1), base_width << l, device))
        .collect()
}

/// Runs the UNet encoder: the stem, then 2x max pooling and a stage per level. Returns every
/// level's features, shallowest first; the last is the bottleneck.
pub fn unet_encoder<B: Backend, O: Ops<B>>(
    o: &mut O,
    stem: &DoubleConv<B>,
    down: &[DoubleConv<B>],
    x: O::T,
) -> Vec<O::T> {
    let first = o.scoped("stem", |o| stem.run(o, x));
    let mut levels = vec![first];
    for (i, stage) in down.iter().enumerate() {
        let deepest = levels.last().expect("stem output").clone();
        let y = o.scoped(&format!("down{i}"), |o| {
            let pooled = pool2x(o, deepest);
            stage.run(o, pooled)
        });
        o.tap(&format!("level{}", i + 1), &y);
        levels.push(y);
    }
    let deepest = levels.last().expect("stem output");
    o.tap(crate::network::ENCODER_TAP, deepest);
    levels
}

/// 2x2 max pooling, stride 2.
pub fn pool2x<B: Backend, O: Ops<B>>(o: &mut O, x: O::T) -> O::T {
    o.max_pool(x, Pool::square(2))
}

/// 2x up-sampling: bilinear (half-pixel centres, parameter-free), or a learned 2x2 transposed
/// convolution that also changes the channels.
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)] // a handful per model, never moved in hot loops
pub enum Upsample2x<B: Backend> {
    Bilinear(BilinearUp<B>),
    Transposed(ConvTranspose2d<B>),
}

/// Marker module for parameter-free bilinear 2x up-sampling.
#[derive(Module, Debug)]
pub struct BilinearUp<B: Backend> {
    _backend: core::marker::PhantomData<B>,
}

impl<B: Backend> Upsample2x<B> {
    pub fn bilinear() -> Self {
        Self::Bilinear(BilinearUp {
            _backend: core::marker::PhantomData,
        })
    }

    pub fn transposed(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self::Transposed(
            ConvTranspose2dConfig::new([in_ch, out_ch], [2, 2])
                .with_stride([2, 2])
                .init(device),
        )
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        match self {
            Self::Bilinear(_) => {
                let [_, _, h, w] = o.shape(&x);
                let mode = ResizeMode::Bilinear {
                    align_corners: false,
                };
                o.resize(x, [h * 2, w * 2], mode)
            }
            Self::Transposed(conv) => o.conv_transpose(x, conv),
        }
    }
}

/// 1x1 convolution to class logits.
#[derive(Module, Debug)]
pub struct Head<B: Backend> {
    pub conv: Conv2d<B>,
}

impl<B: Backend> Head<B> {
    pub fn new(in_ch: usize, classes: usize, device: &B::Device) -> Self {
        Self {
            conv: Conv2dConfig::new([in_ch, classes], [1, 1]).init(device),
        }
    }

    pub fn run<O: Ops<B>>(&self, o: &mut O, x: O::T) -> O::T {
        o.conv(x, &self.conv)
    }
}

/// LayerNorm over the last axis (biased variance), `* gamma + beta`. medseg's own because
/// Burn 0.21's keeps its epsilon private, which the export graph needs.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Param<Tensor<B, 1>>,
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn new(dim: usize, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([dim], device)),
            beta: Param::from_tensor(Tensor::zeros([dim], device)),
            epsilon: 1e-5,
        }
    }

    /// The same with another epsilon (BERT's 1e-12, say).
    pub fn with_epsilon(self, epsilon: f64) -> Self {
        Self { epsilon, ..self }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = x.dims()[3];
        let mean = x.clone().mean_dim(3);
        let centred = x.sub(mean);
        let var = centred.clone().square().mean_dim(3);
        let gamma = self.gamma.val().reshape([1, 1, 1, d]);
        let beta = self.beta.val().reshape([1, 1, 1, d]);
        centred
            .div(var.add_scalar(self.epsilon).sqrt())
            .mul(gamma)
            .add(beta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::Distribution;

    #[test]
    fn fast_batch_norm_matches_burn_batch_norm_in_training_and_inference() {
        type A = Autodiff<Flex>;
        let dev = Default::default();
        let x = Tensor::<A, 4>::random([3, 4, 5, 6], Distribution::Normal(1.0, 2.0), &dev);
        let ours = BatchNormConfig::new(4).init::<A>(&dev);
        let theirs = BatchNormConfig::new(4).init::<A>(&dev);
        let a = batch_norm_2d(&ours, x.clone());
        let b = theirs.forward(x.clone());
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), burn::tensor::Tolerance::absolute(1e-4));
        ours.running_var
            .value()
            .into_data()
            .assert_approx_eq::<f32>(
                &theirs.running_var.value().into_data(),
                burn::tensor::Tolerance::absolute(1e-5),
            );
        // Inference uses the running statistics.
        let x = x.inner();
        let a = batch_norm_2d(&ours.valid(), x.clone());
        let b = theirs.valid().forward(x);
        a.into_data()
            .assert_approx_eq::<f32>(&b.into_data(), burn::tensor::Tolerance::absolute(1e-4));
    }
}
