//! The model-zoo benchmark (`medseg-train zoo-bench`): every architecture trained on one data
//! set with one equal budget (the same number of training images, every width scaled by the
//! same factor), exported, scored in tract on every test domain, and timed. This module holds
//! a model's result row and the measurements that are not training; the command runs the
//! bench, [`report`] writes docs/MODEL_ZOO.md, [`figure`] the Dice-against-cost picture and
//! [`jmedseg`] the numbers JMedSeg published, for comparison.

pub mod figure;
pub mod jmedseg;
pub mod report;
pub mod timing;

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use medseg_runtime::Segmenter;

use crate::export::test_scores::DomainScore;

/// The budget every model of one bench trains with; a reused row must have had the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub epochs: usize,
    pub max_steps_per_epoch: Option<usize>,
    pub batch_size: usize,
    pub image_size: usize,
    pub crop_size: usize,
    pub width_scale: f64,
    pub lr: f64,
    pub loss: String,
    pub seed: u64,
}

/// One trained, exported, scored and timed architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZooRow {
    pub name: String,
    pub family: String,
    /// The trained configuration's options (widths after scaling).
    pub options: serde_json::Map<String, serde_json::Value>,
    pub budget: Budget,
    /// Parameters of the trained (scaled) configuration, counted from its export graph.
    pub parameters: usize,
    /// Of the same configuration for one 1-channel image at the latency side.
    pub gflops: f64,
    pub train_images: usize,
    /// Median over epochs of training images per second (forward, backward, optimizer step).
    pub train_images_per_second: f64,
    pub train_seconds: f64,
    /// Peak resident memory while training (None where the system does not say, or when
    /// the run was trained by an earlier invocation).
    pub peak_rss_bytes: Option<u64>,
    /// Median tract latency of one image (logits only, no decoding), in ms.
    pub latency_ms: f64,
    /// Input side the latency and GFLOPs are for.
    pub latency_side: usize,
    pub best_val_dice: f64,
    pub scores: Vec<DomainScore>,
    pub onnx: String,
}

impl ZooRow {
    pub fn score(&self, domain: &str) -> Option<&DomainScore> {
        self.scores.iter().find(|s| s.domain == domain)
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        read_row(path)
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_row(self, path)
    }
}

/// A bench row from its JSON file.
pub fn read_row<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// Written atomically, so an interrupted bench never leaves half a row.
pub fn write_row<T: Serialize>(row: &T, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(row)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Median latency in ms of `repeats` runs of the model on one image of its input size, after
/// two warm-up runs (tract allocates its buffers on the first).
pub fn median_latency_ms(model: &Segmenter, repeats: usize) -> anyhow::Result<f64> {
    let spec = &model.card.input;
    let input = vec![0.5f32; spec.channels * spec.height * spec.width];
    for _ in 0..2 {
        model.logits(input.clone())?;
    }
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let started = Instant::now();
        model.logits(input.clone())?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut times))
}

/// The median of some values (the mean of the middle two for an even count); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(name: &str, gflops: f64, latency_ms: f64, dice: &[(&str, f64)]) -> ZooRow {
        ZooRow {
            name: name.into(),
            family: "unet".into(),
            options: Default::default(),
            budget: Budget {
                epochs: 2,
                max_steps_per_epoch: Some(100),
                batch_size: 8,
                image_size: 256,
                crop_size: 128,
                width_scale: 0.25,
                lr: 2e-3,
                loss: "0.5ce+0.5dice".into(),
                seed: 42,
            },
            parameters: 1000,
            gflops,
            train_images: 1600,
            train_images_per_second: 5.0,
            train_seconds: 320.0,
            peak_rss_bytes: Some(2 << 30),
            latency_ms,
            latency_side: 256,
            best_val_dice: 0.9,
            scores: dice
                .iter()
                .map(|&(domain, dice)| DomainScore {
                    domain: domain.into(),
                    images: 100,
                    dice,
                    iou: dice / (2.0 - dice),
                })
                .collect(),
            onnx: format!("runs/zoo/{name}.onnx"),
        }
    }

    #[test]
    fn rows_round_trip_and_medians_are_medians() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unet.json");
        let r = row("unet", 3.0, 40.0, &[("xh", 0.9)]);
        r.write(&path).unwrap();
        assert_eq!(ZooRow::read(&path).unwrap(), r);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        let err = ZooRow::read(&dir.path().join("none.json")).unwrap_err();
        assert!(format!("{err:#}").contains("none.json"), "{err:#}");
    }
}
