//! The f32 graph rewritten into ONNX's QDQ form: every quantized convolution reads its input
//! through QuantizeLinear -> DequantizeLinear (uint8, per tensor), its weights as int8 per
//! output channel and its bias as int32 behind DequantizeLinear, and writes its output
//! through another uint8 pair. onnxruntime fuses each such unit into an integer convolution;
//! tract loads it too (what it then runs: docs/QUANTIZATION.md).
//!
//! A ReLU right after a convolution is dropped when its output's zero point is 0: the
//! quantizer then clamps at 0 already, so the graph means the same, and onnxruntime sees
//! the DequantizeLinear -> Conv -> QuantizeLinear unit it fuses.

use std::collections::{BTreeMap, HashMap, HashSet};

use medseg_models::graph::Weights;
use medseg_runtime::onnx::pb;
use pb::tensor_proto::DataType;

use crate::export::onnx::{f32_tensor, i8_tensor, int, quantize_per_channel};

/// A convolution the rewrite can quantize: weights from an initializer.
#[derive(Debug, Clone)]
pub struct ConvSite {
    /// The node's name (what reports and `--keep-float` use).
    pub name: String,
    node: usize,
    pub input: String,
    weight: String,
    bias: Option<String>,
    output: String,
    /// The ReLU node that alone reads the output, if any.
    relu: Option<usize>,
    /// The tensor the rest of the graph reads: the ReLU's output, or the convolution's.
    pub activation: String,
    /// The activation is a graph output (logits): it stays f32.
    pub is_graph_output: bool,
}

/// uint8 quantization of one activation tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationQuant {
    pub scale: f32,
    pub zero_point: u8,
}

impl ActivationQuant {
    /// The affine uint8 map of `[lo, hi]` (which holds 0, so 0 is exact).
    pub fn from_range(lo: f32, hi: f32) -> Self {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        if hi - lo <= f32::EPSILON {
            return Self {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = (hi - lo) / 255.0;
        Self {
            scale,
            zero_point: (-lo / scale).round().clamp(0.0, 255.0) as u8,
        }
    }
}

/// Every convolution of `g` whose weights are an initializer, in graph order.
pub fn conv_sites(g: &pb::GraphProto) -> Vec<ConvSite> {
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: HashSet<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    let readers = |tensor: &str| -> Vec<usize> {
        g.node
            .iter()
            .enumerate()
            .filter(|(_, n)| n.input.iter().any(|i| i == tensor))
            .map(|(i, _)| i)
            .collect()
    };
    let mut sites = Vec::new();
    for (i, n) in g.node.iter().enumerate() {
        if n.op_type != "Conv" || n.input.len() < 2 || !inits.contains(n.input[1].as_str()) {
            continue;
        }
        let output = n.output[0].clone();
        let r = readers(&output);
        let relu = match r.as_slice() {
            [j] if g.node[*j].op_type == "Relu" && !outputs.contains(output.as_str()) => Some(*j),
            _ => None,
        };
        let activation = relu.map_or_else(|| output.clone(), |j| g.node[j].output[0].clone());
        sites.push(ConvSite {
            name: n.name.clone(),
            node: i,
            input: n.input[0].clone(),
            weight: n.input[1].clone(),
            bias: n
                .input
                .get(2)
                .filter(|b| !b.is_empty() && inits.contains(b.as_str()))
                .cloned(),
            output,
            relu,
            is_graph_output: outputs.contains(activation.as_str()),
            activation,
        });
    }
    sites
}

/// The tensors whose ranges the sites need: each one's input and (unless it is a graph
/// output) its activation, once each, in a fixed order.
pub fn tensors_to_calibrate(sites: &[ConvSite]) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for s in sites {
        seen.entry(s.input.clone()).or_insert(());
        if !s.is_graph_output {
            seen.entry(s.activation.clone()).or_insert(());
        }
    }
    seen.into_keys().collect()
}

/// `proto` with `sites` quantized (and, with `deconv_weights`, every transposed
/// convolution's weights stored as int8); `quant` holds every tensor of
/// [`tensors_to_calibrate`]`(sites)`.
pub fn rewrite(
    proto: &pb::ModelProto,
    sites: &[ConvSite],
    quant: &HashMap<String, ActivationQuant>,
    deconv_weights: bool,
) -> anyhow::Result<pb::ModelProto> {
    let mut proto = proto.clone();
    let g = proto.graph.as_mut().expect("an exported model has a graph");
    let inits: HashMap<String, pb::TensorProto> = g
        .initializer
        .iter()
        .map(|t| (t.name.clone(), t.clone()))
        .collect();
    let q = |t: &str| {
        quant
            .get(t)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("no calibrated range for tensor {t}"))
    };

    // Which activations are quantized, and where each pair's QuantizeLinear reads from.
    let mut quantized: BTreeMap<String, (String, ActivationQuant)> = BTreeMap::new();
    let mut dropped_relus = HashSet::new();
    for s in sites {
        quantized.insert(s.input.clone(), (s.input.clone(), q(&s.input)?));
        if s.is_graph_output {
            continue;
        }
        let aq = q(&s.activation)?;
        let source = match s.relu {
            Some(j) if aq.zero_point == 0 => {
                dropped_relus.insert(j);
                s.output.clone()
            }
            _ => s.activation.clone(),
        };
        quantized.insert(s.activation.clone(), (source, aq));
    }
    // An activation another site reads as its input keeps the source its producer chose.
    for s in sites {
        if let Some(j) = s.relu
            && dropped_relus.contains(&j)
            && let Some(entry) = quantized.get_mut(&s.activation)
        {
            entry.0 = s.output.clone();
        }
    }

    let mut new_inits: Vec<pb::TensorProto> = Vec::new();
    let mut head: Vec<pb::NodeProto> = Vec::new();
    // tensor -> the Q/DQ nodes to emit right after the node producing its source.
    let mut pairs: HashMap<String, Vec<pb::NodeProto>> = HashMap::new();
    let dq_name = |t: &str| format!("{t}.dq");
    for (tensor, (source, aq)) in &quantized {
        let scale = format!("{tensor}.q_scale");
        let zero = format!("{tensor}.q_zero");
        new_inits.push(scalar_f32(&scale, aq.scale));
        new_inits.push(scalar_u8(&zero, aq.zero_point));
        let qt = format!("{tensor}.q");
        let nodes = vec![
            node(
                &format!("{tensor}.quantize"),
                "QuantizeLinear",
                vec![source.clone(), scale.clone(), zero.clone()],
                vec![qt.clone()],
                vec![],
            ),
            node(
                &format!("{tensor}.dequantize"),
                "DequantizeLinear",
                vec![qt, scale, zero],
                vec![dq_name(tensor)],
                vec![],
            ),
        ];
        pairs.entry(source.clone()).or_default().extend(nodes);
    }

    // Weights and biases.
    let mut conv_inputs: HashMap<usize, Vec<String>> = HashMap::new();
    for s in sites {
        let w = inits
            .get(&s.weight)
            .ok_or_else(|| anyhow::anyhow!("{}: weight {} not found", s.name, s.weight))?;
        let (w_dq, wscale) = int8_weight(&s.name, &f32_data(w)?, 0, &mut new_inits, &mut head);
        let mut inputs = vec![dq_name(&s.input), w_dq];
        if let Some(b) = &s.bias {
            let bias = f32_data(&inits[b])?;
            let sx = quantized[&s.input].1.scale;
            let scales: Vec<f32> = wscale.iter().map(|sw| sx * sw).collect();
            let bq: Vec<i32> = bias
                .data
                .iter()
                .zip(&scales)
                .map(|(b, s)| (b / s).round().clamp(i32::MIN as f32, i32::MAX as f32) as i32)
                .collect();
            let b_dq = per_channel_dequantize(
                &s.name,
                "bias",
                [tensor_i32("", &bq), tensor_i32("", &vec![0; scales.len()])],
                &scales,
                0,
                &mut new_inits,
                &mut head,
            );
            inputs.push(b_dq);
        }
        conv_inputs.insert(s.node, inputs);
    }

    // Transposed convolutions keep f32 arithmetic (onnxruntime's QDQ fusion does not cover
    // them everywhere) but store int8 weights per output channel (axis 1 of their
    // [in, out, kh, kw] weights): they hold a tenth of a UNet's parameters.
    let mut deconv_inputs: HashMap<usize, String> = HashMap::new();
    for (i, n) in g.node.iter().enumerate() {
        if !deconv_weights || n.op_type != "ConvTranspose" || n.input.len() < 2 {
            continue;
        }
        let Some(w) = inits.get(&n.input[1]) else {
            continue;
        };
        let (w_dq, _) = int8_weight(&n.name, &f32_data(w)?, 1, &mut new_inits, &mut head);
        deconv_inputs.insert(i, w_dq);
    }

    // The node list: weight dequantization first, pairs after their sources, every reader
    // of a quantized tensor rewired to its dequantized copy.
    let graph_inputs: Vec<String> = g.input.iter().map(|i| i.name.clone()).collect();
    let mut nodes = head;
    for i in &graph_inputs {
        nodes.extend(pairs.remove(i).unwrap_or_default());
    }
    for (i, mut n) in std::mem::take(&mut g.node).into_iter().enumerate() {
        if dropped_relus.contains(&i) {
            continue;
        }
        if let Some(inputs) = conv_inputs.remove(&i) {
            n.input = inputs;
        } else {
            if let Some(w) = deconv_inputs.remove(&i) {
                n.input[1] = w;
            }
            for input in &mut n.input {
                if quantized.contains_key(input.as_str()) {
                    *input = dq_name(input);
                }
            }
        }
        let produced = n.output.clone();
        nodes.push(n);
        for o in produced {
            nodes.extend(pairs.remove(&o).unwrap_or_default());
        }
    }
    anyhow::ensure!(
        pairs.is_empty(),
        "quantized tensors with no producer: {:?}",
        pairs.keys().collect::<Vec<_>>()
    );
    g.node = nodes;

    // Initializers nothing reads any more (the f32 weights) are dropped.
    g.initializer.extend(new_inits);
    let read: HashSet<String> = g.node.iter().flat_map(|n| n.input.clone()).collect();
    g.initializer.retain(|t| read.contains(&t.name));
    Ok(proto)
}

/// `w` as int8 per slice of `axis` (its output channels) behind a DequantizeLinear under
/// `prefix`: the initializers go to `inits`, the node to `nodes`. Returns the dequantized
/// tensor's name and the per-channel scales.
fn int8_weight(
    prefix: &str,
    w: &Weights,
    axis: usize,
    inits: &mut Vec<pb::TensorProto>,
    nodes: &mut Vec<pb::NodeProto>,
) -> (String, Vec<f32>) {
    let (q, scales) = quantize_per_channel(w, axis);
    let zero = i8_tensor(&[scales.len()], &vec![0; scales.len()]);
    let dq = per_channel_dequantize(
        prefix,
        "weight",
        [i8_tensor(&w.shape, &q), zero],
        &scales,
        axis,
        inits,
        nodes,
    );
    (dq, scales)
}

/// The quantized tensor and zero points `[q, zero]` behind a DequantizeLinear with one scale
/// per slice of `axis`, named `{prefix}.{kind}_q`, `_scale`, `_zero` and `_dq`: the
/// initializers go to `inits`, the node to `nodes`. Returns the dequantized tensor's name.
fn per_channel_dequantize(
    prefix: &str,
    kind: &str,
    [q, zero]: [pb::TensorProto; 2],
    scales: &[f32],
    axis: usize,
    inits: &mut Vec<pb::TensorProto>,
    nodes: &mut Vec<pb::NodeProto>,
) -> String {
    let names = [
        format!("{prefix}.{kind}_q"),
        format!("{prefix}.{kind}_scale"),
        format!("{prefix}.{kind}_zero"),
    ];
    inits.push(named(&names[0], q));
    inits.push(named(&names[1], f32_tensor(&[scales.len()], scales)));
    inits.push(named(&names[2], zero));
    let dq = format!("{prefix}.{kind}_dq");
    nodes.push(node(
        &format!("{prefix}.{kind}_dequantize"),
        "DequantizeLinear",
        names.to_vec(),
        vec![dq.clone()],
        vec![int("axis", axis as i64)],
    ));
    dq
}

fn f32_data(t: &pb::TensorProto) -> anyhow::Result<Weights> {
    anyhow::ensure!(
        t.data_type == DataType::Float as i32,
        "initializer {} is not f32 (export the f32 graph before quantizing)",
        t.name
    );
    let data = if t.raw_data.is_empty() {
        t.float_data.clone()
    } else {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    Ok(Weights {
        shape: t.dims.iter().map(|&d| d as usize).collect(),
        data,
    })
}

fn node(
    name: &str,
    op: &str,
    input: Vec<String>,
    output: Vec<String>,
    attribute: Vec<pb::AttributeProto>,
) -> pb::NodeProto {
    pb::NodeProto {
        name: name.into(),
        op_type: op.into(),
        input,
        output,
        attribute,
        ..Default::default()
    }
}

fn named(name: &str, t: pb::TensorProto) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        ..t
    }
}

fn raw(name: &str, dims: &[usize], ty: DataType, raw_data: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: ty as i32,
        raw_data,
        ..Default::default()
    }
}

fn scalar_f32(name: &str, v: f32) -> pb::TensorProto {
    raw(name, &[], DataType::Float, v.to_le_bytes().to_vec())
}

fn scalar_u8(name: &str, v: u8) -> pb::TensorProto {
    raw(name, &[], DataType::Uint8, vec![v])
}

fn tensor_i32(name: &str, v: &[i32]) -> pb::TensorProto {
    raw(
        name,
        &[v.len()],
        DataType::Int32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_exact_and_the_range_maps_onto_0_255() {
        let q = ActivationQuant::from_range(-1.0, 3.0);
        assert!((q.scale - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(q.zero_point, 64);
        let relu = ActivationQuant::from_range(0.0, 6.0);
        assert_eq!(relu.zero_point, 0);
        // A tensor that was always zero still gets a usable scale.
        assert_eq!(ActivationQuant::from_range(0.0, 0.0).scale, 1.0);
    }

    #[test]
    fn per_channel_weights_use_each_channels_own_scale() {
        let w = Weights {
            shape: vec![2, 2],
            data: vec![0.5, -1.0, 10.0, 5.0],
        };
        let (q, s) = quantize_per_channel(&w, 0);
        assert_eq!(q, vec![64, -127, 127, 64]);
        assert!((s[0] - 1.0 / 127.0).abs() < 1e-7 && (s[1] - 10.0 / 127.0).abs() < 1e-7);
    }
}
