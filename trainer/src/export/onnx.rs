//! Writing the export graph as ONNX (opset 13), one small translation per operator.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use medseg_models::graph::{Graph, ValueId, Weights};

use super::onnx_ops;
use medseg_runtime::onnx::pb;

pub const OPSET: i64 = 13;

/// How convolution weights are stored in the file (activations stay f32 in every format;
/// `export::quantize` makes activations int8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightFormat {
    F32,
    /// IEEE half precision + `Cast` to f32: half the file; runtimes fold the cast at load time.
    F16,
    /// Symmetric int8 per output channel + `DequantizeLinear` (weights only; activations stay
    /// f32): 4x smaller files; tract folds the dequantization at load time.
    Int8,
}

impl WeightFormat {
    /// The card's `quantization` value.
    pub fn card_name(self) -> &'static str {
        match self {
            Self::F32 => "none",
            Self::F16 => "f16-weights",
            Self::Int8 => "int8-weights-per-channel-symmetric",
        }
    }
}
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";

/// Translates `graph` (static shapes, input `[1, channels, height, width]`) to an ONNX model.
pub fn graph_to_onnx(graph: &Graph, weights: WeightFormat) -> pb::ModelProto {
    let output = graph.output.expect("an exported graph has an output");
    let mut b = Builder {
        weights,
        nodes: Vec::new(),
        initializers: Vec::new(),
        by_content: HashMap::new(),
        opset: OPSET,
        fresh: 0,
    };
    for node in &graph.nodes {
        let inputs: Vec<String> = node.inputs.iter().map(|&v| value_name(graph, v)).collect();
        let outputs: Vec<String> = node.outputs.iter().map(|&v| value_name(graph, v)).collect();
        onnx_ops::translate(&mut b, graph, node, inputs, outputs);
    }
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: b.opset,
        }],
        producer_name: "medseg".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(pb::GraphProto {
            name: "medseg".into(),
            node: b.nodes,
            initializer: b.initializers,
            input: vec![value_info(INPUT_NAME, &graph.shape(graph.input))],
            output: vec![value_info(OUTPUT_NAME, &graph.shape(output))],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The ONNX name of a graph value: the model's input and output keep fixed names.
fn value_name(graph: &Graph, v: ValueId) -> String {
    if v == graph.input {
        INPUT_NAME.to_string()
    } else if Some(v) == graph.output {
        OUTPUT_NAME.to_string()
    } else {
        format!("v{}", v.0)
    }
}

/// Collects nodes and initializers while translating.
pub(super) struct Builder {
    weights: WeightFormat,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    /// Initializers by a hash of their type, shape and bytes: a tensor written twice (the
    /// weights of a convolution a recurrent unit applies several times) is stored once and
    /// read by every node that uses it.
    by_content: HashMap<u64, Vec<usize>>,
    /// Raised by operators that need a newer opset than [`OPSET`].
    pub opset: i64,
    fresh: usize,
}

impl Builder {
    /// Appends a node; its name is `name`, made unique with a counter when reused.
    pub fn node(
        &mut self,
        name: &str,
        op_type: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            input: inputs,
            output: outputs,
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute,
            ..Default::default()
        });
    }

    /// A fresh intermediate value name under `prefix` (for decompositions into several nodes).
    pub fn temp(&mut self, prefix: &str, what: &str) -> String {
        self.fresh += 1;
        format!("{prefix}.{what}_{}", self.fresh)
    }

    /// One node writing a fresh value, returned.
    pub fn step(
        &mut self,
        prefix: &str,
        op_type: &str,
        inputs: Vec<String>,
        attribute: Vec<pb::AttributeProto>,
    ) -> String {
        let out = self.temp(prefix, &op_type.to_ascii_lowercase());
        self.node(&out.clone(), op_type, inputs, vec![out.clone()], attribute);
        out
    }

    /// Adds an initializer named `<prefix>.<suffix>` and returns its name.
    /// An initializer with the same type, shape and bytes as an earlier one is not written
    /// again: the earlier one's name is returned.
    pub fn init(&mut self, prefix: &str, suffix: &str, t: pb::TensorProto) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (t.data_type, &t.dims, &t.raw_data).hash(&mut hasher);
        let same = |i: &&usize| {
            let old = &self.initializers[**i];
            old.data_type == t.data_type && old.dims == t.dims && old.raw_data == t.raw_data
        };
        let key = hasher.finish();
        if let Some(&i) = self.by_content.get(&key).and_then(|c| c.iter().find(same)) {
            return self.initializers[i].name.clone();
        }
        let name = format!("{prefix}.{suffix}");
        self.by_content
            .entry(key)
            .or_default()
            .push(self.initializers.len());
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            ..t
        });
        name
    }

    /// A constant tensor (linear layers' weights, position embeddings): f32, or f16 behind a
    /// Cast when the weights are stored in f16 (int8 needs a channel axis, which a constant
    /// does not name: it stays f32).
    pub fn constant(&mut self, prefix: &str, w: &Weights) -> String {
        // Small constants (shapes, scalars) are not worth a node.
        if self.weights != WeightFormat::F16 || w.data.len() < 1024 {
            return self.init(prefix, "value", weights_tensor(w));
        }
        let half = self.init(prefix, "value_f16", f16_tensor(&w.shape, &w.data));
        self.step(
            prefix,
            "Cast",
            vec![half],
            vec![int("to", pb::tensor_proto::DataType::Float as i64)],
        )
    }

    /// A convolution weight: an f32 initializer, f16 behind a Cast, or int8 + scales behind a
    /// DequantizeLinear.
    pub fn weight(&mut self, prefix: &str, w: &Weights, channel_axis: usize) -> String {
        match self.weights {
            WeightFormat::F32 => self.init(prefix, "weight", weights_tensor(w)),
            WeightFormat::F16 => {
                let half = self.init(prefix, "weight_f16", f16_tensor(&w.shape, &w.data));
                let out = format!("{prefix}.weight");
                self.node(
                    &format!("{prefix}.cast"),
                    "Cast",
                    vec![half],
                    vec![out.clone()],
                    vec![int("to", pb::tensor_proto::DataType::Float as i64)],
                );
                out
            }
            WeightFormat::Int8 => {
                let (q, scales) = quantize_per_channel(w, channel_axis);
                let input = vec![
                    self.init(prefix, "weight_q", i8_tensor(&w.shape, &q)),
                    self.init(prefix, "weight_scale", f32_tensor(&[scales.len()], &scales)),
                    self.init(
                        prefix,
                        "weight_zero",
                        i8_tensor(&[scales.len()], &vec![0; scales.len()]),
                    ),
                ];
                let out = format!("{prefix}.weight");
                self.nodes.push(pb::NodeProto {
                    input,
                    output: vec![out.clone()],
                    name: format!("{prefix}.dequantize"),
                    op_type: "DequantizeLinear".into(),
                    attribute: vec![int("axis", channel_axis as i64)],
                    ..Default::default()
                });
                out
            }
        }
    }
}

pub(super) fn weights_tensor(w: &Weights) -> pb::TensorProto {
    f32_tensor(&w.shape, &w.data)
}

pub(super) fn f32_tensor(shape: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub(super) fn f16_tensor(shape: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float16 as i32,
        raw_data: data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        ..Default::default()
    }
}

pub(super) fn i8_tensor(shape: &[usize], data: &[i8]) -> pb::TensorProto {
    pb::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Int8 as i32,
        raw_data: data.iter().map(|&v| v as u8).collect(),
        ..Default::default()
    }
}

/// Symmetric per-channel int8: scale = max|w| / 127 over each slice of `axis`.
pub fn quantize_per_channel(w: &Weights, axis: usize) -> (Vec<i8>, Vec<f32>) {
    let channels = w.shape[axis];
    let inner: usize = w.shape[axis + 1..].iter().product();
    let channel_of = |i: usize| (i / inner) % channels;
    let mut max = vec![0f32; channels];
    for (i, v) in w.data.iter().enumerate() {
        let c = channel_of(i);
        max[c] = max[c].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scales)
}

fn value_info(name: &str, shape: &[usize]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{Dimension, dimension::Value};
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(Value::DimValue(d as i64)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr(name: &str, ty: pb::attribute_proto::AttributeType) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.to_string(),
        r#type: ty as i32,
        ..Default::default()
    }
}

pub(super) fn ints(name: &str, values: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        ints: values.iter().map(|&v| v as i64).collect(),
        ..attr(name, pb::attribute_proto::AttributeType::Ints)
    }
}

pub(super) fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        i: value,
        ..attr(name, pb::attribute_proto::AttributeType::Int)
    }
}

pub(super) fn string(name: &str, value: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        s: value.as_bytes().to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::String)
    }
}

pub(super) fn float_attr(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        f: value,
        ..attr(name, pb::attribute_proto::AttributeType::Float)
    }
}

pub(super) fn i64_tensor(shape: &[usize], data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub(super) fn ints_i64(name: &str, values: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        ints: values.to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::Ints)
    }
}
