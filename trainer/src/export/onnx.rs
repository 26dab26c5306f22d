//! Writing the export graph as ONNX (opset 13), one small translation per operator.

use medseg_models::graph::{Graph, Op, ValueId, Weights};
use medseg_runtime::onnx::pb;

pub const OPSET: i64 = 13;

/// How convolution weights are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightFormat {
    F32,
    /// Symmetric int8 per output channel + `DequantizeLinear` (weights only; activations stay
    /// f32): 4x smaller files; tract folds the dequantization at load time.
    Int8,
}

impl WeightFormat {
    /// The card's `quantization` value.
    pub fn card_name(self) -> &'static str {
        match self {
            Self::F32 => "none",
            Self::Int8 => "int8-weights-per-channel-symmetric",
        }
    }
}
pub const INPUT_NAME: &str = "input";
pub const OUTPUT_NAME: &str = "logits";

/// Translates `graph` to an ONNX model with a fixed input `[1, channels, height, width]`.
pub fn graph_to_onnx(
    graph: &Graph,
    input_shape: [usize; 4],
    output_channels: usize,
    weights: WeightFormat,
) -> pb::ModelProto {
    let output = graph.output.expect("an exported graph has an output");
    let name_of = |v: ValueId| -> String {
        if v == graph.input {
            INPUT_NAME.to_string()
        } else if v == output {
            OUTPUT_NAME.to_string()
        } else {
            format!("v{}", v.0)
        }
    };
    let mut b = Builder {
        weights,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    for node in &graph.nodes {
        let mut inputs: Vec<String> = node.inputs.iter().map(|&v| name_of(v)).collect();
        let mut attrs = Vec::new();
        let prefix = node.name.as_str();
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
            } => {
                // ConvTranspose weights are [in, out, kh, kw]: output channels on axis 1.
                inputs.push(b.weight(prefix, weight, 1));
                inputs.push(b.init(prefix, "bias", f32_tensor(&[bias.len()], bias)));
                attrs.push(ints("kernel_shape", &weight.shape[2..]));
                attrs.push(ints("strides", stride));
                attrs.push(ints(
                    "pads",
                    &[padding[0], padding[1], padding[0], padding[1]],
                ));
                "ConvTranspose"
            }
            Op::Relu => "Relu",
            Op::Sigmoid => "Sigmoid",
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::MaxPool { kernel, stride } => {
                attrs.push(ints("kernel_shape", kernel));
                attrs.push(ints("strides", stride));
                "MaxPool"
            }
            Op::ConcatChannels => {
                attrs.push(int("axis", 1));
                "Concat"
            }
            Op::ResizeBilinear {
                scale,
                align_corners,
            } => {
                inputs.push(String::new()); // no roi
                let scales = [1.0, 1.0, scale[0] as f32, scale[1] as f32];
                inputs.push(b.init(prefix, "scales", f32_tensor(&[4], &scales)));
                attrs.push(string("mode", "linear"));
                let mode = if *align_corners {
                    "align_corners"
                } else {
                    "half_pixel"
                };
                attrs.push(string("coordinate_transformation_mode", mode));
                "Resize"
            }
        };
        b.nodes.push(pb::NodeProto {
            input: inputs,
            output: vec![name_of(node.output)],
            name: node.name.clone(),
            op_type: op_type.to_string(),
            attribute: attrs,
            ..Default::default()
        });
    }
    let [n, c, h, w] = input_shape;
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "medseg".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(pb::GraphProto {
            name: "medseg".into(),
            node: b.nodes,
            initializer: b.initializers,
            input: vec![value_info(INPUT_NAME, &[n, c, h, w])],
            output: vec![value_info(OUTPUT_NAME, &[n, output_channels, h, w])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Collects nodes and initializers while translating.
struct Builder {
    weights: WeightFormat,
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

impl Builder {
    /// Adds an initializer named `<prefix>.<suffix>` and returns its name.
    fn init(&mut self, prefix: &str, suffix: &str, t: pb::TensorProto) -> String {
        let name = format!("{prefix}.{suffix}");
        self.initializers.push(pb::TensorProto {
            name: name.clone(),
            ..t
        });
        name
    }

    /// A convolution weight: an f32 initializer, or int8 + scales behind a DequantizeLinear.
    fn weight(&mut self, prefix: &str, w: &Weights, channel_axis: usize) -> String {
        match self.weights {
            WeightFormat::F32 => self.init(prefix, "weight", weights_tensor(w)),
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

fn weights_tensor(w: &Weights) -> pb::TensorProto {
    f32_tensor(&w.shape, &w.data)
}

fn f32_tensor(shape: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        dims: shape.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn i8_tensor(shape: &[usize], data: &[i8]) -> pb::TensorProto {
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

fn ints(name: &str, values: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        ints: values.iter().map(|&v| v as i64).collect(),
        ..attr(name, pb::attribute_proto::AttributeType::Ints)
    }
}

fn int(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        i: value,
        ..attr(name, pb::attribute_proto::AttributeType::Int)
    }
}

fn string(name: &str, value: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        s: value.as_bytes().to_vec(),
        ..attr(name, pb::attribute_proto::AttributeType::String)
    }
}
