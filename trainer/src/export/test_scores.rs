//! The test scores an exported model carries in its card (written by `export` with
//! evaluation on): what benches read back instead of scoring a model twice.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use medseg_runtime::Segmenter;

/// One domain's test split scored by one trained model (the exported ONNX file in tract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainScore {
    pub domain: String,
    pub images: usize,
    /// Foreground Dice pooled over the split's pixels.
    pub dice: f64,
    /// Foreground IoU pooled over the split's pixels.
    pub iou: f64,
}

/// Every domain's test scores as the card of the ONNX file at `onnx` holds them, for the
/// first foreground class.
pub fn from_card(onnx: &Path) -> anyhow::Result<Vec<DomainScore>> {
    let model = Segmenter::from_file(onnx)?;
    let card = &model.card;
    let fg = card
        .classes
        .get(1)
        .with_context(|| format!("{}: the card names no foreground class", onnx.display()))?;
    let mut out = Vec::new();
    for (split, m) in &card.metrics {
        let Some(domain) = split.strip_suffix("/test") else {
            continue;
        };
        let get = |k: &str| m.get(&format!("{k}_{fg}")).copied();
        out.push(DomainScore {
            domain: domain.to_string(),
            images: m.get("images").copied().unwrap_or(0.0) as usize,
            // A split where neither truth nor prediction has the class has no Dice: count it
            // as 0 rather than leave the table's cell out.
            dice: get("dice").unwrap_or(0.0),
            iou: get("iou").unwrap_or(0.0),
        });
    }
    Ok(out)
}
