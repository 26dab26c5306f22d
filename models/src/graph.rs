//! A small, backend-neutral description of an inference graph.
//!
//! Networks do not write this graph by hand: their one description (generic over
//! [`crate::ops::Ops`]) is run once through [`crate::graph_ops::GraphOps`], which records
//! every operation here with its static shape (weights read from the Burn modules, BatchNorm
//! merged into the convolution before it). Exporters (ONNX today) translate the graph op by op.
//! Keeping this IR free of any file format lets the model crate stay independent of the
//! runtime.
//!
//! Every value is a 4-D f32 tensor (NCHW for images; token tensors are `[N, 1, L, C]` or
//! `[N, heads, L, d]`), except the indices of [`Op::MaxPoolWithIndices`], which only
//! [`Op::MaxUnpool`] reads.

/// An intermediate value in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueId(pub usize);

/// A dense f32 tensor with its shape (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Weights {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "weight shape {shape:?} does not match {} values",
            data.len()
        );
        Self { shape, data }
    }
}

/// How [`Op::Resize`] interpolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Bilinear; `align_corners` false means half-pixel centres (PyTorch's default).
    Bilinear { align_corners: bool },
    /// Nearest neighbour as PyTorch's `nearest`: source index `floor(dst * in / out)`.
    Nearest,
}

/// Inference operators, in the vocabulary every runtime (ONNX, NNEF) shares. Semantics are
/// PyTorch's unless said otherwise; binary operators broadcast numpy-style over axes of size 1.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// 2D convolution; weight `[out, in/groups, kh, kw]`, padding `[top, left, bottom, right]`.
    Conv {
        weight: Weights,
        bias: Vec<f32>,
        stride: [usize; 2],
        padding: [usize; 4],
        dilation: [usize; 2],
        groups: usize,
    },
    /// 2D transposed convolution; weight `[in, out/groups, kh, kw]`, symmetric padding `[h, w]`.
    ConvTranspose {
        weight: Weights,
        bias: Vec<f32>,
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
        dilation: [usize; 2],
        groups: usize,
    },
    /// `y = x * scale[c] + shift[c]` per channel (axis 1): a BatchNorm with no convolution
    /// before it to fold into.
    ChannelAffine {
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// Normalizes each group of `C / groups` channels over the group's channels and all
    /// positions (biased variance), then scales and shifts per channel. InstanceNorm is
    /// `groups = C`. `gamma`/`beta` empty means no affine step.
    GroupNorm {
        groups: usize,
        epsilon: f64,
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    /// Normalizes the last axis (biased variance), then `* gamma + beta` along it.
    LayerNorm {
        epsilon: f64,
        gamma: Vec<f32>,
        beta: Vec<f32>,
    },
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    /// `min(max(x, min), max)` (ReLU6: 0, 6).
    Clip {
        min: f32,
        max: f32,
    },
    /// `max(0, x) + slope * min(0, x)`, one slope per channel (axis 1) or one for all.
    PRelu {
        slope: Vec<f32>,
    },
    /// Exact GELU, `x * Φ(x)` with the normal CDF (erf form).
    Gelu,
    Sigmoid,
    Tanh,
    Softmax {
        axis: usize,
    },
    /// Max pooling; symmetric padding `[h, w]` (padded positions never win).
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
        ceil_mode: bool,
    },
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        ceil_mode: bool,
        count_include_pad: bool,
    },
    /// PyTorch's adaptive average pooling to `output` bins: bin `i` of `n` over a side of
    /// length `L` spans `floor(i L / n) .. ceil((i + 1) L / n)`. Global pooling is `[1, 1]`.
    AdaptiveAvgPool {
        output: [usize; 2],
    },
    /// Resizes the two last axes to `size`.
    Resize {
        size: [usize; 2],
        mode: ResizeMode,
    },
    /// Concatenation of all inputs, in order, along `axis`.
    Concat {
        axis: usize,
    },
    Add,
    Sub,
    Mul,
    Div,
    /// Element-wise maximum of two inputs (the exporter's pooling rewrites write it).
    Max,
    /// Matrix product of the two last axes, the two first broadcast.
    MatMul,
    /// Row-major reshape (same element count).
    Reshape {
        shape: [usize; 4],
    },
    /// Output axis `i` is input axis `perm[i]`.
    Transpose {
        perm: [usize; 4],
    },
    /// `start..end` along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// Constant padding of the two last axes, `[top, left, bottom, right]`.
    Pad {
        pads: [usize; 4],
        value: f32,
    },
    /// Mean along `axis`, which is kept with size 1.
    ReduceMean {
        axis: usize,
    },
    /// Maximum along `axis`, which is kept with size 1.
    ReduceMax {
        axis: usize,
    },
    /// A fixed tensor (no inputs); its shape is the value's shape.
    Constant(Weights),
    /// Non-overlapping max pooling (kernel = stride, no padding, floor) with two outputs: the
    /// pooled values and where each maximum came from (the first maximum of its window).
    /// The second output is only for [`Op::MaxUnpool`]; exporters choose its encoding.
    MaxPoolWithIndices {
        kernel: [usize; 2],
    },
    /// Inputs `[x, indices]` from a [`Op::MaxPoolWithIndices`] with the same `kernel`: each
    /// value goes back to where its window's maximum was, zeros elsewhere; the output has the
    /// pooled tensor's input size `size` (sides beyond the whole windows are zeros).
    MaxUnpool {
        kernel: [usize; 2],
        size: [usize; 2],
    },
    /// Moves channel blocks into space: input `[N, C * b * b, H, W]`, output `[N, C, H * b,
    /// W * b]` with `out[n, c, h * b + i, w * b + j] = in[n, c * b * b + i * b + j, h, w]`
    /// (ONNX's DepthToSpace in CRD mode). Only the exporter's rewrites write it.
    DepthToSpace {
        block: usize,
    },
    /// Inputs `[x, theta]`, theta `[N, 1, 2, 3]`: samples `x` bilinearly (zeros outside) on
    /// PyTorch's `affine_grid(theta, size)` with `align_corners` as given.
    AffineGridSample {
        size: [usize; 2],
        align_corners: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    /// One value for every op but [`Op::MaxPoolWithIndices`] (two).
    pub outputs: Vec<ValueId>,
    /// The Burn parameter (its `ParamId`) this node's stored values were made from: a module
    /// applied several times (a recurrent unit's convolution) gives several nodes with the
    /// same source, whose values [`Graph::parameter_count`] counts once.
    pub source: Option<u64>,
}

/// A single-input, single-output graph built in execution order, every value with its static
/// shape (exports are made for one input size, the model card's).
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub input: ValueId,
    pub output: Option<ValueId>,
    shapes: Vec<[usize; 4]>,
    scope: Vec<String>,
}

impl Graph {
    /// A new graph whose input is value 0, of shape `input_shape`.
    pub fn new(input_shape: [usize; 4]) -> Self {
        Self {
            nodes: Vec::new(),
            input: ValueId(0),
            output: None,
            shapes: vec![input_shape],
            scope: Vec::new(),
        }
    }

    pub fn shape(&self, v: ValueId) -> [usize; 4] {
        self.shapes[v.0]
    }

    /// Appends `op` applied to `inputs`, producing values of `shapes` (computed by the caller);
    /// the node is named after the current scope.
    pub fn push_multi(
        &mut self,
        op: Op,
        inputs: &[ValueId],
        shapes: &[[usize; 4]],
    ) -> Vec<ValueId> {
        let outputs: Vec<ValueId> = shapes
            .iter()
            .map(|&s| {
                self.shapes.push(s);
                ValueId(self.shapes.len() - 1)
            })
            .collect();
        let mut name = self.scope.join(".");
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&format!("{}_{}", op_kind(&op), self.nodes.len()));
        self.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            outputs: outputs.clone(),
            source: None,
        });
        outputs
    }

    /// [`Self::push_multi`] for the usual single output.
    pub fn push(&mut self, op: Op, inputs: &[ValueId], shape: [usize; 4]) -> ValueId {
        self.push_multi(op, inputs, &[shape])[0]
    }

    /// Runs `f` with `name` appended to the node-name scope (for readable exported graphs).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(name.to_string());
        let out = f(self);
        self.scope.pop();
        out
    }

    pub fn enter(&mut self, name: &str) {
        self.scope.push(name.to_string());
    }

    pub fn leave(&mut self) {
        self.scope.pop();
    }

    /// Drops the nodes the output does not depend on (auxiliary heads, say).
    pub fn prune(&mut self) {
        let Some(out) = self.output else { return };
        let mut needed = vec![false; self.shapes.len()];
        needed[out.0] = true;
        let mut keep = vec![false; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|v| needed[v.0]) {
                keep[i] = true;
                for v in &node.inputs {
                    needed[v.0] = true;
                }
            }
        }
        let mut k = keep.into_iter();
        self.nodes.retain(|_| k.next().unwrap_or(false));
    }

    /// Records that the last node's stored values come from the Burn parameter `source`.
    pub fn mark_source(&mut self, source: u64) {
        if let Some(node) = self.nodes.last_mut() {
            node.source = Some(source);
        }
    }

    /// Number of stored values (parameters after folding; constants included), each source
    /// parameter counted once however many nodes apply it.
    pub fn parameter_count(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        self.nodes
            .iter()
            .filter(|n| n.source.is_none_or(|id| seen.insert(id)))
            .map(|n| op_parameters(&n.op))
            .sum()
    }

    /// Multiply-accumulates of one forward pass (convolutions, matrix products, and
    /// normalisations counted as one per element); GFLOPs are twice this over 1e9.
    pub fn multiply_accumulates(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| {
                let out = self.shape(n.outputs[0]);
                let out_elems: u64 = out.iter().map(|&d| d as u64).product();
                match &n.op {
                    Op::Conv { weight, .. } => {
                        // Each output element reads in/groups * kh * kw weights.
                        out_elems * weight.shape[1..].iter().product::<usize>() as u64
                    }
                    Op::ConvTranspose { weight, .. } => {
                        let input = self.shape(n.inputs[0]);
                        let in_elems: u64 = input.iter().map(|&d| d as u64).product();
                        in_elems * weight.shape[1..].iter().product::<usize>() as u64
                    }
                    Op::MatMul => {
                        let k = self.shape(n.inputs[0])[3] as u64;
                        out_elems * k
                    }
                    Op::Constant(_) => 0,
                    _ => out_elems,
                }
            })
            .sum()
    }
}

fn op_parameters(op: &Op) -> usize {
    match op {
        Op::Conv { weight, bias, .. } | Op::ConvTranspose { weight, bias, .. } => {
            weight.data.len() + bias.len()
        }
        Op::ChannelAffine { scale, shift } => scale.len() + shift.len(),
        Op::GroupNorm { gamma, beta, .. } | Op::LayerNorm { gamma, beta, .. } => {
            gamma.len() + beta.len()
        }
        Op::PRelu { slope } => slope.len(),
        Op::Constant(w) => w.data.len(),
        _ => 0,
    }
}

/// Short lower-case name of an operator, used in node names.
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Conv { .. } => "conv",
        Op::ConvTranspose { .. } => "convtranspose",
        Op::ChannelAffine { .. } => "affine",
        Op::GroupNorm { .. } => "groupnorm",
        Op::LayerNorm { .. } => "layernorm",
        Op::Relu => "relu",
        Op::LeakyRelu { .. } => "leakyrelu",
        Op::Clip { .. } => "clip",
        Op::PRelu { .. } => "prelu",
        Op::Gelu => "gelu",
        Op::Sigmoid => "sigmoid",
        Op::Tanh => "tanh",
        Op::Softmax { .. } => "softmax",
        Op::MaxPool { .. } => "maxpool",
        Op::AvgPool { .. } => "avgpool",
        Op::AdaptiveAvgPool { .. } => "adaptiveavgpool",
        Op::Resize { .. } => "resize",
        Op::Concat { .. } => "concat",
        Op::Add => "add",
        Op::Sub => "sub",
        Op::Mul => "mul",
        Op::Div => "div",
        Op::Max => "max",
        Op::MatMul => "matmul",
        Op::Reshape { .. } => "reshape",
        Op::Transpose { .. } => "transpose",
        Op::Slice { .. } => "slice",
        Op::Pad { .. } => "pad",
        Op::ReduceMean { .. } => "reducemean",
        Op::ReduceMax { .. } => "reducemax",
        Op::Constant(_) => "constant",
        Op::MaxPoolWithIndices { .. } => "maxpoolidx",
        Op::MaxUnpool { .. } => "maxunpool",
        Op::DepthToSpace { .. } => "depthtospace",
        Op::AffineGridSample { .. } => "gridsample",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fresh_and_names_follow_scope() {
        let mut g = Graph::new([1, 1, 4, 4]);
        let a = g.scoped("enc", |g| g.push(Op::Relu, &[ValueId(0)], [1, 1, 4, 4]));
        let b = g.push(Op::Add, &[a, ValueId(0)], [1, 1, 4, 4]);
        assert_ne!(a, b);
        assert_ne!(a, g.input);
        assert_eq!(g.nodes[0].name, "enc.relu_0");
        assert_eq!(g.nodes[1].name, "add_1");
        assert_eq!(g.shape(b), [1, 1, 4, 4]);
    }

    #[test]
    fn pruning_keeps_what_the_output_needs() {
        let mut g = Graph::new([1, 1, 4, 4]);
        let s = [1, 1, 4, 4];
        let a = g.push(Op::Relu, &[g.input], s);
        let _dead = g.push(Op::Sigmoid, &[a], s);
        let b = g.push(Op::Tanh, &[a], s);
        g.output = Some(b);
        g.prune();
        let kinds: Vec<_> = g.nodes.iter().map(|n| op_kind(&n.op)).collect();
        assert_eq!(kinds, ["relu", "tanh"]);
    }

    #[test]
    #[should_panic(expected = "does not match")]
    fn weights_reject_wrong_shape() {
        Weights::new(vec![2, 2], vec![0.0; 3]);
    }
}
