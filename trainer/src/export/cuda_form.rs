//! `export --target cuda`: the graph rewritten into operators that tract-cuda runs on the GPU.
//!
//! tract-cuda 0.23.9 translates convolutions (cuDNN), matrix products, element-wise and binary
//! operators, reductions, Softmax, the copy operators (Concat, Reshape, Transpose, Slice, Pad)
//! and nearest up-sampling by integer factors; bilinear Resize, ConvTranspose, max and average
//! pooling and GridSample stay on the CPU, each costing a copy to the host and back per run.
//! Every rewrite below is an exact equivalent made of the supported operators (exact up to
//! f32 rounding: the export parity check compares the rewritten graph with Burn):
//!
//! - max / average pooling with kernel = stride and no padding: two reshapes that put each
//!   window's rows, then its columns, on an axis of their own, each combined by element-wise
//!   max / sum of its slices (or a reduction, for wide windows);
//! - adaptive average pooling with equal bins: the same, with the bin as the window;
//! - transposed convolution with equal strides `s` whose output is `s` times its input (every
//!   decoder's: k2 s2 p0, k4 s2 p1, k3 s2 p1 op1): a convolution with `s * s` times the output
//!   channels, one group per output phase, then depth-to-space ("sub-pixel convolution",
//!   Shi et al., CVPR 2016); phases read zero taps where the kernel has none;
//! - bilinear up-sampling with half-pixel centres by an integer factor `s`: the input's border
//!   repeated (slices and concatenation: what clamping the source coordinate does), a 3x3
//!   depthwise convolution with one fixed kernel per output phase, then depth-to-space;
//! - every other resize (align-corners bilinear, a non-integer size, nearest to a size that is
//!   not a multiple): two matrix products with fixed interpolation matrices, `R_h X R_w^T`
//!   (the resize is linear along each axis). These cost more arithmetic than the resize they
//!   replace, which a GPU has to spare; the copies to and from the CPU they remove cost more.
//!
//! What has no such form stays and is listed in [`CudaForm::left_on_cpu`]: pooling with
//! padding or overlapping windows (the 3x3 stride-2 max-pool of ResNet stems), SegNet's
//! pooling with indices, and the spatial transformer's grid sampling.

use medseg_models::graph::{Graph, Node, Op, ResizeMode, ValueId, Weights, op_kind};

/// The rewritten graph and what the rewrite did.
pub struct CudaForm {
    pub graph: Graph,
    /// Operators rewritten, by kind (`maxpool`, `convtranspose`, ...), with their count.
    pub rewritten: Vec<(&'static str, usize)>,
    /// Nodes tract-cuda will still run on the CPU.
    pub left_on_cpu: Vec<LeftOnCpu>,
}

/// A node the rewrite could not put in a GPU form.
#[derive(Debug, Clone)]
pub struct LeftOnCpu {
    pub node: String,
    /// Its operator (`op_kind`: "maxpool", "gridsample", ...).
    pub kind: &'static str,
    pub why: &'static str,
}

/// `graph` with every operator that has a GPU form in tract-cuda rewritten into it.
pub fn rewrite(graph: &Graph) -> CudaForm {
    let mut out = Graph::new(graph.shape(graph.input));
    let mut map: Vec<Option<ValueId>> = vec![None; value_count(graph)];
    map[graph.input.0] = Some(out.input);
    let mut rewritten: Vec<(&'static str, usize)> = Vec::new();
    let mut left_on_cpu = Vec::new();
    for node in &graph.nodes {
        let inputs: Vec<ValueId> = node
            .inputs
            .iter()
            .map(|v| map[v.0].expect("graph nodes are in execution order"))
            .collect();
        out.enter(&node.name);
        let replaced = replace(&mut out, node, &inputs, graph);
        out.leave();
        let outputs = match replaced {
            Some(v) => {
                let kind = op_kind(&node.op);
                match rewritten.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, n)) => *n += 1,
                    None => rewritten.push((kind, 1)),
                }
                vec![v]
            }
            None => {
                if let Some(why) = stays_on_cpu(&node.op) {
                    left_on_cpu.push(LeftOnCpu {
                        node: node.name.clone(),
                        kind: op_kind(&node.op),
                        why,
                    });
                }
                copy(&mut out, node, &inputs, graph)
            }
        };
        for (old, new) in node.outputs.iter().zip(outputs) {
            map[old.0] = Some(new);
        }
    }
    out.output = graph
        .output
        .map(|v| map[v.0].expect("the output is computed"));
    CudaForm {
        graph: out,
        rewritten,
        left_on_cpu,
    }
}

/// One more than the largest value id the graph uses.
fn value_count(graph: &Graph) -> usize {
    graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs.iter().chain(&n.inputs))
        .chain([&graph.input])
        .map(|v| v.0 + 1)
        .max()
        .unwrap_or(1)
}

/// The node as it was (same name, same source parameter), on the new graph's values.
fn copy(out: &mut Graph, node: &Node, inputs: &[ValueId], graph: &Graph) -> Vec<ValueId> {
    let shapes: Vec<[usize; 4]> = node.outputs.iter().map(|&v| graph.shape(v)).collect();
    let values = out.push_multi(node.op.clone(), inputs, &shapes);
    let last = out.nodes.last_mut().expect("just pushed");
    last.name = node.name.clone();
    last.source = node.source;
    values
}

/// Why tract-cuda runs `op` on the CPU, for the operators this file leaves in place.
fn stays_on_cpu(op: &Op) -> Option<&'static str> {
    match op {
        Op::MaxPool { .. } => Some("max pooling with padding or overlapping windows"),
        Op::AvgPool { .. } => Some("average pooling with padding or overlapping windows"),
        Op::AdaptiveAvgPool { .. } => None, // uneven bins are written as matrix products
        Op::ConvTranspose { .. } => Some(
            "transposed convolution with groups, dilation, unequal strides or an output not stride x input",
        ),
        Op::MaxPoolWithIndices { .. } => Some("max pooling with indices (ArgMax)"),
        Op::AffineGridSample { .. } => Some("grid sampling"),
        _ => None,
    }
}

/// The rewritten form of `node`, or None to keep it.
fn replace(out: &mut Graph, node: &Node, inputs: &[ValueId], graph: &Graph) -> Option<ValueId> {
    let x = *inputs.first()?;
    let [_, _, h, w] = graph.shape(node.inputs[0]);
    match &node.op {
        Op::MaxPool {
            kernel,
            stride,
            padding,
            dilation,
            ceil_mode,
        } if kernel == stride
            && *padding == [0, 0]
            && *dilation == [1, 1]
            && (!ceil_mode || (h % kernel[0] == 0 && w % kernel[1] == 0)) =>
        {
            Some(pool_by_reduction(out, x, *kernel, Reduction::Max))
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
            ceil_mode,
            ..
        } if kernel == stride
            && *padding == [0, 0]
            && (!ceil_mode || (h % kernel[0] == 0 && w % kernel[1] == 0)) =>
        {
            Some(pool_by_reduction(out, x, *kernel, Reduction::Mean))
        }
        Op::AdaptiveAvgPool { output } if h % output[0] == 0 && w % output[1] == 0 => {
            let kernel = [h / output[0], w / output[1]];
            Some(pool_by_reduction(out, x, kernel, Reduction::Mean))
        }
        Op::ConvTranspose {
            weight,
            bias,
            stride,
            padding,
            output_padding,
            dilation,
            groups,
        } if *groups == 1 && *dilation == [1, 1] && stride[0] == stride[1] => {
            let [_, _, oh, ow] = graph.shape(node.outputs[0]);
            sub_pixel_convolution(
                out,
                x,
                weight,
                bias,
                stride[0],
                *padding,
                *output_padding,
                [oh, ow],
                node.source,
            )
        }
        Op::Resize { size, mode } => resize(out, x, *size, *mode),
        _ => None,
    }
}

#[derive(Clone, Copy)]
enum Reduction {
    Max,
    Mean,
}

impl Reduction {
    fn op(self, axis: usize) -> Op {
        match self {
            Self::Max => Op::ReduceMax { axis },
            Self::Mean => Op::ReduceMean { axis },
        }
    }
}

/// Non-overlapping `k` pooling (floor: sides beyond whole windows dropped) without pooling
/// operators: `[n, c, h, w]` -> `[n, c*oh, kh, w]`, combine the `kh` rows -> `[n, c*oh, ow,
/// kw]`, combine the `kw` columns -> `[n, c, oh, ow]`. Small windows combine their slices
/// with element-wise max / add (tract's CPU Reduce over a 2-wide axis took 324 ms of a UNet's
/// 432 ms, against 139 ms for the whole plain graph); wide ones (global pooling) reduce.
fn pool_by_reduction(out: &mut Graph, x: ValueId, k: [usize; 2], r: Reduction) -> ValueId {
    let [n, c, h, w] = out.shape(x);
    let (oh, ow) = (h / k[0], w / k[1]);
    let mut x = x;
    if oh * k[0] != h {
        x = out.push(
            Op::Slice {
                axis: 2,
                start: 0,
                end: oh * k[0],
            },
            &[x],
            [n, c, oh * k[0], w],
        );
    }
    if ow * k[1] != w {
        let s = [n, c, oh * k[0], ow * k[1]];
        x = out.push(
            Op::Slice {
                axis: 3,
                start: 0,
                end: ow * k[1],
            },
            &[x],
            s,
        );
    }
    let rows = [n, c * oh, k[0], ow * k[1]];
    let x = out.push(Op::Reshape { shape: rows }, &[x], rows);
    let x = combine(out, x, 2, r);
    let cols = [n, c * oh, ow, k[1]];
    let x = out.push(Op::Reshape { shape: cols }, &[x], cols);
    let x = combine(out, x, 3, r);
    out.push(
        Op::Reshape {
            shape: [n, c, oh, ow],
        },
        &[x],
        [n, c, oh, ow],
    )
}

/// Windows up to this wide are combined slice by slice; wider ones by a reduction.
const SLICED_WINDOW: usize = 4;

/// `x` reduced along `axis` to size 1 by `r`.
fn combine(out: &mut Graph, x: ValueId, axis: usize, r: Reduction) -> ValueId {
    let shape = out.shape(x);
    let len = shape[axis];
    if len == 1 {
        return x;
    }
    let mut one = shape;
    one[axis] = 1;
    if len > SLICED_WINDOW {
        return out.push(r.op(axis), &[x], one);
    }
    let slice = |out: &mut Graph, i: usize| {
        out.push(
            Op::Slice {
                axis,
                start: i,
                end: i + 1,
            },
            &[x],
            one,
        )
    };
    let mut acc = slice(out, 0);
    for i in 1..len {
        let next = slice(out, i);
        let op = match r {
            Reduction::Max => Op::Max,
            Reduction::Mean => Op::Add,
        };
        acc = out.push(op, &[acc, next], one);
    }
    if let Reduction::Mean = r {
        let scale = out.push(
            Op::Constant(Weights::new(vec![1, 1, 1, 1], vec![1.0 / len as f32])),
            &[],
            [1, 1, 1, 1],
        );
        acc = out.push(Op::Mul, &[acc, scale], one);
    }
    acc
}

/// Along one axis, the taps of a transposed convolution (kernel `k`, stride `s`, padding
/// `p`) as a convolution over the input: output `i * s + a` reads input `i + d` through
/// kernel tap `a + p - d * s`. Returns the convolution's padding before and after and its
/// kernel length (the offsets `d` every phase needs, `-before ..= after`).
fn phase_taps(k: usize, s: usize, p: usize) -> Option<(usize, usize, usize)> {
    let (k, s, p) = (k as isize, s as isize, p as isize);
    // The smallest and largest offset d over all phases a = 0..s with 0 <= a + p - d s < k.
    let d_min = (p - k + 1).div_euclid(s) + isize::from((p - k + 1).rem_euclid(s) != 0);
    let d_max = (s - 1 + p).div_euclid(s);
    (d_min <= 0 && d_max >= 0).then_some((
        (-d_min) as usize,
        d_max as usize,
        (d_max - d_min + 1) as usize,
    ))
}

/// A transposed convolution as a convolution into `s * s` phases of each output channel and
/// a depth-to-space, when its output is exactly `s` times its input.
#[allow(clippy::too_many_arguments)]
fn sub_pixel_convolution(
    out: &mut Graph,
    x: ValueId,
    weight: &Weights,
    bias: &[f32],
    s: usize,
    padding: [usize; 2],
    output_padding: [usize; 2],
    out_size: [usize; 2],
    source: Option<u64>,
) -> Option<ValueId> {
    let [n, ci, h, w] = out.shape(x);
    let (wci, co, kh, kw) = (
        weight.shape[0],
        weight.shape[1],
        weight.shape[2],
        weight.shape[3],
    );
    if wci != ci || out_size != [s * h, s * w] || s < 2 {
        return None;
    }
    let _ = output_padding; // implied by the output size checked above
    let (top, bottom, th) = phase_taps(kh, s, padding[0])?;
    let (left, right, tw) = phase_taps(kw, s, padding[1])?;
    let phases = s * s;
    let mut data = vec![0f32; co * phases * ci * th * tw];
    for o in 0..co {
        for a in 0..s {
            for b in 0..s {
                let oc = o * phases + a * s + b;
                for c in 0..ci {
                    for u in 0..th {
                        // Offset d = u - top; kernel tap a + p - d s.
                        let ty = (a + padding[0] + top * s) as isize - (u * s) as isize;
                        if ty < 0 || ty >= kh as isize {
                            continue;
                        }
                        for v in 0..tw {
                            let tx = (b + padding[1] + left * s) as isize - (v * s) as isize;
                            if tx < 0 || tx >= kw as isize {
                                continue;
                            }
                            let src = ((c * co + o) * kh + ty as usize) * kw + tx as usize;
                            data[((oc * ci + c) * th + u) * tw + v] = weight.data[src];
                        }
                    }
                }
            }
        }
    }
    let bias: Vec<f32> = bias
        .iter()
        .flat_map(|&b| std::iter::repeat_n(b, phases))
        .collect();
    let conv = Op::Conv {
        weight: Weights::new(vec![co * phases, ci, th, tw], data),
        bias,
        stride: [1, 1],
        padding: [top, left, bottom, right],
        dilation: [1, 1],
        groups: 1,
    };
    let y = out.push(conv, &[x], [n, co * phases, h, w]);
    if let Some(id) = source {
        out.mark_source(id);
    }
    Some(out.push(Op::DepthToSpace { block: s }, &[y], [n, co, h * s, w * s]))
}

/// A resize in GPU operators; None for nearest by integer factors (tract-cuda runs those).
fn resize(out: &mut Graph, x: ValueId, size: [usize; 2], mode: ResizeMode) -> Option<ValueId> {
    let [n, c, h, w] = out.shape(x);
    let integer = size[0].is_multiple_of(h) && size[1].is_multiple_of(w);
    match mode {
        ResizeMode::Nearest if integer => None,
        // One pixel interpolates to itself everywhere: nearest up-sampling, which tract-cuda
        // runs. (The matrix form of it also trips tract 0.23.9's ChangeAxes pass on the
        // convolution before it: "Bias should be scalar or a vector with one value per
        // output channel", seen on HarDNet at 32 px, whose deepest map is 1x1.)
        ResizeMode::Bilinear { .. } if h == 1 && w == 1 => {
            let nearest = Op::Resize {
                size,
                mode: ResizeMode::Nearest,
            };
            Some(out.push(nearest, &[x], [n, c, size[0], size[1]]))
        }
        ResizeMode::Bilinear {
            align_corners: false,
        } if integer && size[0] / h == size[1] / w && size[0] / h > 1 => {
            Some(bilinear_by_phases(out, x, size[0] / h))
        }
        _ => {
            // Y = R_h X R_w^T: [1, 1, oh, h] x ([n, c, h, w] x [1, 1, w, ow]).
            let rw_t = transpose(&interpolation_matrix(w, size[1], mode), size[1], w);
            let rw_t = out.push(
                Op::Constant(Weights::new(vec![1, 1, w, size[1]], rw_t)),
                &[],
                [1, 1, w, size[1]],
            );
            let cols = out.push(Op::MatMul, &[x, rw_t], [n, c, h, size[1]]);
            let rh = interpolation_matrix(h, size[0], mode);
            let rh = out.push(
                Op::Constant(Weights::new(vec![1, 1, size[0], h], rh)),
                &[],
                [1, 1, size[0], h],
            );
            Some(out.push(Op::MatMul, &[rh, cols], [n, c, size[0], size[1]]))
        }
    }
}

/// Row-major `[to, from]` matrix whose row `i` holds the weights output `i` of a resize from
/// `from` to `to` samples gives the inputs (PyTorch's source coordinates and clamping).
fn interpolation_matrix(from: usize, to: usize, mode: ResizeMode) -> Vec<f32> {
    let mut m = vec![0f32; to * from];
    for i in 0..to {
        match mode {
            ResizeMode::Nearest => {
                let j = (i * from / to).min(from - 1);
                m[i * from + j] = 1.0;
            }
            ResizeMode::Bilinear { align_corners } => {
                let src = if align_corners {
                    if to > 1 {
                        i as f64 * (from - 1) as f64 / (to - 1) as f64
                    } else {
                        0.0
                    }
                } else {
                    ((i as f64 + 0.5) * from as f64 / to as f64 - 0.5).max(0.0)
                };
                let j0 = (src.floor() as usize).min(from - 1);
                let j1 = (j0 + 1).min(from - 1);
                let t = (src - j0 as f64) as f32;
                m[i * from + j0] += 1.0 - t;
                m[i * from + j1] += t;
            }
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

/// Bilinear (half-pixel) up-sampling by an integer `s`: border repeated, a depthwise 3x3
/// convolution whose `s * s` outputs per channel are the output phases, depth-to-space.
fn bilinear_by_phases(out: &mut Graph, x: ValueId, s: usize) -> ValueId {
    let [n, c, h, w] = out.shape(x);
    // Clamping the source coordinate is what repeating the border pixel does.
    let x = repeat_border(out, x, 2);
    let x = repeat_border(out, x, 3);
    // Phase a of s: source offset (a + 0.5) / s - 0.5 from the input pixel, in (-0.5, 0.5),
    // spread over the taps at -1, 0, +1.
    let taps = |a: usize| -> [f32; 3] {
        let d = (a as f64 + 0.5) / s as f64 - 0.5;
        if d < 0.0 {
            [(-d) as f32, (1.0 + d) as f32, 0.0]
        } else {
            [0.0, (1.0 - d) as f32, d as f32]
        }
    };
    let phases = s * s;
    let mut data = Vec::with_capacity(c * phases * 9);
    for _ in 0..c {
        for a in 0..s {
            for b in 0..s {
                let (ty, tx) = (taps(a), taps(b));
                for wy in ty {
                    for wx in tx {
                        data.push(wy * wx);
                    }
                }
            }
        }
    }
    let conv = Op::Conv {
        weight: Weights::new(vec![c * phases, 1, 3, 3], data),
        bias: vec![0.0; c * phases],
        stride: [1, 1],
        padding: [0; 4],
        dilation: [1, 1],
        groups: c,
    };
    let y = out.push(conv, &[x], [n, c * phases, h, w]);
    out.push(Op::DepthToSpace { block: s }, &[y], [n, c, h * s, w * s])
}

/// `x` with its first and last row (axis 2) or column (axis 3) repeated once outside.
fn repeat_border(out: &mut Graph, x: ValueId, axis: usize) -> ValueId {
    let shape = out.shape(x);
    let len = shape[axis];
    let mut edge = shape;
    edge[axis] = 1;
    let first = out.push(
        Op::Slice {
            axis,
            start: 0,
            end: 1,
        },
        &[x],
        edge,
    );
    let last = out.push(
        Op::Slice {
            axis,
            start: len - 1,
            end: len,
        },
        &[x],
        edge,
    );
    let mut padded = shape;
    padded[axis] = len + 2;
    out.push(Op::Concat { axis }, &[first, x, last], padded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_taps_of_the_usual_decoders() {
        // k2 s2 p0: a 1x1 convolution. k4 s2 p1: 3 taps, one each side. k3 s2 p1 op1: 2 taps.
        assert_eq!(phase_taps(2, 2, 0), Some((0, 0, 1)));
        assert_eq!(phase_taps(4, 2, 1), Some((1, 1, 3)));
        assert_eq!(phase_taps(3, 2, 1), Some((0, 1, 2)));
        assert_eq!(phase_taps(8, 4, 2), Some((1, 1, 3)));
    }

    #[test]
    fn interpolation_rows_sum_to_one() {
        for mode in [
            ResizeMode::Nearest,
            ResizeMode::Bilinear {
                align_corners: true,
            },
            ResizeMode::Bilinear {
                align_corners: false,
            },
        ] {
            for (from, to) in [(4, 8), (5, 3), (1, 6), (7, 7)] {
                let m = interpolation_matrix(from, to, mode);
                for r in m.chunks(from) {
                    let s: f32 = r.iter().sum();
                    assert!((s - 1.0).abs() < 1e-6, "{mode:?} {from}->{to}: {r:?}");
                }
            }
        }
    }
}
