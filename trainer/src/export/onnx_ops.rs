//! One translation per graph operator into ONNX nodes. Where ONNX (at our opset) or tract
//! lacks an operator, it is written as an equivalent that both have; the operator tests in
//! `trainer/tests/ops_parity.rs` prove each equivalence against Burn.

use medseg_models::burn_ops::affine_base_grid;
use medseg_models::graph::{Graph, Node, Op, ResizeMode};

use super::onnx::{
    Builder, f32_tensor, float_attr, i64_tensor, int, ints, ints_i64, string, weights_tensor,
};

/// Writes `node` (its inputs and outputs already named) into `b`.
pub(super) fn translate(
    b: &mut Builder,
    graph: &Graph,
    node: &Node,
    mut inputs: Vec<String>,
    outputs: Vec<String>,
) {
    let prefix = node.name.as_str();
    let mut attrs = Vec::new();
    let op_type = match &node.op {
        Op::Conv {
            weight,
            bias,
            stride,
            padding,
            dilation,
            groups,
        } => {
            inputs.push(b.weight(prefix, weight, 0));
            inputs.push(b.init(prefix, "bias", f32_tensor(&[bias.len()], bias)));
            attrs.push(ints("kernel_shape", &weight.shape[2..]));
            attrs.push(ints("strides", stride));
            attrs.push(ints("pads", padding));
            attrs.push(ints("dilations", dilation));
            attrs.push(int("group", *groups as i64));
            "Conv"
        }
        Op::ConvTranspose {
            weight,
            bias,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        } => {
            // ConvTranspose weights are [in, out/groups, kh, kw]: output channels on axis 1.
            inputs.push(b.weight(prefix, weight, 1));
            inputs.push(b.init(prefix, "bias", f32_tensor(&[bias.len()], bias)));
            attrs.push(ints("kernel_shape", &weight.shape[2..]));
            attrs.push(ints("strides", stride));
            attrs.push(ints(
                "pads",
                &[padding[0], padding[1], padding[0], padding[1]],
            ));
            attrs.push(ints("dilations", dilation));
            attrs.push(int("group", *groups as i64));
            if output_padding.iter().any(|&p| p > 0) {
                attrs.push(ints("output_padding", output_padding));
            }
            "ConvTranspose"
        }
        Op::Relu => "Relu",
        Op::Sigmoid => "Sigmoid",
        Op::Tanh => "Tanh",
        Op::Add => "Add",
        Op::Sub => "Sub",
        Op::Mul => "Mul",
        Op::Div => "Div",
        Op::Max => "Max",
        Op::MatMul => "MatMul",
        Op::MaxPool {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        } => {
            attrs.push(ints("kernel_shape", kernel));
            attrs.push(ints("strides", stride));
            attrs.push(ints(
                "pads",
                &[padding[0], padding[1], padding[0], padding[1]],
            ));
            if dilation != &[1, 1] {
                attrs.push(ints("dilations", dilation));
            }
            if *ceil_mode {
                attrs.push(int("ceil_mode", 1));
            }
            "MaxPool"
        }
        Op::Concat { axis } => {
            attrs.push(int("axis", *axis as i64));
            "Concat"
        }
        Op::Softmax { axis } => {
            attrs.push(int("axis", *axis as i64));
            "Softmax"
        }
        Op::Resize { size, mode } => {
            let [_, _, h, w] = graph.shape(node.inputs[0]);
            inputs.push(String::new()); // no roi
            if size[0] % h == 0 && size[1] % w == 0 {
                // Integer factors as scales: what the UNet family always exported.
                let scales = [1.0, 1.0, (size[0] / h) as f32, (size[1] / w) as f32];
                inputs.push(b.init(prefix, "scales", f32_tensor(&[4], &scales)));
            } else {
                inputs.push(String::new()); // no scales
                let [n, c, ..] = graph.shape(node.inputs[0]);
                let sizes = [n, c, size[0], size[1]].map(|d| d as i64);
                inputs.push(b.init(prefix, "sizes", i64_tensor(&[4], &sizes)));
            }
            match mode {
                ResizeMode::Bilinear { align_corners } => {
                    attrs.push(string("mode", "linear"));
                    let t = if *align_corners {
                        "align_corners"
                    } else {
                        "half_pixel"
                    };
                    attrs.push(string("coordinate_transformation_mode", t));
                }
                ResizeMode::Nearest => {
                    attrs.push(string("mode", "nearest"));
                    attrs.push(string("coordinate_transformation_mode", "asymmetric"));
                    attrs.push(string("nearest_mode", "floor"));
                }
            }
            "Resize"
        }
        Op::Reshape { shape } => {
            let dims = shape.map(|d| d as i64);
            inputs.push(b.init(prefix, "shape", i64_tensor(&[4], &dims)));
            "Reshape"
        }
        Op::Transpose { perm } => {
            attrs.push(ints("perm", perm));
            "Transpose"
        }
        Op::Constant(w) => {
            let name = b.constant(prefix, w);
            // An Identity keeps the graph value's own name.
            inputs.push(name);
            "Identity"
        }
        Op::Slice { axis, start, end } => {
            let one = |v: usize| i64_tensor(&[1], &[v as i64]);
            inputs.push(b.init(prefix, "starts", one(*start)));
            inputs.push(b.init(prefix, "ends", one(*end)));
            inputs.push(b.init(prefix, "axes", one(*axis)));
            "Slice"
        }
        Op::LayerNorm {
            epsilon,
            gamma,
            beta,
        } => {
            // LayerNormalization is opset 17: written out as its formula.
            let x = inputs[0].clone();
            let normalized = normalize_last_axis(b, prefix, x, *epsilon);
            let d = gamma.len();
            let g = b.init(prefix, "gamma", f32_tensor(&[d], gamma));
            let scaled = b.step(prefix, "Mul", vec![normalized, g], vec![]);
            let beta = b.init(prefix, "beta", f32_tensor(&[d], beta));
            b.node(prefix, "Add", vec![scaled, beta], outputs, vec![]);
            return;
        }
        Op::Gelu => {
            // Gelu is opset 20: 0.5 x (1 + erf(x / sqrt 2)).
            let x = inputs[0].clone();
            let root2 = b.init(
                prefix,
                "sqrt2",
                f32_tensor(&[], &[std::f32::consts::SQRT_2]),
            );
            let scaled = b.step(prefix, "Div", vec![x.clone(), root2], vec![]);
            let erf = b.step(prefix, "Erf", vec![scaled], vec![]);
            let one = b.init(prefix, "one", f32_tensor(&[], &[1.0]));
            let shifted = b.step(prefix, "Add", vec![erf, one], vec![]);
            let prod = b.step(prefix, "Mul", vec![x, shifted], vec![]);
            let half = b.init(prefix, "half", f32_tensor(&[], &[0.5]));
            b.node(prefix, "Mul", vec![prod, half], outputs, vec![]);
            return;
        }
        Op::Clip { min, max } => {
            // Opset 11+ takes the bounds as (scalar) inputs, not attributes.
            inputs.push(b.init(prefix, "min", f32_tensor(&[], &[*min])));
            inputs.push(b.init(prefix, "max", f32_tensor(&[], &[*max])));
            "Clip"
        }
        Op::LeakyRelu { alpha } => {
            attrs.push(float_attr("alpha", *alpha));
            "LeakyRelu"
        }
        Op::PRelu { slope } => {
            // Slope per channel, broadcast over the positions: [C, 1, 1].
            let shape = if slope.len() == 1 {
                vec![1]
            } else {
                vec![slope.len(), 1, 1]
            };
            inputs.push(b.init(prefix, "slope", f32_tensor(&shape, slope)));
            "PRelu"
        }
        Op::ChannelAffine { scale, shift } => {
            let c = scale.len();
            let sc = b.init(prefix, "scale", f32_tensor(&[1, c, 1, 1], scale));
            let scaled = b.step(prefix, "Mul", vec![inputs[0].clone(), sc], vec![]);
            let sh = b.init(prefix, "shift", f32_tensor(&[1, c, 1, 1], shift));
            b.node(prefix, "Add", vec![scaled, sh], outputs, vec![]);
            return;
        }
        Op::GroupNorm {
            groups,
            epsilon,
            gamma,
            beta,
        } => {
            // GroupNormalization is opset 18 (and changed in 21): reshape so each group is
            // one [c/g * h, w] block, normalize the block, reshape back, then the affine.
            let [n, c, h, w] = graph.shape(node.inputs[0]);
            let rows = [n, *groups, c / groups * h, w].map(|d| d as i64);
            let rows = b.init(prefix, "rows", i64_tensor(&[4], &rows));
            let grouped = b.step(prefix, "Reshape", vec![inputs[0].clone(), rows], vec![]);
            let normalized = normalize_map(b, prefix, grouped, *epsilon);
            let back = [n, c, h, w].map(|d| d as i64);
            let back = b.init(prefix, "back", i64_tensor(&[4], &back));
            if gamma.is_empty() {
                b.node(prefix, "Reshape", vec![normalized, back], outputs, vec![]);
                return;
            }
            let y = b.step(prefix, "Reshape", vec![normalized, back], vec![]);
            let g = b.init(prefix, "gamma", f32_tensor(&[c, 1, 1], gamma));
            let scaled = b.step(prefix, "Mul", vec![y, g], vec![]);
            let beta = b.init(prefix, "beta", f32_tensor(&[c, 1, 1], beta));
            b.node(prefix, "Add", vec![scaled, beta], outputs, vec![]);
            return;
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
            ceil_mode,
            count_include_pad,
        } => {
            attrs.push(ints("kernel_shape", kernel));
            attrs.push(ints("strides", stride));
            attrs.push(ints(
                "pads",
                &[padding[0], padding[1], padding[0], padding[1]],
            ));
            attrs.push(int("ceil_mode", i64::from(*ceil_mode)));
            attrs.push(int("count_include_pad", i64::from(*count_include_pad)));
            "AveragePool"
        }
        Op::AdaptiveAvgPool { output } => {
            let [_, _, h, w] = graph.shape(node.inputs[0]);
            if h % output[0] == 0 && w % output[1] == 0 {
                // Equal bins: a plain average pooling.
                let k = [h / output[0], w / output[1]];
                attrs.push(ints("kernel_shape", &k));
                attrs.push(ints("strides", &k));
                "AveragePool"
            } else {
                // Uneven bins (PyTorch's floor/ceil windows): pooling is linear in each axis,
                // so it is two matrix products with fixed averaging matrices:
                // Y = P_h X P_w^T, P_h [oh, h], P_w^T [w, ow].
                let ph = bin_matrix(output[0], h);
                let pw_t = transpose(&bin_matrix(output[1], w), output[1], w);
                let pw_t = b.init(prefix, "cols", f32_tensor(&[1, 1, w, output[1]], &pw_t));
                let cols = b.step(prefix, "MatMul", vec![inputs[0].clone(), pw_t], vec![]);
                let ph = b.init(prefix, "rows", f32_tensor(&[1, 1, output[0], h], &ph));
                b.node(prefix, "MatMul", vec![ph, cols], outputs, vec![]);
                return;
            }
        }
        Op::Pad { pads, value } => {
            let [top, left, bottom, right] = pads.map(|p| p as i64);
            let all = [0, 0, top, left, 0, 0, bottom, right];
            inputs.push(b.init(prefix, "pads", i64_tensor(&[8], &all)));
            inputs.push(b.init(prefix, "value", f32_tensor(&[], &[*value])));
            attrs.push(string("mode", "constant"));
            "Pad"
        }
        Op::ReduceMean { axis } | Op::ReduceMax { axis } => {
            attrs.push(ints("axes", &[*axis]));
            attrs.push(int("keepdims", 1));
            if matches!(node.op, Op::ReduceMean { .. }) {
                "ReduceMean"
            } else {
                "ReduceMax"
            }
        }
        Op::MaxPoolWithIndices { kernel } => {
            // tract has no MaxUnpool (and ONNX's indices would need a scatter), so the
            // "indices" are a 0/1 mask at the input's resolution marking each window's first
            // maximum: ArgMax over the window (first occurrence), compared with 0..k*k.
            let [n, c, h, w] = graph.shape(node.inputs[0]);
            let [kh, kw] = *kernel;
            let (oh, ow) = (h / kh, w / kw);
            let x = crop_to_windows(b, prefix, inputs[0].clone(), [h, w], [oh * kh, ow * kw]);
            let windows = [n, c, oh, kh, ow, kw].map(|d| d as i64);
            let windows = b.init(prefix, "windows", i64_tensor(&[6], &windows));
            let x6 = b.step(prefix, "Reshape", vec![x.clone(), windows.clone()], vec![]);
            let t = b.step(
                prefix,
                "Transpose",
                vec![x6],
                vec![ints("perm", &[0, 1, 2, 4, 3, 5])],
            );
            let flat = [n, c, oh, ow, kh * kw].map(|d| d as i64);
            let flat = b.init(prefix, "flat", i64_tensor(&[5], &flat));
            let t = b.step(prefix, "Reshape", vec![t, flat], vec![]);
            let arg = b.step(
                prefix,
                "ArgMax",
                vec![t],
                vec![int("axis", 4), int("keepdims", 1)],
            );
            let range: Vec<i64> = (0..(kh * kw) as i64).collect();
            let range = b.init(prefix, "range", i64_tensor(&[kh * kw], &range));
            let hit = b.step(prefix, "Equal", vec![arg, range], vec![]);
            let hit = b.step(prefix, "Cast", vec![hit], vec![int("to", 1)]);
            let split = [n, c, oh, ow, kh, kw].map(|d| d as i64);
            let split = b.init(prefix, "split", i64_tensor(&[6], &split));
            let hit = b.step(prefix, "Reshape", vec![hit, split], vec![]);
            let hit = b.step(
                prefix,
                "Transpose",
                vec![hit],
                vec![ints("perm", &[0, 1, 2, 4, 3, 5])],
            );
            let whole = [n, c, oh * kh, ow * kw].map(|d| d as i64);
            let whole = b.init(prefix, "whole", i64_tensor(&[4], &whole));
            b.node(
                &format!("{prefix}.mask"),
                "Reshape",
                vec![hit, whole],
                vec![outputs[1].clone()],
                vec![],
            );
            attrs.push(ints("kernel_shape", kernel));
            attrs.push(ints("strides", kernel));
            b.node(prefix, "MaxPool", vec![x], vec![outputs[0].clone()], attrs);
            return;
        }
        Op::DepthToSpace { block } => {
            attrs.push(int("blocksize", *block as i64));
            attrs.push(string("mode", "CRD"));
            "DepthToSpace"
        }
        Op::MaxUnpool { kernel, size } => {
            // Each value repeated over its window, kept where the window's maximum was (the
            // mask from MaxPoolWithIndices), zero-padded to the pooled input's size.
            let [_, _, h, w] = graph.shape(node.inputs[0]);
            let scales = [1.0, 1.0, kernel[0] as f32, kernel[1] as f32];
            let scales = b.init(prefix, "scales", f32_tensor(&[4], &scales));
            let up = b.step(
                prefix,
                "Resize",
                vec![inputs[0].clone(), String::new(), scales],
                vec![
                    string("mode", "nearest"),
                    string("coordinate_transformation_mode", "asymmetric"),
                    string("nearest_mode", "floor"),
                ],
            );
            let kept = b.step(prefix, "Mul", vec![up, inputs[1].clone()], vec![]);
            let (bottom, right) = (size[0] - h * kernel[0], size[1] - w * kernel[1]);
            let pads = [0, 0, 0, 0, 0, 0, bottom as i64, right as i64];
            let pads = b.init(prefix, "pads", i64_tensor(&[8], &pads));
            b.node(
                prefix,
                "Pad",
                vec![kept, pads],
                outputs,
                vec![string("mode", "constant")],
            );
            return;
        }
        Op::AffineGridSample {
            size,
            align_corners,
        } => {
            // tract has GridSample (opset 16) but no AffineGrid: the grid is the fixed base
            // grid (the same one the Burn side uses) times theta^T.
            b.opset = b.opset.max(16);
            let [n, ..] = graph.shape(node.inputs[1]);
            let base = affine_base_grid(*size, *align_corners);
            let base = b.init(prefix, "base_grid", weights_tensor(&base));
            let theta_t = b.step(
                prefix,
                "Transpose",
                vec![inputs[1].clone()],
                vec![ints("perm", &[0, 1, 3, 2])],
            );
            let grid = b.step(prefix, "MatMul", vec![base, theta_t], vec![]);
            let shape = [n, size[0], size[1], 2].map(|d| d as i64);
            let shape = b.init(prefix, "grid_shape", i64_tensor(&[4], &shape));
            let grid = b.step(prefix, "Reshape", vec![grid, shape], vec![]);
            b.node(
                prefix,
                "GridSample",
                vec![inputs[0].clone(), grid],
                outputs,
                vec![
                    string("mode", "bilinear"),
                    string("padding_mode", "zeros"),
                    int("align_corners", i64::from(*align_corners)),
                ],
            );
            return;
        }
    };
    b.node(prefix, op_type, inputs, outputs, attrs);
}

/// `(x - mean) / sqrt(var + eps)` over the last axis (biased variance), as ONNX nodes.
fn normalize_last_axis(b: &mut Builder, prefix: &str, x: String, epsilon: f64) -> String {
    normalize(b, prefix, x, epsilon, &[-1])
}

/// `(x - mean) / sqrt(var + eps)` over the last two axes: a long row laid out as
/// `[.., rows, columns]` (a group of an NCHW map as `[n, g, c/g * h, w]`).
///
/// Accuracy is the point of this form. tract sums one axis sequentially in f32 (and fuses
/// `x / sqrt(mean(x^2) + eps)` into an RmsNorm whose portable kernel does the same), so over a
/// 65536-pixel map its sums carry ~1e-5 relative error, and across the 40 InstanceNorms of a
/// trained R2U-Net that put its logits 1e-2 away from Burn's (which sums pairwise). Summing
/// each row, then the row sums, keeps every sum short; it also stops the RmsNorm fusion.
fn normalize_map(b: &mut Builder, prefix: &str, x: String, epsilon: f64) -> String {
    normalize(b, prefix, x, epsilon, &[-1, -2])
}

/// Normalisation over `axes`, each reduced on its own (innermost first), with the mean taken
/// in two passes: when a channel barely varies around a large mean, the rounding error of a
/// one-pass mean, divided by the tiny standard deviation, reached 3e-3 of the output (test
/// `instance_norm_of_a_nearly_constant_large_map`). Subtracting the first mean and averaging
/// what is left corrects it: the second sum is over small numbers.
fn normalize(b: &mut Builder, prefix: &str, x: String, epsilon: f64, axes: &[i64]) -> String {
    let mean = |b: &mut Builder, mut v: String| {
        for &axis in axes {
            let attrs = vec![ints_i64("axes", &[axis]), int("keepdims", 1)];
            v = b.step(prefix, "ReduceMean", vec![v], attrs);
        }
        v
    };
    let rough_mean = mean(b, x.clone());
    let rough = b.step(prefix, "Sub", vec![x, rough_mean], vec![]);
    let correction = mean(b, rough.clone());
    let centred = b.step(prefix, "Sub", vec![rough, correction], vec![]);
    let square = b.step(
        prefix,
        "Mul",
        vec![centred.clone(), centred.clone()],
        vec![],
    );
    let var = mean(b, square);
    let eps = b.init(prefix, "epsilon", f32_tensor(&[], &[epsilon as f32]));
    let shifted = b.step(prefix, "Add", vec![var, eps], vec![]);
    let std = b.step(prefix, "Sqrt", vec![shifted], vec![]);
    b.step(prefix, "Div", vec![centred, std], vec![])
}

/// PyTorch's adaptive average pooling along one axis as a matrix `[bins, len]`: bin `i`
/// averages `floor(i len / bins) .. ceil((i + 1) len / bins)`.
fn bin_matrix(bins: usize, len: usize) -> Vec<f32> {
    let mut m = vec![0f32; bins * len];
    for i in 0..bins {
        let start = i * len / bins;
        let end = ((i + 1) * len).div_ceil(bins);
        for j in start..end {
            m[i * len + j] = 1.0 / (end - start) as f32;
        }
    }
    m
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

/// `x` cut to `to` (the whole pooling windows) when it is larger.
fn crop_to_windows(
    b: &mut Builder,
    prefix: &str,
    x: String,
    from: [usize; 2],
    to: [usize; 2],
) -> String {
    if from == to {
        return x;
    }
    let starts = b.init(prefix, "crop_starts", i64_tensor(&[2], &[0, 0]));
    let ends = b.init(
        prefix,
        "crop_ends",
        i64_tensor(&[2], &[to[0] as i64, to[1] as i64]),
    );
    let axes = b.init(prefix, "crop_axes", i64_tensor(&[2], &[2, 3]));
    b.step(prefix, "Slice", vec![x, starts, ends, axes], vec![])
}
