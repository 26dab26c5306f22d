//! A small, backend-neutral description of an inference graph.
//!
//! Blocks write themselves into a [`Graph`] (weights already folded for inference: BatchNorm
//! merged into the preceding convolution), and exporters (ONNX today, others later) translate
//! the graph op by op. Keeping this IR here, free of any file format, lets the model crate
//! stay independent of the runtime and lets each block own its export.

/// An intermediate value (an NCHW float tensor) in the graph.
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

/// Inference operators, in the vocabulary every runtime (ONNX, NNEF) shares.
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
    /// 2D transposed convolution; weight `[in, out, kh, kw]`, symmetric padding `[h, w]`.
    ConvTranspose {
        weight: Weights,
        bias: Vec<f32>,
        stride: [usize; 2],
        padding: [usize; 2],
    },
    Relu,
    Sigmoid,
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    /// Bilinear resize by an integer factor; `align_corners` false means half-pixel centres.
    ResizeBilinear {
        scale: [usize; 2],
        align_corners: bool,
    },
    /// Concatenation along the channel axis of all inputs, in order.
    ConcatChannels,
    Add,
    Mul,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A single-input, single-output graph built by blocks in execution order.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub input: ValueId,
    pub output: Option<ValueId>,
    next_value: usize,
    scope: Vec<String>,
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl Graph {
    /// A new graph whose input is value 0.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            input: ValueId(0),
            output: None,
            next_value: 1,
            scope: Vec::new(),
        }
    }

    /// Appends `op` applied to `inputs`; the node is named after the current scope.
    pub fn push(&mut self, op: Op, inputs: &[ValueId]) -> ValueId {
        let output = ValueId(self.next_value);
        self.next_value += 1;
        let kind = op_kind(&op);
        let mut name = self.scope.join(".");
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&format!("{kind}_{}", self.nodes.len()));
        self.nodes.push(Node {
            name,
            op,
            inputs: inputs.to_vec(),
            output,
        });
        output
    }

    /// Runs `f` with `name` appended to the node-name scope (for readable exported graphs).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(name.to_string());
        let out = f(self);
        self.scope.pop();
        out
    }

    /// Total number of weight values (parameters after folding).
    pub fn parameter_count(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Conv { weight, bias, .. } | Op::ConvTranspose { weight, bias, .. } => {
                    weight.data.len() + bias.len()
                }
                _ => 0,
            })
            .sum()
    }
}

/// Short lower-case name of an operator, used in node names.
pub fn op_kind(op: &Op) -> &'static str {
    match op {
        Op::Conv { .. } => "conv",
        Op::ConvTranspose { .. } => "convtranspose",
        Op::Relu => "relu",
        Op::Sigmoid => "sigmoid",
        Op::MaxPool { .. } => "maxpool",
        Op::ResizeBilinear { .. } => "resize",
        Op::ConcatChannels => "concat",
        Op::Add => "add",
        Op::Mul => "mul",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_fresh_and_names_follow_scope() {
        let mut g = Graph::new();
        let a = g.scoped("enc", |g| g.push(Op::Relu, &[ValueId(0)]));
        let b = g.push(Op::Add, &[a, ValueId(0)]);
        assert_ne!(a, b);
        assert_ne!(a, g.input);
        assert_eq!(g.nodes[0].name, "enc.relu_0");
        assert_eq!(g.nodes[1].name, "add_1");
    }

    #[test]
    #[should_panic(expected = "does not match")]
    fn weights_reject_wrong_shape() {
        Weights::new(vec![2, 2], vec![0.0; 3]);
    }
}
