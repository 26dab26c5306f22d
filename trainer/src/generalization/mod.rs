//! The generalization benchmark (`medseg-train bench-generalization`): one architecture
//! trained five ways with the same budget and seeds (baseline, +augmentation, +STN, +SSL and
//! SAS, all three), each scored on every domain's test split, the phone-capture domain
//! included. This module holds what the benchmark is (the methods, the per-run results and
//! their mean and spread over seeds); the command runs it, [`report`] writes the Markdown and
//! [`figure`] the side-by-side picture on a real phone photo.

pub mod figure;
pub mod report;
pub mod transforms;

use serde::{Deserialize, Serialize};

/// One way of training the same architecture. JMedSeg's Fig. 1 compares the same five.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// The plain model with the default training augmentation (flips, small intensity jitter).
    Baseline,
    /// The augmentation pipeline of SAS.
    Aug,
    /// A spatial transformer in front of the model.
    Stn,
    /// Initialised from contrastive self-supervised pre-training.
    Ssl,
    /// All three.
    Sas,
    /// Ablation: SAS without the self-supervised start (augmentation + STN).
    AugStn,
    /// Ablation: SAS without the spatial transformer (augmentation + SSL).
    AugSsl,
}

impl Method {
    /// The five of JMedSeg's figure: what the benchmark runs by default.
    pub const ALL: [Method; 5] = [
        Method::Baseline,
        Method::Aug,
        Method::Stn,
        Method::Ssl,
        Method::Sas,
    ];

    /// Every method, in the order tables list them: the five, then SAS less one of its parts
    /// (`--methods aug-stn,aug-ssl`), which tell which part helps or hurts the whole.
    pub const EVERY: [Method; 7] = [
        Method::Baseline,
        Method::Aug,
        Method::Stn,
        Method::Ssl,
        Method::Sas,
        Method::AugStn,
        Method::AugSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Baseline => "baseline",
            Method::Aug => "aug",
            Method::Stn => "stn",
            Method::Ssl => "ssl",
            Method::Sas => "sas",
            Method::AugStn => "aug-stn",
            Method::AugSsl => "aug-ssl",
        }
    }

    /// The label a reader sees in tables and figures.
    pub fn label(self) -> &'static str {
        match self {
            Method::Baseline => "UNet baseline",
            Method::Aug => "+ augmentation",
            Method::Stn => "+ STN",
            Method::Ssl => "+ SSL",
            Method::Sas => "SAS (all three)",
            Method::AugStn => "SAS without SSL (aug + STN)",
            Method::AugSsl => "SAS without STN (aug + SSL)",
        }
    }

    pub fn augments(self) -> bool {
        matches!(
            self,
            Method::Aug | Method::Sas | Method::AugStn | Method::AugSsl
        )
    }

    pub fn transforms(self) -> bool {
        matches!(self, Method::Stn | Method::Sas | Method::AugStn)
    }

    pub fn pretrains(self) -> bool {
        matches!(self, Method::Ssl | Method::Sas | Method::AugSsl)
    }
}

pub use crate::export::test_scores::DomainScore;

/// One trained and scored model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub method: Method,
    pub seed: u64,
    pub best_val_dice: f64,
    pub train_seconds: f64,
    /// Seconds of self-supervised pre-training this model started from (0 without).
    pub pretrain_seconds: f64,
    pub onnx: String,
    pub scores: Vec<DomainScore>,
}

impl RunResult {
    pub fn dice(&self, domain: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|s| s.domain == domain)
            .map(|s| s.dice)
    }
}

/// Mean and sample standard deviation (n - 1) of some values; the deviation is `None` for
/// fewer than two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Some(Self { mean, std, n })
    }
}

/// The spread over seeds of `method`'s Dice on `domain`.
pub fn dice_spread(results: &[RunResult], method: Method, domain: &str) -> Option<Spread> {
    let values: Vec<f64> = results
        .iter()
        .filter(|r| r.method == method)
        .filter_map(|r| r.dice(domain))
        .collect();
    Spread::of(&values)
}

/// Every domain scored by any run, in first-seen order.
pub fn domains(results: &[RunResult]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in results.iter().flat_map(|r| &r.scores) {
        if !out.contains(&s.domain) {
            out.push(s.domain.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_the_mean_and_sample_deviation() {
        let s = Spread::of(&[0.8, 0.9, 1.0]).unwrap();
        assert!((s.mean - 0.9).abs() < 1e-12);
        assert!((s.std.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(Spread::of(&[0.5]).unwrap().std, None);
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn methods_combine_as_sas_says() {
        let parts = |m: Method| (m.augments(), m.transforms(), m.pretrains());
        assert_eq!(parts(Method::Baseline), (false, false, false));
        assert_eq!(parts(Method::Aug), (true, false, false));
        assert_eq!(parts(Method::Stn), (false, true, false));
        assert_eq!(parts(Method::Ssl), (false, false, true));
        assert_eq!(parts(Method::Sas), (true, true, true));
        assert_eq!(parts(Method::AugStn), (true, true, false));
        assert_eq!(parts(Method::AugSsl), (true, false, true));
        // Run folders and flags use the same names.
        use clap::ValueEnum;
        for m in Method::EVERY {
            let flag = m.to_possible_value().unwrap();
            assert_eq!(flag.get_name(), m.name());
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
    }

    #[test]
    fn dice_spread_takes_one_method_and_domain() {
        let run = |method, seed, dice| RunResult {
            method,
            seed,
            best_val_dice: 0.9,
            train_seconds: 1.0,
            pretrain_seconds: 0.0,
            onnx: String::new(),
            scores: vec![DomainScore {
                domain: "phone".into(),
                images: 3,
                dice,
                iou: dice,
            }],
        };
        let results = [
            run(Method::Sas, 1, 0.8),
            run(Method::Sas, 2, 0.6),
            run(Method::Baseline, 1, 0.1),
        ];
        let s = dice_spread(&results, Method::Sas, "phone").unwrap();
        assert!((s.mean - 0.7).abs() < 1e-12 && s.n == 2);
        assert!(dice_spread(&results, Method::Stn, "phone").is_none());
        assert!(dice_spread(&results, Method::Sas, "xh").is_none());
        assert_eq!(domains(&results), vec!["phone".to_string()]);
    }
}
