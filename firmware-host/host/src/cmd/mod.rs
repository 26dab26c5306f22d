pub mod bench;
pub mod ports;
pub mod rig;
pub mod screenshot;
pub mod serve;

use std::path::Path;

use anyhow::Context;
use medseg_runtime::Segmenter;

/// The model of `--model`, or the embedded demo model.
pub fn load_model(path: Option<&Path>) -> anyhow::Result<Segmenter> {
    match path {
        Some(p) => Segmenter::from_file(p)
            .with_context(|| format!("cannot load the model {}", p.display())),
        None => Segmenter::from_bytes(medseg_runtime::demo::MODEL, "embedded demo model")
            .context("the embedded demo model does not load"),
    }
}

/// Name of class 1 from the model card (what the screen calls the measured area).
pub fn label(model: &Segmenter) -> String {
    model
        .card
        .classes
        .get(1)
        .cloned()
        .unwrap_or_else(|| "class 1".into())
}
