//! Writing a segmentation's outputs: mask PNG, overlay PNG, JSON report.
//! Each file is written to a temporary name and renamed, so an interrupted run never leaves
//! a half-written file under a final name.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use serde::Serialize;

use crate::Segmentation;
use crate::error::RuntimeError;
use crate::postprocess::{ClassStats, class_stats, overlay};

#[derive(Serialize)]
pub struct ImageReport {
    pub input: String,
    pub width: usize,
    pub height: usize,
    pub classes: Vec<ClassStats>,
    /// Mean softmax confidence over the whole image.
    pub mean_confidence: f32,
    pub inference_ms: f64,
}

/// Writes `<stem>_mask.png`, `<stem>_overlay.png`, `<stem>.json` into `out`.
pub fn write_outputs(
    out: &Path,
    stem: &str,
    input: &Path,
    img: &DynamicImage,
    seg: &Segmentation,
    class_names: &[String],
) -> Result<ImageReport, RuntimeError> {
    let pred = &seg.prediction;
    let report = ImageReport {
        input: input.display().to_string(),
        width: pred.mask.width,
        height: pred.mask.height,
        classes: class_stats(pred, class_names),
        mean_confidence: pred.mean_confidence(),
        inference_ms: seg.inference_ms,
    };
    let mask_path = out.join(format!("{stem}_mask.png"));
    let encode = |e: image::ImageError| std::io::Error::other(e.to_string());
    atomic_write(&mask_path, |tmp| {
        pred.mask
            .to_gray()
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(encode)
    })?;
    let overlay_path = out.join(format!("{stem}_overlay.png"));
    let picture = overlay(img, &pred.mask);
    atomic_write(&overlay_path, |tmp| {
        picture
            .save_with_format(tmp, image::ImageFormat::Png)
            .map_err(encode)
    })?;
    let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    atomic_write(&out.join(format!("{stem}.json")), |tmp| {
        std::fs::write(tmp, &json)
    })?;
    Ok(report)
}

fn atomic_write(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), RuntimeError> {
    let tmp: PathBuf = path.with_extension("partial");
    write(&tmp).map_err(|e| RuntimeError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::io(path, e))
}
