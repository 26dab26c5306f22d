//! Knowing when not to answer: signals that an input is one the model should not be trusted
//! on, and a gate whose thresholds come from the validation split (written into the model card
//! by `medseg-train export`), so that a photo the model has never seen the like of is reported
//! as "unreliable" rather than with a confident wrong area.
//!
//! Signals, each cheap next to the inference itself except the second (one more inference):
//! - prediction entropy: the mean normalised entropy of the class probabilities (0: certain
//!   everywhere, 1: uniform), which rises where the model meets what it was not trained on;
//! - flip disagreement: the share of pixels whose foreground / background answer changes when
//!   the image is mirrored (and the answer mirrored back): a model that understood the image
//!   answers the same way. Reported, not tested: measured on the phantom it flagged most good
//!   answers on another scanner's slices (see [`QualityGate::flip_disagreement_max`]);
//! - sharpness: the mean absolute Laplacian of the image on the model's grid (blur lowers it);
//! - saturation: the share of the model's grid at full brightness (glare, over-exposure).
//!
//! Not here (yet): the spatial transformer's transform size (the exported graph does not output
//! it) and "no screen found" (needs the screen-photo rectification).

use serde::{Deserialize, Serialize};

use crate::card::InputSpec;
use crate::preprocess::mirror_rows;

/// What one image looked like to the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Signals {
    pub entropy: f64,
    pub flip_disagreement: f64,
    pub sharpness: f64,
    pub saturation: f64,
}

/// Thresholds beyond which an image is flagged, from the validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityGate {
    pub entropy_max: f64,
    /// Recorded for reference, not tested: on the phantom it flagged 38-81% of a baseline
    /// UNet's good answers on another scanner's slices (which mirror a little differently)
    /// while entropy alone already caught its failures on phone photos (docs/RUNTIME.md).
    pub flip_disagreement_max: f64,
    pub sharpness_min: f64,
    pub saturation_max: f64,
    /// How they were chosen: the split, its image count and the quantile taken.
    pub calibration: GateCalibration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateCalibration {
    pub split: String,
    pub images: usize,
    /// Each "max" threshold is this quantile of the validation values times `1 + margin`,
    /// each "min" one the `1 - quantile` quantile divided by it.
    pub quantile: f64,
    /// How far beyond the validation images' spread an image may go: a scanner or contrast
    /// the model still reads well moves the signals a little, a failure moves them far.
    #[serde(default)]
    pub margin: f64,
}

/// The gate's answer for one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub reliable: bool,
    /// One sentence per failed test, naming the signal, its value and the threshold.
    pub reasons: Vec<String>,
    pub signals: Signals,
}

/// Brightness (on 0..1) from which a pixel counts as saturated.
const SATURATED: f32 = 254.5 / 255.0;

/// A saturated share below this is a few bright pixels, not glare: the lowest saturation
/// threshold (the validation images of a CT phantom have none at all).
const SATURATION_FLOOR: f64 = 1e-3;

/// The signals of one image: its model input `[channels, h, w]` (normalised as `spec` says),
/// its logits `[classes, h, w]`, and the logits of the mirrored input (not mirrored back).
pub fn signals(
    input: &[f32],
    spec: &InputSpec,
    logits: &[f32],
    mirrored_logits: &[f32],
    classes: usize,
) -> Signals {
    let (w, h) = (spec.width, spec.height);
    let plane = w * h;
    let mut back = mirrored_logits.to_vec();
    mirror_rows(&mut back, w);
    // A pixel is foreground when a class other than the background (0) has the largest
    // logit, the first one winning ties (as the masks are made).
    let foreground = |l: &[f32]| -> Vec<bool> {
        (0..plane)
            .map(|p| (1..classes).any(|c| l[c * plane + p] > l[p]))
            .collect()
    };
    let (a, b) = (foreground(logits), foreground(&back));
    // A share of the image, not 1 - Dice: a slice with a few pixels of foreground would swing
    // 1 - Dice from 0 to 1 on one pixel (a validation image did: the threshold became 1.5).
    let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let flip_disagreement = changed as f64 / plane.max(1) as f64;

    let norm = (classes as f64).ln().max(f64::MIN_POSITIVE);
    let mut entropy = 0.0;
    for p in 0..plane {
        let max = (0..classes)
            .map(|c| logits[c * plane + p])
            .fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = (0..classes)
            .map(|c| f64::from(logits[c * plane + p] - max).exp())
            .collect();
        let sum: f64 = exps.iter().sum();
        entropy -= exps
            .iter()
            .map(|e| e / sum)
            .filter(|q| *q > 0.0)
            .map(|q| q * q.ln())
            .sum::<f64>();
    }
    let entropy = entropy / plane.max(1) as f64 / norm;

    // The picture on the model's grid, back on 0..1 (channels averaged).
    let gray: Vec<f32> = (0..plane)
        .map(|p| {
            (0..spec.channels)
                .map(|c| input[c * plane + p] * spec.std + spec.mean)
                .sum::<f32>()
                / spec.channels as f32
        })
        .collect();
    let mut laplacian = 0.0;
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let g = |yy: usize, xx: usize| f64::from(gray[yy * w + xx]);
            laplacian +=
                (4.0 * g(y, x) - g(y - 1, x) - g(y + 1, x) - g(y, x - 1) - g(y, x + 1)).abs();
        }
    }
    let interior = (h.saturating_sub(2) * w.saturating_sub(2)).max(1);
    let saturated = gray.iter().filter(|v| **v >= SATURATED).count();
    Signals {
        entropy,
        flip_disagreement,
        sharpness: laplacian / interior as f64,
        saturation: saturated as f64 / plane.max(1) as f64,
    }
}

impl QualityGate {
    /// Thresholds `margin` beyond the `quantile` of the validation images' `signals`.
    pub fn calibrate(signals: &[Signals], split: &str, quantile: f64, margin: f64) -> Option<Self> {
        if signals.is_empty() {
            return None;
        }
        let pick = |f: fn(&Signals) -> f64, q: f64| {
            let mut v: Vec<f64> = signals.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            let i = ((v.len() - 1) as f64 * q).round() as usize;
            v[i.min(v.len() - 1)]
        };
        let wider = 1.0 + margin.max(0.0);
        Some(Self {
            entropy_max: pick(|s| s.entropy, quantile) * wider,
            flip_disagreement_max: pick(|s| s.flip_disagreement, quantile) * wider,
            sharpness_min: pick(|s| s.sharpness, 1.0 - quantile) / wider,
            saturation_max: (pick(|s| s.saturation, quantile) * wider).max(SATURATION_FLOOR),
            calibration: GateCalibration {
                split: split.to_string(),
                images: signals.len(),
                quantile,
                margin,
            },
        })
    }

    /// The verdict on an image with these signals.
    pub fn judge(&self, s: Signals) -> Verdict {
        let mut reasons = Vec::new();
        let mut above = |name: &str, value: f64, limit: f64| {
            if value > limit {
                reasons.push(format!("{name} {value:.3} above {limit:.3}"));
            }
        };
        above("prediction entropy", s.entropy, self.entropy_max);
        above("saturated share", s.saturation, self.saturation_max);
        if s.sharpness < self.sharpness_min {
            reasons.push(format!(
                "sharpness {:.4} below {:.4} (blurred?)",
                s.sharpness, self.sharpness_min
            ));
        }
        Verdict {
            reliable: reasons.is_empty(),
            reasons,
            signals: s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(side: usize) -> InputSpec {
        InputSpec {
            channels: 1,
            height: side,
            width: side,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours: false,
        }
    }

    #[test]
    fn a_confident_symmetric_answer_has_low_entropy_and_no_disagreement() {
        let side = 8;
        let plane = side * side;
        // Foreground where x is in 2..6 (symmetric under mirroring), confident logits.
        let mut logits = vec![0f32; 2 * plane];
        for p in 0..plane {
            let fg = (2..6).contains(&(p % side));
            logits[p] = if fg { -8.0 } else { 8.0 };
            logits[plane + p] = -logits[p];
        }
        let input = vec![0f32; plane];
        let s = signals(&input, &spec(side), &logits, &logits, 2);
        assert!(s.entropy < 1e-3, "{s:?}");
        assert_eq!(s.flip_disagreement, 0.0);
        assert_eq!(s.sharpness, 0.0);
        assert_eq!(s.saturation, 0.0);
        // An answer that moves when the image is mirrored disagrees with itself.
        let mut shifted = vec![0f32; 2 * plane];
        for p in 0..plane {
            let fg = (0..3).contains(&(p % side));
            shifted[p] = if fg { -8.0 } else { 8.0 };
            shifted[plane + p] = -shifted[p];
        }
        let moved = signals(&input, &spec(side), &shifted, &shifted, 2);
        // Columns 0..3 against 5..8: 6 of 8 columns change.
        assert!((moved.flip_disagreement - 0.75).abs() < 1e-9, "{moved:?}");
        // Uniform probabilities are the most uncertain.
        let flat = signals(
            &input,
            &spec(side),
            &vec![0.0; 2 * plane],
            &vec![0.0; 2 * plane],
            2,
        );
        assert!((flat.entropy - 1.0).abs() < 1e-9, "{flat:?}");
    }

    #[test]
    fn the_gate_passes_its_calibration_quantile_and_names_what_fails() {
        let vals: Vec<Signals> = (0..101)
            .map(|i| Signals {
                entropy: i as f64 / 1000.0,
                flip_disagreement: 1.0,
                sharpness: 0.1 + i as f64 / 100.0,
                saturation: 0.0,
            })
            .collect();
        let gate = QualityGate::calibrate(&vals, "default/val", 0.95, 0.0).unwrap();
        let passed = vals.iter().filter(|s| gate.judge(**s).reliable).count();
        assert!(
            (85..=95).contains(&passed),
            "{passed} of 101 passed: {gate:?}"
        );
        // A margin lets (nearly) every validation image through.
        let wide = QualityGate::calibrate(&vals, "default/val", 0.95, 0.5).unwrap();
        let passed_wide = vals.iter().filter(|s| wide.judge(**s).reliable).count();
        assert!(passed_wide >= 99, "{passed_wide} of 101 passed: {wide:?}");
        assert!(wide.saturation_max >= SATURATION_FLOOR);
        let v = gate.judge(Signals {
            entropy: 0.5,
            flip_disagreement: 0.0,
            sharpness: 0.0,
            saturation: 0.0,
        });
        assert!(!v.reliable);
        assert!(
            v.reasons.iter().any(|r| r.contains("prediction entropy")),
            "{v:?}"
        );
        assert!(v.reasons.iter().any(|r| r.contains("sharpness")), "{v:?}");
    }
}
