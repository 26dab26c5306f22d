//! [`Ops`] in Burn: the training and validation forward pass.

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, GroupNorm, InstanceNorm, Linear, PRelu};
use burn::tensor::activation;
use burn::tensor::backend::Backend;
use burn::tensor::module::{
    adaptive_avg_pool2d, avg_pool2d, interpolate, max_pool2d, max_pool2d_with_indices,
};
use burn::tensor::ops::{
    GridSampleOptions, GridSamplePaddingMode, InterpolateMode, InterpolateOptions, PadMode,
};
use burn::tensor::{DType, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::blocks::group_norm::group_norm_2d;
use crate::blocks::{LayerNorm, batch_norm_2d};
use crate::graph::{ResizeMode, Weights};
use crate::ops::{Ops, Pool};

/// Runs a network description on Burn tensors of backend `B`.
pub struct BurnOps<B: Backend> {
    device: B::Device,
    /// Float type of the constants it creates: the input's (f64 when a model is checked in
    /// double precision).
    float: DType,
    /// The values offered through [`Ops::tap`], in the order the network offered them.
    taps: Vec<(String, Tensor<B, 4>)>,
}

impl<B: Backend> BurnOps<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            device: device.clone(),
            float: DType::F32,
            taps: Vec::new(),
        }
    }

    /// Ops for the input `x`: its device, and constants in its float type.
    pub fn for_input(x: &Tensor<B, 4>) -> Self {
        Self {
            float: x.dtype(),
            ..Self::new(&x.device())
        }
    }

    /// The tapped values (name, tensor), in the order the network offered them.
    pub fn into_taps(self) -> Vec<(String, Tensor<B, 4>)> {
        self.taps
    }
}

impl<B: Backend> Default for BurnOps<B> {
    fn default() -> Self {
        Self::new(&Default::default())
    }
}

/// The normalized sampling coordinates of PyTorch's `affine_grid` before the transform:
/// `[1, 1, h*w, 3]` rows `(x, y, 1)`, x along the width. Shared by the Burn and graph paths
/// so both sample exactly the same points.
pub fn affine_base_grid(size: [usize; 2], align_corners: bool) -> Weights {
    let [h, w] = size;
    let coord = |i: usize, n: usize| -> f32 {
        if align_corners {
            if n == 1 {
                0.0
            } else {
                -1.0 + 2.0 * i as f32 / (n - 1) as f32
            }
        } else {
            (2.0 * i as f32 + 1.0) / n as f32 - 1.0
        }
    };
    let mut data = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend([coord(x, w), coord(y, h), 1.0]);
        }
    }
    Weights::new(vec![1, 1, h * w, 3], data)
}

/// Burn 0.21's ceil mode keeps a last window that starts in the right padding; PyTorch and
/// ONNX drop it ([`Pool::out_len`]). That window only sees padding, so cutting it gives
/// PyTorch's result.
fn pytorch_sides<B: Backend>(y: Tensor<B, 4>, p: Pool, h: usize, w: usize) -> Tensor<B, 4> {
    let [_, _, yh, yw] = y.dims();
    let (oh, ow) = (p.out_len(h, 0), p.out_len(w, 1));
    if (yh, yw) == (oh, ow) {
        return y;
    }
    y.narrow(2, 0, oh.min(yh)).narrow(3, 0, ow.min(yw))
}

impl<B: Backend> Ops<B> for BurnOps<B> {
    type T = Tensor<B, 4>;
    type Indices = Tensor<B, 4, Int>;

    fn shape(&self, x: &Self::T) -> [usize; 4] {
        x.dims()
    }

    fn training(&self) -> bool {
        B::ad_enabled(&self.device)
    }

    fn tap(&mut self, name: &str, x: &Self::T) {
        self.taps.push((name.to_string(), x.clone()));
    }

    fn conv(&mut self, x: Self::T, conv: &Conv2d<B>) -> Self::T {
        conv.forward(x)
    }

    fn conv_bn(&mut self, x: Self::T, conv: &Conv2d<B>, norm: &BatchNorm<B>) -> Self::T {
        batch_norm_2d(norm, conv.forward(x))
    }

    fn conv_transpose(&mut self, x: Self::T, conv: &ConvTranspose2d<B>) -> Self::T {
        conv.forward(x)
    }

    fn batch_norm(&mut self, x: Self::T, norm: &BatchNorm<B>) -> Self::T {
        batch_norm_2d(norm, x)
    }

    fn group_norm(&mut self, x: Self::T, norm: &GroupNorm<B>) -> Self::T {
        let (g, b) = (norm.gamma.as_ref(), norm.beta.as_ref());
        group_norm_2d(x, norm.num_groups, norm.epsilon, g, b)
    }

    fn instance_norm(&mut self, x: Self::T, norm: &InstanceNorm<B>) -> Self::T {
        let (g, b) = (norm.gamma.as_ref(), norm.beta.as_ref());
        group_norm_2d(x, norm.num_channels, norm.epsilon, g, b)
    }

    fn layer_norm(&mut self, x: Self::T, norm: &LayerNorm<B>) -> Self::T {
        norm.forward(x)
    }

    fn linear(&mut self, x: Self::T, linear: &Linear<B>) -> Self::T {
        linear.forward(x)
    }

    fn prelu(&mut self, x: Self::T, prelu: &PRelu<B>) -> Self::T {
        prelu.forward(x)
    }

    fn param(&mut self, p: &Param<Tensor<B, 4>>) -> Self::T {
        p.val()
    }

    fn constant(&mut self, w: Weights) -> Self::T {
        let shape: [usize; 4] = w.shape.as_slice().try_into().expect("a 4-D constant");
        Tensor::from_data(TensorData::new(w.data, shape), (&self.device, self.float))
    }

    fn relu(&mut self, x: Self::T) -> Self::T {
        activation::relu(x)
    }

    fn leaky_relu(&mut self, x: Self::T, alpha: f32) -> Self::T {
        activation::leaky_relu(x, alpha as f64)
    }

    fn clip(&mut self, x: Self::T, min: f32, max: f32) -> Self::T {
        x.clamp(min, max)
    }

    fn gelu(&mut self, x: Self::T) -> Self::T {
        activation::gelu(x)
    }

    fn sigmoid(&mut self, x: Self::T) -> Self::T {
        activation::sigmoid(x)
    }

    fn tanh(&mut self, x: Self::T) -> Self::T {
        activation::tanh(x)
    }

    fn softmax(&mut self, x: Self::T, axis: usize) -> Self::T {
        activation::softmax(x, axis)
    }

    fn add(&mut self, a: Self::T, b: Self::T) -> Self::T {
        a.add(b)
    }

    fn sub(&mut self, a: Self::T, b: Self::T) -> Self::T {
        a.sub(b)
    }

    fn mul(&mut self, a: Self::T, b: Self::T) -> Self::T {
        a.mul(b)
    }

    fn div(&mut self, a: Self::T, b: Self::T) -> Self::T {
        a.div(b)
    }

    fn mul_scalar(&mut self, x: Self::T, s: f32) -> Self::T {
        x.mul_scalar(s)
    }

    fn max_pool(&mut self, x: Self::T, p: Pool) -> Self::T {
        let [_, _, h, w] = x.dims();
        pytorch_sides(
            max_pool2d(x, p.kernel, p.stride, p.padding, [1, 1], p.ceil_mode),
            p,
            h,
            w,
        )
    }

    fn avg_pool(&mut self, x: Self::T, p: Pool, count_include_pad: bool) -> Self::T {
        let [_, _, h, w] = x.dims();
        let y = avg_pool2d(
            x,
            p.kernel,
            p.stride,
            p.padding,
            count_include_pad,
            p.ceil_mode,
        );
        pytorch_sides(y, p, h, w)
    }

    fn adaptive_avg_pool(&mut self, x: Self::T, output: [usize; 2]) -> Self::T {
        adaptive_avg_pool2d(x, output)
    }

    fn resize(&mut self, x: Self::T, size: [usize; 2], mode: ResizeMode) -> Self::T {
        let options = match mode {
            ResizeMode::Bilinear { align_corners } => {
                InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(align_corners)
            }
            ResizeMode::Nearest => InterpolateOptions::new(InterpolateMode::Nearest),
        };
        interpolate(x, size, options)
    }

    fn max_pool_with_indices(
        &mut self,
        x: Self::T,
        kernel: [usize; 2],
    ) -> (Self::T, Self::Indices) {
        max_pool2d_with_indices(x, kernel, kernel, [0, 0], [1, 1], false)
    }

    fn max_unpool(
        &mut self,
        x: Self::T,
        indices: &Self::Indices,
        _kernel: [usize; 2],
        size: [usize; 2],
    ) -> Self::T {
        // Burn has no unpooling: scatter each value to its flat index in its H*W plane (the
        // indices are unique within a plane, so the scatter's sum is an assignment).
        let [n, c, h, w] = x.dims();
        let rows = x.reshape([n * c, h * w]);
        let idx = indices.clone().reshape([n * c, h * w]);
        Tensor::zeros([n * c, size[0] * size[1]], (&rows.device(), rows.dtype()))
            .scatter(1, idx, rows, IndexingUpdateOp::Add)
            .reshape([n, c, size[0], size[1]])
    }

    fn affine_grid_sample(
        &mut self,
        x: Self::T,
        theta: Self::T,
        size: [usize; 2],
        align_corners: bool,
    ) -> Self::T {
        let [n, ..] = theta.dims();
        let base = self.constant(affine_base_grid(size, align_corners));
        // [1, 1, hw, 3] x [N, 1, 3, 2] -> [N, 1, hw, 2]
        let grid = base.matmul(theta.swap_dims(2, 3));
        let grid = grid.reshape([n, size[0], size[1], 2]);
        let options = GridSampleOptions::new(InterpolateMode::Bilinear)
            .with_padding_mode(GridSamplePaddingMode::Zeros)
            .with_align_corners(align_corners);
        x.grid_sample_2d(grid, options)
    }

    fn concat(&mut self, xs: Vec<Self::T>, axis: usize) -> Self::T {
        Tensor::cat(xs, axis)
    }

    fn matmul(&mut self, a: Self::T, b: Self::T) -> Self::T {
        a.matmul(b)
    }

    fn reshape(&mut self, x: Self::T, shape: [usize; 4]) -> Self::T {
        x.reshape(shape)
    }

    fn transpose(&mut self, x: Self::T, perm: [usize; 4]) -> Self::T {
        x.permute(perm.map(|p| p as isize))
    }

    fn slice(&mut self, x: Self::T, axis: usize, start: usize, end: usize) -> Self::T {
        x.narrow(axis, start, end - start)
    }

    fn pad(&mut self, x: Self::T, pads: [usize; 4], value: f32) -> Self::T {
        let [top, left, bottom, right] = pads;
        if x.dtype() == DType::F32 {
            return x.pad([(top, bottom), (left, right)], PadMode::Constant(value));
        }
        // Burn 0.21's pad fills in the default float type whatever the input's (it panics on
        // an f64 model in export's double-precision check): the same fill and copy, typed.
        let [n, c, h, w] = x.dims();
        let out = [n, c, top + h + bottom, left + w + right];
        Tensor::full(out, value, (&x.device(), x.dtype()))
            .slice_assign([0..n, 0..c, top..top + h, left..left + w], x)
    }

    fn reduce_mean(&mut self, x: Self::T, axis: usize) -> Self::T {
        x.mean_dim(axis)
    }

    fn reduce_max(&mut self, x: Self::T, axis: usize) -> Self::T {
        x.max_dim(axis)
    }
}
