//! The one vocabulary networks are written in.
//!
//! A block or an architecture describes its computation once, as a function generic over
//! [`Ops`]. Run with [`crate::burn_ops::BurnOps`] it is the Burn forward pass (training,
//! validation: autodiff, BatchNorm batch statistics); run with [`crate::graph_ops::GraphOps`]
//! it records the inference graph that exporters write (weights read from the same modules,
//! BatchNorm folded). So a network cannot train one function and export another; the parity
//! check in tract remains the proof that each op's two implementations agree.
//!
//! Every value is a 4-D tensor (see [`crate::graph`]); semantics are PyTorch's.

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, GroupNorm, InstanceNorm, Linear, PRelu};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::blocks::LayerNorm;
pub use crate::graph::ResizeMode;
use crate::graph::Weights;

/// Max or average pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Symmetric padding `[h, w]`.
    pub padding: [usize; 2],
    pub ceil_mode: bool,
}

impl Pool {
    /// `k`x`k` window moving by `k` (the usual 2x down-sampling is `Pool::square(2)`).
    pub fn square(k: usize) -> Self {
        Self {
            kernel: [k, k],
            stride: [k, k],
            padding: [0, 0],
            ceil_mode: false,
        }
    }

    /// Output side for an input side `len` along axis `a` (0 = height).
    pub fn out_len(&self, len: usize, a: usize) -> usize {
        let span = len + 2 * self.padding[a];
        let k = self.kernel[a];
        let s = self.stride[a];
        if span < k {
            return 0;
        }
        let steps = span - k;
        let mut out = if self.ceil_mode {
            steps.div_ceil(s) + 1
        } else {
            steps / s + 1
        };
        // PyTorch: the last window must start inside the input or its left padding.
        if self.ceil_mode && (out - 1) * s >= len + self.padding[a] {
            out -= 1;
        }
        out
    }
}

/// The operations a network description may use. `T` is a value (a Burn tensor, or a graph
/// value with its shape); module arguments are the Burn layers that hold the parameters.
pub trait Ops<B: Backend> {
    type T: Clone;
    /// Where a max-pooling took its maxima (only [`Ops::max_unpool`] reads it).
    type Indices: Clone;

    fn shape(&self, x: &Self::T) -> [usize; 4];

    /// True in a training forward pass (batch statistics, auxiliary outputs); false in
    /// validation and export.
    fn training(&self) -> bool;

    /// Runs `f` inside a naming scope (node names of the exported graph).
    fn scoped<R>(&mut self, _name: &str, f: impl FnOnce(&mut Self) -> R) -> R
    where
        Self: Sized,
    {
        f(self)
    }

    /// Offers `x` under `name` to whoever runs the network (encoder features for contrastive
    /// pre-training, see [`crate::network::forward_with_taps`]). Computes nothing and adds
    /// nothing to an exported graph: only [`crate::burn_ops::BurnOps`] keeps taps.
    fn tap(&mut self, _name: &str, _x: &Self::T) {}

    // Layers with parameters.
    fn conv(&mut self, x: Self::T, conv: &Conv2d<B>) -> Self::T;
    /// Convolution then BatchNorm (batch statistics when training; folded in the graph).
    fn conv_bn(&mut self, x: Self::T, conv: &Conv2d<B>, norm: &BatchNorm<B>) -> Self::T;
    fn conv_transpose(&mut self, x: Self::T, conv: &ConvTranspose2d<B>) -> Self::T;
    /// BatchNorm on its own (after a concatenation, say): a per-channel affine in the graph.
    fn batch_norm(&mut self, x: Self::T, norm: &BatchNorm<B>) -> Self::T;
    fn group_norm(&mut self, x: Self::T, norm: &GroupNorm<B>) -> Self::T;
    fn instance_norm(&mut self, x: Self::T, norm: &InstanceNorm<B>) -> Self::T;
    /// LayerNorm over the last axis.
    fn layer_norm(&mut self, x: Self::T, norm: &LayerNorm<B>) -> Self::T;
    /// `x W + b` on the last axis.
    fn linear(&mut self, x: Self::T, linear: &Linear<B>) -> Self::T;
    fn prelu(&mut self, x: Self::T, prelu: &PRelu<B>) -> Self::T;
    /// A learned tensor used as a value (a position embedding, say).
    fn param(&mut self, p: &Param<Tensor<B, 4>>) -> Self::T;
    /// A fixed tensor; `w.shape` has 4 axes.
    fn constant(&mut self, w: Weights) -> Self::T;

    // Element-wise.
    fn relu(&mut self, x: Self::T) -> Self::T;
    fn leaky_relu(&mut self, x: Self::T, alpha: f32) -> Self::T;
    /// `min(max(x, min), max)`: ReLU6 is `clip(x, 0, 6)`.
    fn clip(&mut self, x: Self::T, min: f32, max: f32) -> Self::T;
    fn gelu(&mut self, x: Self::T) -> Self::T;
    fn sigmoid(&mut self, x: Self::T) -> Self::T;
    fn tanh(&mut self, x: Self::T) -> Self::T;
    fn softmax(&mut self, x: Self::T, axis: usize) -> Self::T;
    fn add(&mut self, a: Self::T, b: Self::T) -> Self::T;
    fn sub(&mut self, a: Self::T, b: Self::T) -> Self::T;
    fn mul(&mut self, a: Self::T, b: Self::T) -> Self::T;
    fn div(&mut self, a: Self::T, b: Self::T) -> Self::T;
    fn mul_scalar(&mut self, x: Self::T, s: f32) -> Self::T {
        let c = self.constant(Weights::new(vec![1, 1, 1, 1], vec![s]));
        self.mul(x, c)
    }

    // Pooling and resizing.
    fn max_pool(&mut self, x: Self::T, pool: Pool) -> Self::T;
    fn avg_pool(&mut self, x: Self::T, pool: Pool, count_include_pad: bool) -> Self::T;
    fn adaptive_avg_pool(&mut self, x: Self::T, output: [usize; 2]) -> Self::T;
    fn resize(&mut self, x: Self::T, size: [usize; 2], mode: ResizeMode) -> Self::T;
    /// Non-overlapping max pooling (kernel = stride) that remembers where the maxima were.
    fn max_pool_with_indices(&mut self, x: Self::T, kernel: [usize; 2])
    -> (Self::T, Self::Indices);
    /// Puts each value back where its window's maximum was; `size` is the pooled input's.
    fn max_unpool(
        &mut self,
        x: Self::T,
        indices: &Self::Indices,
        kernel: [usize; 2],
        size: [usize; 2],
    ) -> Self::T;
    /// Samples `x` bilinearly (zeros outside) on `affine_grid(theta, size)`; theta `[N, 1, 2, 3]`.
    fn affine_grid_sample(
        &mut self,
        x: Self::T,
        theta: Self::T,
        size: [usize; 2],
        align_corners: bool,
    ) -> Self::T;

    // Structure.
    fn concat(&mut self, xs: Vec<Self::T>, axis: usize) -> Self::T;
    fn matmul(&mut self, a: Self::T, b: Self::T) -> Self::T;
    fn reshape(&mut self, x: Self::T, shape: [usize; 4]) -> Self::T;
    fn transpose(&mut self, x: Self::T, perm: [usize; 4]) -> Self::T;
    fn slice(&mut self, x: Self::T, axis: usize, start: usize, end: usize) -> Self::T;
    /// Constant padding of the two last axes, `[top, left, bottom, right]`.
    fn pad(&mut self, x: Self::T, pads: [usize; 4], value: f32) -> Self::T;
    fn reduce_mean(&mut self, x: Self::T, axis: usize) -> Self::T;
    fn reduce_max(&mut self, x: Self::T, axis: usize) -> Self::T;
}

/// Output shape of a numpy-style broadcast of two 4-D shapes; `None` when they do not fit.
pub fn broadcast_shape(a: [usize; 4], b: [usize; 4]) -> Option<[usize; 4]> {
    let mut out = [0; 4];
    for i in 0..4 {
        out[i] = match (a[i], b[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_sizes_follow_pytorch() {
        assert_eq!(Pool::square(2).out_len(7, 0), 3);
        let ceil = Pool {
            ceil_mode: true,
            ..Pool::square(2)
        };
        assert_eq!(ceil.out_len(7, 0), 4);
        // PyTorch (ceil mode) drops a last window that would start in the right padding:
        // kernel 2, stride 2, padding 1 over 5 gives 3 windows, not 4.
        let p = Pool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [1, 1],
            ceil_mode: true,
        };
        assert_eq!(p.out_len(5, 0), 3);
        assert_eq!(p.out_len(6, 0), 4);
        assert_eq!(
            broadcast_shape([2, 3, 1, 5], [1, 3, 4, 1]),
            Some([2, 3, 4, 5])
        );
        assert_eq!(broadcast_shape([2, 3, 1, 5], [1, 2, 4, 1]), None);
    }
}
