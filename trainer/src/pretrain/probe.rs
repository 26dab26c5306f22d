//! Did the features learn something? A k-nearest-neighbour probe on the encoder's globally
//! pooled features (cosine similarity, majority of `k`) on a held-out labelled task, for the
//! pretrained encoder and for the same architecture's random initialisation.
//!
//! The task: is the slice's labelled area (all foreground classes) above the median of the
//! reference split's? Balanced by construction (chance = 50%), and it needs the anatomy's
//! size, not the image's brightness, which the views' colour jitter teaches the features to
//! ignore. The reference bank is the data set's train split, the queries its test split
//! (different patients).

use burn::tensor::Tensor;
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use serde::Serialize;

use medseg_models::SegModel;

use crate::data::{LoadedSplit, evenly_spaced, load_split};
use crate::pretrain::head::{global_pool, l2_normalize};
use crate::train::RunDir;

#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    pub task: String,
    pub k: usize,
    pub layer: String,
    pub bank_images: usize,
    pub query_images: usize,
    /// Share of queries whose true answer is "above" (the accuracies are balanced: chance is
    /// 0.5 whatever this is).
    pub query_share_above: f64,
    pub pretrained_accuracy: f64,
    pub random_init_accuracy: f64,
}

impl ProbeResult {
    /// One line for the terminal.
    pub fn summary(&self) -> String {
        format!(
            "probe ({}; {}-NN on the {} tap, {} reference / {} query images): balanced accuracy \
             pretrained {:.3}, random init {:.3} (chance 0.5; {:.0}% of queries above)",
            self.task,
            self.k,
            self.layer,
            self.bank_images,
            self.query_images,
            self.pretrained_accuracy,
            self.random_init_accuracy,
            100.0 * self.query_share_above
        )
    }
}

/// Foreground share of each mask, and whether it lies above `threshold`.
fn area(mask: &[u8]) -> f64 {
    mask.iter().filter(|&&v| v > 0).count() as f64 / mask.len().max(1) as f64
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Unit-norm pooled features `[N, C]` of the tap `layer` (inference mode).
pub fn features<B: Backend>(
    model: &SegModel<B>,
    split: &LoadedSplit,
    shape: [usize; 3],
    layer: &str,
    batch: usize,
    device: &B::Device,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let [c, h, w] = shape;
    let mut out = Vec::with_capacity(split.inputs.len());
    for chunk in split.inputs.chunks(batch.max(1)) {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(chunk.concat(), [chunk.len(), c, h, w]),
            device,
        );
        let (_, taps) = model.forward_taps(x);
        let f = super::pick_tap(taps, layer)?;
        let z = l2_normalize(global_pool(f));
        let d = z.dims()[1];
        let values: Vec<f32> = z.into_data().to_vec().expect("f32 features");
        out.extend(values.chunks(d).map(|r| r.to_vec()));
    }
    Ok(out)
}

/// Balanced accuracy (the mean of the two answers' recalls, so always guessing one answer
/// scores 0.5 however unbalanced the queries) of a cosine k-NN vote (ties: the nearest
/// neighbour's answer).
pub fn knn_accuracy(
    bank: &[Vec<f32>],
    bank_labels: &[bool],
    queries: &[Vec<f32>],
    query_labels: &[bool],
    k: usize,
) -> f64 {
    let mut right = [0usize; 2];
    let mut total = [0usize; 2];
    for (q, &truth) in queries.iter().zip(query_labels) {
        let mut sims: Vec<(f32, bool)> = bank
            .iter()
            .zip(bank_labels)
            .map(|(b, &l)| (b.iter().zip(q).map(|(x, y)| x * y).sum::<f32>(), l))
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = &sims[..k.min(sims.len())];
        let yes = top.iter().filter(|s| s.1).count();
        let vote = match (2 * yes).cmp(&top.len()) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => top[0].1,
        };
        total[usize::from(truth)] += 1;
        right[usize::from(truth)] += usize::from(vote == truth);
    }
    let recalls: Vec<f64> = (0..2)
        .filter(|&c| total[c] > 0)
        .map(|c| right[c] as f64 / total[c] as f64)
        .collect();
    recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
}

/// The probe for a pretrained and a random-init model of the same architecture.
#[allow(clippy::too_many_arguments)]
pub fn run_probe<B: Backend>(
    pretrained: &SegModel<B>,
    random: &SegModel<B>,
    bank: &LoadedSplit,
    queries: &LoadedSplit,
    shape: [usize; 3],
    layer: &str,
    k: usize,
    device: &B::Device,
) -> anyhow::Result<ProbeResult> {
    anyhow::ensure!(
        !bank.inputs.is_empty() && !queries.inputs.is_empty(),
        "the probe needs labelled images in both the reference and the query split"
    );
    let bank_area: Vec<f64> = bank.targets.iter().map(|m| area(m)).collect();
    let threshold = median(&bank_area);
    let bank_labels: Vec<bool> = bank_area.iter().map(|&a| a > threshold).collect();
    let query_labels: Vec<bool> = queries
        .targets
        .iter()
        .map(|m| area(m) > threshold)
        .collect();
    let accuracy = |model: &SegModel<B>| -> anyhow::Result<f64> {
        let fb = features(model, bank, shape, layer, 8, device)?;
        let fq = features(model, queries, shape, layer, 8, device)?;
        Ok(knn_accuracy(&fb, &bank_labels, &fq, &query_labels, k))
    };
    let above = query_labels.iter().filter(|&&l| l).count() as f64 / query_labels.len() as f64;
    Ok(ProbeResult {
        task: format!(
            "labelled area above the reference split's median ({:.4} of the image)",
            threshold
        ),
        k,
        layer: layer.to_string(),
        bank_images: bank.inputs.len(),
        query_images: queries.inputs.len(),
        query_share_above: above,
        pretrained_accuracy: accuracy(pretrained)?,
        random_init_accuracy: accuracy(random)?,
    })
}

/// Where a probe of a finished run takes its labelled task from.
#[derive(Debug, Clone)]
pub struct ProbeData<'a> {
    pub data: &'a std::path::Path,
    /// Domain of the data set (default: its first with a train split).
    pub domain: Option<&'a str>,
    /// At most this many reference and this many query images, spread evenly over each split
    /// so every patient still counts (0 = all).
    pub max_images: usize,
    pub k: usize,
}

/// Probes the best checkpoint of the run in `dir` at tap `layer` against a random
/// initialisation of the same architecture (the run's seed), on the data set's train split
/// (reference) and test split (queries) at the run's input size.
pub fn probe_run<B: Backend>(
    dir: &RunDir,
    layer: &str,
    probe: &ProbeData<'_>,
    device: &B::Device,
) -> anyhow::Result<ProbeResult> {
    use anyhow::Context;
    let cfg = dir.config()?;
    let ds = dir.matching_dataset(&cfg, probe.data)?;
    let domain = probe
        .domain
        .map_or_else(|| ds.default_domain().to_string(), str::to_string);
    let input = &cfg.input;
    let load = |split: &str| -> anyhow::Result<LoadedSplit> {
        let samples = evenly_spaced(ds.split(Some(&domain), split)?, probe.max_images);
        load_split(
            &samples,
            ds.classes.len(),
            input,
            false,
            &format!("probe {split}"),
        )
    };
    let (bank, queries) = (load("train")?, load("test")?);
    let pretrained = dir.load_model::<B>("best", device)?;
    B::seed(device, cfg.seed);
    let random = cfg.architecture.init::<B>(device)?;
    run_probe(
        &pretrained,
        &random,
        &bank,
        &queries,
        [input.channels, input.height, input.width],
        layer,
        probe.k,
        device,
    )
    .with_context(|| {
        format!(
            "probe of {} on {}",
            dir.path.display(),
            probe.data.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knn_votes_by_cosine_neighbours() {
        let bank = vec![
            vec![1.0, 0.0],
            vec![0.9, 0.1],
            vec![0.0, 1.0],
            vec![0.1, 0.9],
        ];
        let labels = [true, true, false, false];
        let queries = vec![vec![0.95, 0.05], vec![0.05, 0.95]];
        assert_eq!(
            knn_accuracy(&bank, &labels, &queries, &[true, false], 1),
            1.0
        );
        // Both queries "false": the first is voted wrong, the second right.
        assert_eq!(
            knn_accuracy(&bank, &labels, &queries, &[false, false], 3),
            0.5
        );
        // Balanced: one right answer of the rare class counts as much as the common class.
        let q3 = vec![vec![0.95, 0.05], vec![0.05, 0.95], vec![0.0, 1.0]];
        let acc = knn_accuracy(&bank, &labels, &q3, &[false, false, true], 1);
        assert!((acc - 0.25).abs() < 1e-9, "{acc}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
