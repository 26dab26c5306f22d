//! Building blocks shared by the architectures. Each block has a `forward` (Burn) and an
//! `export` (into the [`Graph`]) that must compute the same function in inference mode.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use crate::graph::{Graph, Op, ValueId, Weights};

/// Reads a tensor's values to the host (export only; never on the training hot path).
pub fn tensor_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("a float tensor converts to f32 values")
}

/// 3x3 (or kxk) convolution, BatchNorm, ReLU: the unit of every UNet-family encoder.
#[derive(Module, Debug)]
pub struct ConvBnRelu<B: Backend> {
    pub conv: Conv2d<B>,
    pub norm: BatchNorm<B>,
    pub activation: Relu,
}

impl<B: Backend> ConvBnRelu<B> {
    pub fn new(in_ch: usize, out_ch: usize, kernel: usize, device: &B::Device) -> Self {
        let pad = kernel / 2;
        Self {
            // No bias: BatchNorm's shift makes it redundant.
            conv: Conv2dConfig::new([in_ch, out_ch], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(false)
                .init(device),
            norm: BatchNormConfig::new(out_ch).init(device),
            activation: Relu::new(),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.activation
            .forward(batch_norm_2d(&self.norm, self.conv.forward(x)))
    }

    /// Exports Conv with BatchNorm (running statistics) folded in, then ReLU.
    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        let conv = export_conv_bn(&self.conv, &self.norm);
        let y = g.push(conv, &[x]);
        g.push(Op::Relu, &[y])
    }
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

/// Folds inference-mode BatchNorm into the convolution before it:
/// w' = w * g / sqrt(var + eps), b' = (b - mean) * g / sqrt(var + eps) + beta.
pub fn export_conv_bn<B: Backend>(conv: &Conv2d<B>, norm: &BatchNorm<B>) -> Op {
    let Op::Conv {
        mut weight,
        bias,
        stride,
        padding,
        dilation,
        groups,
    } = export_conv(conv)
    else {
        unreachable!("export_conv returns a Conv op")
    };
    let gamma = tensor_values(norm.gamma.val());
    let beta = tensor_values(norm.beta.val());
    let mean = tensor_values(norm.running_mean.value());
    let var = tensor_values(norm.running_var.value());
    let out_ch = weight.shape[0];
    let per_out = weight.data.len() / out_ch;
    let mut folded_bias = vec![0.0f32; out_ch];
    for o in 0..out_ch {
        let scale = gamma[o] as f64 / (var[o] as f64 + norm.epsilon).sqrt();
        for w in &mut weight.data[o * per_out..(o + 1) * per_out] {
            *w = (*w as f64 * scale) as f32;
        }
        folded_bias[o] = ((bias[o] as f64 - mean[o] as f64) * scale + beta[o] as f64) as f32;
    }
    Op::Conv {
        weight,
        bias: folded_bias,
        stride,
        padding,
        dilation,
        groups,
    }
}

/// Exports a plain convolution (bias zero when the layer has none).
pub fn export_conv<B: Backend>(conv: &Conv2d<B>) -> Op {
    let dims = conv.weight.val().dims();
    let weight = Weights::new(dims.to_vec(), tensor_values(conv.weight.val()));
    let bias = match &conv.bias {
        Some(b) => tensor_values(b.val()),
        None => vec![0.0; dims[0]],
    };
    let padding = match conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
        PaddingConfig2d::Valid => [0; 4],
        // Blocks here always build explicit padding; "Same" depends on the input size.
        PaddingConfig2d::Same => {
            let (ph, pw) = (dims[2] / 2, dims[3] / 2);
            [ph, pw, ph, pw]
        }
    };
    Op::Conv {
        weight,
        bias,
        stride: conv.stride,
        padding,
        dilation: conv.dilation,
        groups: conv.groups,
    }
}

/// Two ConvBnRelu in a row: the UNet stage.
#[derive(Module, Debug)]
pub struct DoubleConv<B: Backend> {
    pub first: ConvBnRelu<B>,
    pub second: ConvBnRelu<B>,
}

impl<B: Backend> DoubleConv<B> {
    pub fn new(in_ch: usize, out_ch: usize, device: &B::Device) -> Self {
        Self {
            first: ConvBnRelu::new(in_ch, out_ch, 3, device),
            second: ConvBnRelu::new(out_ch, out_ch, 3, device),
        }
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.second.forward(self.first.forward(x))
    }

    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        let y = self.first.export(g, x);
        self.second.export(g, y)
    }
}

/// 2x2 max pooling, stride 2.
#[derive(Module, Debug)]
pub struct Pool2x<B: Backend> {
    pool: MaxPool2d,
    _backend: core::marker::PhantomData<B>,
}

impl<B: Backend> Default for Pool2x<B> {
    fn default() -> Self {
        Self {
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            _backend: core::marker::PhantomData,
        }
    }
}

impl<B: Backend> Pool2x<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.pool.forward(x)
    }

    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        g.push(
            Op::MaxPool {
                kernel: [2, 2],
                stride: [2, 2],
            },
            &[x],
        )
    }
}

/// 2x up-sampling: bilinear (half-pixel centres) followed by nothing, or a learned 2x2
/// transposed convolution that also halves the channels.
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

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Bilinear(_) => {
                let [_, _, h, w] = x.dims();
                let options = InterpolateOptions::new(InterpolateMode::Bilinear);
                interpolate(x, [h * 2, w * 2], options.with_align_corners(false))
            }
            Self::Transposed(conv) => conv.forward(x),
        }
    }

    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        match self {
            Self::Bilinear(_) => g.push(
                Op::ResizeBilinear {
                    scale: [2, 2],
                    align_corners: false,
                },
                &[x],
            ),
            Self::Transposed(conv) => {
                let dims = conv.weight.val().dims();
                let bias = match &conv.bias {
                    Some(b) => tensor_values(b.val()),
                    None => vec![0.0; dims[1] * conv.groups],
                };
                g.push(
                    Op::ConvTranspose {
                        weight: Weights::new(dims.to_vec(), tensor_values(conv.weight.val())),
                        bias,
                        stride: conv.stride,
                        padding: conv.padding,
                    },
                    &[x],
                )
            }
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

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv.forward(x)
    }

    pub fn export(&self, g: &mut Graph, x: ValueId) -> ValueId {
        g.push(export_conv(&self.conv), &[x])
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
