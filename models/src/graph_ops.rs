//! [`Ops`] that record the inference graph: each call appends a node with its static output
//! shape, reading the parameters from the Burn modules (BatchNorm with running statistics,
//! folded into the convolution before it where there is one).

use burn::module::Param;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, GroupNorm, InstanceNorm, Linear, PRelu, PaddingConfig2d};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::blocks::LayerNorm;
use crate::graph::{Graph, Op, ResizeMode, ValueId, Weights};
use crate::ops::{Ops, Pool, broadcast_shape};

/// Reads a tensor's values to the host (export only; never on the training hot path).
pub fn tensor_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("a float tensor converts to f32 values")
}

/// Records into a [`Graph`] for one input shape.
pub struct GraphOps {
    pub graph: Graph,
}

impl GraphOps {
    pub fn new(input_shape: [usize; 4]) -> Self {
        Self {
            graph: Graph::new(input_shape),
        }
    }

    pub fn input(&self) -> ValueId {
        self.graph.input
    }

    /// The finished graph with `output` as its result.
    pub fn finish(mut self, output: ValueId) -> Graph {
        self.graph.output = Some(output);
        self.graph.prune();
        self.graph
    }

    fn push(&mut self, op: Op, inputs: &[ValueId], shape: [usize; 4]) -> ValueId {
        self.graph.push(op, inputs, shape)
    }

    fn same(&mut self, op: Op, x: ValueId) -> ValueId {
        let s = self.graph.shape(x);
        self.push(op, &[x], s)
    }

    fn binary(&mut self, op: Op, a: ValueId, b: ValueId) -> ValueId {
        let (sa, sb) = (self.graph.shape(a), self.graph.shape(b));
        let s = broadcast_shape(sa, sb)
            .unwrap_or_else(|| panic!("{op:?}: shapes {sa:?} and {sb:?} do not broadcast"));
        self.push(op, &[a, b], s)
    }
}

/// Per-channel scale and shift of inference-mode BatchNorm: `g / sqrt(var + eps)` and
/// `beta - mean * scale`, in f64.
fn batch_norm_affine<B: Backend>(norm: &BatchNorm<B>) -> (Vec<f64>, Vec<f64>) {
    let gamma = tensor_values(norm.gamma.val());
    let beta = tensor_values(norm.beta.val());
    let mean = tensor_values(norm.running_mean.value());
    let var = tensor_values(norm.running_var.value());
    let scale: Vec<f64> = (0..gamma.len())
        .map(|c| gamma[c] as f64 / (var[c] as f64 + norm.epsilon).sqrt())
        .collect();
    let shift = (0..gamma.len())
        .map(|c| beta[c] as f64 - mean[c] as f64 * scale[c])
        .collect();
    (scale, shift)
}

/// A plain convolution as an [`Op::Conv`] (bias zero when the layer has none).
pub fn conv_op<B: Backend>(conv: &Conv2d<B>) -> Op {
    let dims = conv.weight.val().dims();
    let weight = Weights::new(dims.to_vec(), tensor_values(conv.weight.val()));
    let bias = match &conv.bias {
        Some(b) => tensor_values(b.val()),
        None => vec![0.0; dims[0]],
    };
    let padding = match &conv.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [*t, *l, *b, *r],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            // Burn's "same" (stride 1): total k-1 per axis, the extra one at the end.
            let total = |a: usize| conv.dilation[a] * (dims[2 + a] - 1);
            let (th, tw) = (total(0), total(1));
            [th / 2, tw / 2, th - th / 2, tw - tw / 2]
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

/// [`Op::GroupNorm`] from a norm's settings; a norm without affine parameters has none.
fn group_norm_op<B: Backend>(
    groups: usize,
    epsilon: f64,
    gamma: &Option<Param<Tensor<B, 1>>>,
    beta: &Option<Param<Tensor<B, 1>>>,
) -> Op {
    let values = |p: &Option<Param<Tensor<B, 1>>>| {
        p.as_ref()
            .map(|p| tensor_values(p.val()))
            .unwrap_or_default()
    };
    Op::GroupNorm {
        groups,
        epsilon,
        gamma: values(gamma),
        beta: values(beta),
    }
}

fn conv_out_shape(op: &Op, input: [usize; 4]) -> [usize; 4] {
    let Op::Conv {
        weight,
        stride,
        padding,
        dilation,
        ..
    } = op
    else {
        unreachable!("conv_out_shape takes a Conv")
    };
    let side = |a: usize| {
        let span = input[2 + a] + padding[a] + padding[a + 2];
        let reach = dilation[a] * (weight.shape[2 + a] - 1) + 1;
        assert!(
            span >= reach,
            "a {}x{} input is too small for this convolution",
            input[2],
            input[3]
        );
        (span - reach) / stride[a] + 1
    };
    [input[0], weight.shape[0], side(0), side(1)]
}

impl<B: Backend> Ops<B> for GraphOps {
    type T = ValueId;
    type Indices = ValueId;

    fn shape(&self, x: &ValueId) -> [usize; 4] {
        self.graph.shape(*x)
    }

    fn training(&self) -> bool {
        false
    }

    fn scoped<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.graph.enter(name);
        let out = f(self);
        self.graph.leave();
        out
    }

    fn conv(&mut self, x: ValueId, conv: &Conv2d<B>) -> ValueId {
        let input = self.graph.shape(x);
        let op = conv_op(conv);
        let s = conv_out_shape(&op, input);
        let y = self.push(op, &[x], s);
        self.graph.mark_source(conv.weight.id.val());
        y
    }

    fn conv_bn(&mut self, x: ValueId, conv: &Conv2d<B>, norm: &BatchNorm<B>) -> ValueId {
        let input = self.graph.shape(x);
        let mut op = conv_op(conv);
        let s = conv_out_shape(&op, input);
        let Op::Conv { weight, bias, .. } = &mut op else {
            unreachable!()
        };
        // w' = w * scale, b' = b * scale + shift.
        let (scale, shift) = batch_norm_affine(norm);
        let per_out = weight.data.len() / scale.len();
        for (o, (sc, sh)) in scale.iter().zip(&shift).enumerate() {
            for w in &mut weight.data[o * per_out..(o + 1) * per_out] {
                *w = (*w as f64 * sc) as f32;
            }
            bias[o] = (bias[o] as f64 * sc + sh) as f32;
        }
        let y = self.push(op, &[x], s);
        // The folded values are the convolution's and the norm's together.
        let source = conv.weight.id.val() ^ norm.gamma.id.val().rotate_left(1);
        self.graph.mark_source(source);
        y
    }

    fn conv_transpose(&mut self, x: ValueId, conv: &ConvTranspose2d<B>) -> ValueId {
        let input = self.graph.shape(x);
        let dims = conv.weight.val().dims();
        let out_ch = dims[1] * conv.groups;
        let bias = match &conv.bias {
            Some(b) => tensor_values(b.val()),
            None => vec![0.0; out_ch],
        };
        let side = |a: usize| {
            (input[2 + a] - 1) * conv.stride[a]
                + conv.dilation[a] * (dims[2 + a] - 1)
                + conv.padding_out[a]
                + 1
                - 2 * conv.padding[a]
        };
        let s = [input[0], out_ch, side(0), side(1)];
        let op = Op::ConvTranspose {
            weight: Weights::new(dims.to_vec(), tensor_values(conv.weight.val())),
            bias,
            stride: conv.stride,
            padding: conv.padding,
            output_padding: conv.padding_out,
            dilation: conv.dilation,
            groups: conv.groups,
        };
        let y = self.push(op, &[x], s);
        self.graph.mark_source(conv.weight.id.val());
        y
    }

    fn batch_norm(&mut self, x: ValueId, norm: &BatchNorm<B>) -> ValueId {
        let (scale, shift) = batch_norm_affine(norm);
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        let op = Op::ChannelAffine {
            scale: f32s(scale),
            shift: f32s(shift),
        };
        let y = self.same(op, x);
        self.graph.mark_source(norm.gamma.id.val());
        y
    }

    fn group_norm(&mut self, x: ValueId, norm: &GroupNorm<B>) -> ValueId {
        let op = group_norm_op(norm.num_groups, norm.epsilon, &norm.gamma, &norm.beta);
        let y = self.same(op, x);
        if let Some(gamma) = &norm.gamma {
            self.graph.mark_source(gamma.id.val());
        }
        y
    }

    fn instance_norm(&mut self, x: ValueId, norm: &InstanceNorm<B>) -> ValueId {
        // InstanceNorm is GroupNorm with one channel per group.
        let op = group_norm_op(norm.num_channels, norm.epsilon, &norm.gamma, &norm.beta);
        let y = self.same(op, x);
        if let Some(gamma) = &norm.gamma {
            self.graph.mark_source(gamma.id.val());
        }
        y
    }

    fn layer_norm(&mut self, x: ValueId, norm: &LayerNorm<B>) -> ValueId {
        let op = Op::LayerNorm {
            epsilon: norm.epsilon,
            gamma: tensor_values(norm.gamma.val()),
            beta: tensor_values(norm.beta.val()),
        };
        let y = self.same(op, x);
        self.graph.mark_source(norm.gamma.id.val());
        y
    }

    fn linear(&mut self, x: ValueId, linear: &Linear<B>) -> ValueId {
        let [d_in, d_out] = linear.weight.val().dims();
        let w = Weights::new(vec![1, 1, d_in, d_out], tensor_values(linear.weight.val()));
        let w = Ops::<B>::constant(self, w);
        self.graph.mark_source(linear.weight.id.val());
        let y = Ops::<B>::matmul(self, x, w);
        match &linear.bias {
            Some(bias) => {
                let b = Weights::new(vec![1, 1, 1, d_out], tensor_values(bias.val()));
                let b = Ops::<B>::constant(self, b);
                self.graph.mark_source(bias.id.val());
                Ops::<B>::add(self, y, b)
            }
            None => y,
        }
    }

    fn prelu(&mut self, x: ValueId, prelu: &PRelu<B>) -> ValueId {
        let op = Op::PRelu {
            slope: tensor_values(prelu.alpha.val()),
        };
        let y = self.same(op, x);
        self.graph.mark_source(prelu.alpha.id.val());
        y
    }

    fn param(&mut self, p: &Param<Tensor<B, 4>>) -> ValueId {
        let t = p.val();
        let w = Weights::new(t.dims().to_vec(), tensor_values(t));
        let y = Ops::<B>::constant(self, w);
        self.graph.mark_source(p.id.val());
        y
    }

    fn constant(&mut self, w: Weights) -> ValueId {
        let s: [usize; 4] = w.shape.as_slice().try_into().expect("a 4-D constant");
        self.push(Op::Constant(w), &[], s)
    }

    fn relu(&mut self, x: ValueId) -> ValueId {
        self.same(Op::Relu, x)
    }

    fn leaky_relu(&mut self, x: ValueId, alpha: f32) -> ValueId {
        self.same(Op::LeakyRelu { alpha }, x)
    }

    fn clip(&mut self, x: ValueId, min: f32, max: f32) -> ValueId {
        self.same(Op::Clip { min, max }, x)
    }

    fn gelu(&mut self, x: ValueId) -> ValueId {
        self.same(Op::Gelu, x)
    }

    fn sigmoid(&mut self, x: ValueId) -> ValueId {
        self.same(Op::Sigmoid, x)
    }

    fn tanh(&mut self, x: ValueId) -> ValueId {
        self.same(Op::Tanh, x)
    }

    fn softmax(&mut self, x: ValueId, axis: usize) -> ValueId {
        self.same(Op::Softmax { axis }, x)
    }

    fn add(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(Op::Add, a, b)
    }

    fn sub(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(Op::Sub, a, b)
    }

    fn mul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(Op::Mul, a, b)
    }

    fn div(&mut self, a: ValueId, b: ValueId) -> ValueId {
        self.binary(Op::Div, a, b)
    }

    fn max_pool(&mut self, x: ValueId, p: Pool) -> ValueId {
        let [n, c, h, w] = self.graph.shape(x);
        let s = [n, c, p.out_len(h, 0), p.out_len(w, 1)];
        let op = Op::MaxPool {
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
            dilation: [1, 1],
            ceil_mode: p.ceil_mode,
        };
        self.push(op, &[x], s)
    }

    fn avg_pool(&mut self, x: ValueId, p: Pool, count_include_pad: bool) -> ValueId {
        let [n, c, h, w] = self.graph.shape(x);
        let s = [n, c, p.out_len(h, 0), p.out_len(w, 1)];
        let op = Op::AvgPool {
            kernel: p.kernel,
            stride: p.stride,
            padding: p.padding,
            ceil_mode: p.ceil_mode,
            count_include_pad,
        };
        self.push(op, &[x], s)
    }

    fn adaptive_avg_pool(&mut self, x: ValueId, output: [usize; 2]) -> ValueId {
        let [n, c, ..] = self.graph.shape(x);
        self.push(
            Op::AdaptiveAvgPool { output },
            &[x],
            [n, c, output[0], output[1]],
        )
    }

    fn resize(&mut self, x: ValueId, size: [usize; 2], mode: ResizeMode) -> ValueId {
        let [n, c, ..] = self.graph.shape(x);
        self.push(Op::Resize { size, mode }, &[x], [n, c, size[0], size[1]])
    }

    fn max_pool_with_indices(&mut self, x: ValueId, kernel: [usize; 2]) -> (ValueId, ValueId) {
        let [n, c, h, w] = self.graph.shape(x);
        let s = [n, c, h / kernel[0], w / kernel[1]];
        let out = self
            .graph
            .push_multi(Op::MaxPoolWithIndices { kernel }, &[x], &[s, s]);
        (out[0], out[1])
    }

    fn max_unpool(
        &mut self,
        x: ValueId,
        indices: &ValueId,
        kernel: [usize; 2],
        size: [usize; 2],
    ) -> ValueId {
        let [n, c, ..] = self.graph.shape(x);
        let op = Op::MaxUnpool { kernel, size };
        self.push(op, &[x, *indices], [n, c, size[0], size[1]])
    }

    fn affine_grid_sample(
        &mut self,
        x: ValueId,
        theta: ValueId,
        size: [usize; 2],
        align_corners: bool,
    ) -> ValueId {
        let [n, c, ..] = self.graph.shape(x);
        let op = Op::AffineGridSample {
            size,
            align_corners,
        };
        self.push(op, &[x, theta], [n, c, size[0], size[1]])
    }

    fn concat(&mut self, xs: Vec<ValueId>, axis: usize) -> ValueId {
        let mut s = self.graph.shape(xs[0]);
        s[axis] = xs.iter().map(|&v| self.graph.shape(v)[axis]).sum();
        self.push(Op::Concat { axis }, &xs, s)
    }

    fn matmul(&mut self, a: ValueId, b: ValueId) -> ValueId {
        let (sa, sb) = (self.graph.shape(a), self.graph.shape(b));
        assert_eq!(sa[3], sb[2], "matmul of {sa:?} by {sb:?}");
        let batch = broadcast_shape([sa[0], sa[1], 1, 1], [sb[0], sb[1], 1, 1])
            .unwrap_or_else(|| panic!("matmul batch axes of {sa:?} and {sb:?}"));
        self.push(Op::MatMul, &[a, b], [batch[0], batch[1], sa[2], sb[3]])
    }

    fn reshape(&mut self, x: ValueId, shape: [usize; 4]) -> ValueId {
        let s = self.graph.shape(x);
        assert_eq!(
            s.iter().product::<usize>(),
            shape.iter().product::<usize>(),
            "reshape {s:?} to {shape:?}"
        );
        self.push(Op::Reshape { shape }, &[x], shape)
    }

    fn transpose(&mut self, x: ValueId, perm: [usize; 4]) -> ValueId {
        let s = self.graph.shape(x);
        self.push(Op::Transpose { perm }, &[x], perm.map(|p| s[p]))
    }

    fn slice(&mut self, x: ValueId, axis: usize, start: usize, end: usize) -> ValueId {
        let mut s = self.graph.shape(x);
        assert!(
            start < end && end <= s[axis],
            "slice {start}..{end} of axis {axis} of {s:?}"
        );
        s[axis] = end - start;
        self.push(Op::Slice { axis, start, end }, &[x], s)
    }

    fn pad(&mut self, x: ValueId, pads: [usize; 4], value: f32) -> ValueId {
        let [n, c, h, w] = self.graph.shape(x);
        let s = [n, c, h + pads[0] + pads[2], w + pads[1] + pads[3]];
        self.push(Op::Pad { pads, value }, &[x], s)
    }

    fn reduce_mean(&mut self, x: ValueId, axis: usize) -> ValueId {
        let mut s = self.graph.shape(x);
        s[axis] = 1;
        self.push(Op::ReduceMean { axis }, &[x], s)
    }

    fn reduce_max(&mut self, x: ValueId, axis: usize) -> ValueId {
        let mut s = self.graph.shape(x);
        s[axis] = 1;
        self.push(Op::ReduceMax { axis }, &[x], s)
    }
}
