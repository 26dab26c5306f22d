//! Writing a segmentation's outputs: mask PNG, overlay PNG, JSON report.
//! Each file is written to a temporary name and renamed, so an interrupted run never leaves
//! a half-written file under a final name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::DynamicImage;
use serde::Serialize;

use medseg_runtime::Segmentation;
use medseg_runtime::postprocess::{ClassStats, class_stats, overlay};

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
) -> anyhow::Result<ImageReport> {
    let pred = &seg.prediction;
    let report = ImageReport {
        input: input.display().to_string(),
        width: pred.mask.width,
        height: pred.mask.height,
        classes: class_stats(pred, class_names),
        mean_confidence: pred.confidence.iter().sum::<f32>() / pred.confidence.len() as f32,
        inference_ms: seg.inference_ms,
    };
    let mask_path = out.join(format!("{stem}_mask.png"));
    atomic_write(&mask_path, |tmp| Ok(pred.mask.to_gray().save_with_format(tmp, image::ImageFormat::Png)?))?;
    let overlay_path = out.join(format!("{stem}_overlay.png"));
    let picture = overlay(img, &pred.mask);
    atomic_write(&overlay_path, |tmp| Ok(picture.save_with_format(tmp, image::ImageFormat::Png)?))?;
    let json = serde_json::to_vec_pretty(&report)?;
    atomic_write(&out.join(format!("{stem}.json")), |tmp| Ok(std::fs::write(tmp, &json)?))?;
    Ok(report)
}

fn atomic_write(path: &Path, write: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let tmp: PathBuf = path.with_extension("partial");
    write(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}
