//! ONNX protobuf access shared by the exporter (trainer) and the loader (runtime), so both
//! sides use one definition of the format.

pub use tract_onnx::pb;

use prost::Message;

use crate::card::{CARD_KEY, InputSpec, ModelCard};
use crate::error::RuntimeError;

/// Serializes a model to bytes.
pub fn encode(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}

/// Parses ONNX bytes; `source` names the file in errors.
pub fn decode(bytes: &[u8], source: &str) -> Result<pb::ModelProto, RuntimeError> {
    let proto = pb::ModelProto::decode(bytes).map_err(|e| RuntimeError::BadModel {
        path: source.to_string(),
        reason: format!("not a readable ONNX protobuf ({e}); the file may be truncated"),
    })?;
    if proto.graph.is_none() {
        return Err(RuntimeError::BadModel {
            path: source.to_string(),
            reason: "ONNX file has no graph".into(),
        });
    }
    Ok(proto)
}

/// The model card stored in the model's metadata.
pub fn read_card(proto: &pb::ModelProto, source: &str) -> Result<ModelCard, RuntimeError> {
    let entry = proto
        .metadata_props
        .iter()
        .find(|e| e.key == CARD_KEY)
        .ok_or_else(|| RuntimeError::BadModel {
            path: source.to_string(),
            reason: format!(
                "no model card (metadata key '{CARD_KEY}'); export models with `medseg-train export`"
            ),
        })?;
    let card: ModelCard =
        serde_json::from_str(&entry.value).map_err(|e| RuntimeError::BadModel {
            path: source.to_string(),
            reason: format!("model card is not valid JSON for this runtime: {e}"),
        })?;
    card.check().map_err(|reason| RuntimeError::BadModel {
        path: source.to_string(),
        reason: format!("model card: {reason}"),
    })?;
    Ok(card)
}

/// sha256 over every initializer's raw data, in graph order: the identity of the weights.
pub fn weights_sha256(proto: &pb::ModelProto) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    if let Some(g) = &proto.graph {
        for t in &g.initializer {
            h.update(t.name.as_bytes());
            h.update(&t.raw_data);
            for f in &t.float_data {
                h.update(f.to_le_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// The graph of `proto` as tract types it, its input fixed to `input`'s shape for one image
/// (what the engine optimizes and what a package's NNEF form is written from).
pub fn typed_model(
    proto: &pb::ModelProto,
    input: &InputSpec,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TypedModel> {
    use tract_onnx::prelude::*;
    check_wiring(proto)?;
    tract_onnx::onnx()
        .model_for_proto_model(proto)
        .and_then(|m| m.with_input_fact(0, f32::fact(input.batch_of_one()).into()))
        .and_then(|m| m.into_typed())
}

/// Every tensor a node reads and every graph output must be a graph input, an initializer or
/// some node's output. tract-onnx 0.23.9 panics on a graph output no node produces (a map
/// indexed by name); this says which name is missing instead.
fn check_wiring(proto: &pb::ModelProto) -> tract_onnx::prelude::TractResult<()> {
    let Some(graph) = &proto.graph else {
        anyhow::bail!("the file holds no graph");
    };
    let mut known: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for node in &graph.node {
        known.extend(node.output.iter().map(String::as_str));
    }
    for node in &graph.node {
        if let Some(missing) = node
            .input
            .iter()
            .find(|i| !i.is_empty() && !known.contains(i.as_str()))
        {
            anyhow::bail!(
                "node {} ({}) reads '{missing}', which nothing in the graph produces",
                node.name,
                node.op_type
            );
        }
    }
    if let Some(missing) = graph
        .output
        .iter()
        .find(|o| !known.contains(o.name.as_str()))
    {
        anyhow::bail!("the graph output '{}' is produced by no node", missing.name);
    }
    Ok(())
}

/// Stores (or replaces) the card in the model's metadata.
pub fn write_card(proto: &mut pb::ModelProto, card: &ModelCard) {
    proto.metadata_props.retain(|e| e.key != CARD_KEY);
    proto.metadata_props.push(pb::StringStringEntryProto {
        key: CARD_KEY.to_string(),
        value: serde_json::to_string(card).expect("a model card serializes"),
    });
}
