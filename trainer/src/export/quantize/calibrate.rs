//! Activation ranges for static int8 quantization: what each tensor holds over the
//! calibration images, and the range each method picks from it.
//!
//! Two passes over the images in tract (the f32 graph with the calibrated tensors added as
//! outputs): the first finds each tensor's extremes, the second fills a fixed histogram
//! between them. Keeping the values themselves would take gigabytes (a UNet has ~20 tensors
//! of a million values per image).

use anyhow::Context;
use tract_onnx::prelude::*;

use medseg_runtime::onnx::pb;

/// How an activation's range is chosen from what calibration saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Calibration {
    /// The smallest and largest value seen: nothing clips, rare outliers cost resolution.
    MinMax,
    /// The 0.001th and 99.999th percentiles (onnxruntime's default): the rarest values clip.
    Percentile,
    /// The clipping threshold whose 8-bit histogram is closest to the full one in
    /// Kullback-Leibler divergence (TensorRT's entropy calibration).
    Entropy,
}

const BINS: usize = 2048;
/// onnxruntime's default. At 99.99 a phone-augmented UNet lost 0.052 phone-capture Dice to
/// int8 where onnxruntime's quantizer, on the same images at 99.999, lost 0.019: phone
/// captures drive activations into the tail clean calibration slices rarely reach.
const PERCENTILE: f64 = 0.99999;

/// What calibration saw of one tensor.
#[derive(Debug, Clone)]
pub struct Observed {
    pub min: f32,
    pub max: f32,
    /// Counts over [min, max] in [`BINS`] equal bins.
    pub histogram: Vec<u64>,
}

impl Observed {
    fn bin_width(&self) -> f64 {
        ((self.max - self.min) as f64 / BINS as f64).max(f64::MIN_POSITIVE)
    }

    fn value_at(&self, bin_edge: usize) -> f32 {
        (self.min as f64 + bin_edge as f64 * self.bin_width()) as f32
    }

    /// The range `method` picks, always holding 0 (zero must be exact: padding, ReLU).
    pub fn range(&self, method: Calibration) -> (f32, f32) {
        let (lo, hi) = match method {
            Calibration::MinMax => (self.min, self.max),
            Calibration::Percentile => {
                let total: u64 = self.histogram.iter().sum();
                let below = |q: f64| {
                    let target = (q * total as f64).ceil() as u64;
                    let mut seen = 0;
                    for (i, &c) in self.histogram.iter().enumerate() {
                        seen += c;
                        if seen >= target {
                            return i + 1;
                        }
                    }
                    BINS
                };
                let lo = if self.min < 0.0 {
                    self.value_at(below(1.0 - PERCENTILE) - 1)
                } else {
                    self.min
                };
                (lo, self.value_at(below(PERCENTILE)))
            }
            Calibration::Entropy => self.entropy_range(),
        };
        (lo.min(0.0), hi.max(0.0))
    }

    /// TensorRT's entropy calibration on the histogram folded about zero (|x|): for every
    /// candidate threshold, the distribution clipped there (outliers added to the last bin)
    /// against the same merged into the 8-bit levels the range would have; the threshold with
    /// the least divergence wins. One-sided tensors (after ReLU) get all 256 levels, signed
    /// ones 128 per side.
    fn entropy_range(&self) -> (f32, f32) {
        let absmax = self.min.abs().max(self.max.abs());
        if absmax == 0.0 {
            return (0.0, 0.0);
        }
        let mut folded = self.fold_about_zero(absmax);
        let levels = if self.min < 0.0 { 128 } else { 256 };
        if self.min >= 0.0 {
            // After a ReLU most values are exactly 0, which the range always holds exactly;
            // left in, that spike outweighs the whole distribution and the divergence is
            // smallest for a threshold that clips nearly everything (measured: a UNet's xh
            // Dice fell from 0.977 to 0.02).
            folded[0] = 0.0;
        }
        let mut best = (f64::INFINITY, BINS);
        for end in (levels..=BINS).step_by(16) {
            let kl = clipped_divergence(&folded, end, levels);
            if kl < best.0 {
                best = (kl, end);
            }
        }
        let t = absmax * best.1 as f32 / BINS as f32;
        (self.min.max(-t), self.max.min(t))
    }

    /// The histogram of |x| over [0, absmax] in [`BINS`] bins.
    fn fold_about_zero(&self, absmax: f32) -> Vec<f64> {
        let mut out = vec![0f64; BINS];
        let w = self.bin_width();
        for (i, &c) in self.histogram.iter().enumerate() {
            let centre = (self.min as f64 + (i as f64 + 0.5) * w).abs();
            let j = ((centre / absmax as f64) * BINS as f64) as usize;
            out[j.min(BINS - 1)] += c as f64;
        }
        out
    }
}

/// KL(P || Q) where P is `hist[..end]` with everything beyond added to its last bin, and Q is
/// `hist[..end]` without that tail, merged into `levels` equal groups, each group's mass spread
/// over the bins where P is not empty. Clipping costs through the tail P holds and Q lacks;
/// coarse levels cost through the spreading (the reference algorithm of TensorRT/MXNet).
fn clipped_divergence(hist: &[f64], end: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = hist[..end].to_vec();
    p[end - 1] += hist[end..].iter().sum::<f64>();
    let mut q = vec![0f64; end];
    for g in 0..levels {
        // end >= levels, so every group holds at least one bin.
        let (a, b) = (g * end / levels, (g + 1) * end / levels);
        let mass: f64 = hist[a..b].iter().sum();
        let nonzero = p[a..b].iter().filter(|&&v| v > 0.0).count();
        for i in a..b {
            if p[i] > 0.0 {
                q[i] = mass / nonzero as f64;
            }
        }
    }
    let (pt, qt) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if pt == 0.0 {
        return 0.0;
    }
    // A bin P holds and Q lost entirely costs as if Q held a tiny share there.
    const FLOOR: f64 = 1e-9;
    p.iter()
        .zip(&q)
        .filter(|(pi, _)| **pi > 0.0)
        .map(|(pi, qi)| {
            let pi = pi / pt;
            let qi = if qt > 0.0 {
                (qi / qt).max(FLOOR)
            } else {
                FLOOR
            };
            pi * (pi / qi).ln()
        })
        .sum()
}

/// Runs `proto` in tract on every input with `tensors` as its outputs, twice (extremes, then
/// histograms), and returns what each tensor held.
pub fn observe(
    proto: &pb::ModelProto,
    shape: [usize; 4],
    tensors: &[String],
    inputs: &[Vec<f32>],
) -> anyhow::Result<Vec<Observed>> {
    anyhow::ensure!(!inputs.is_empty(), "no calibration images");
    let plan = super::tract_plan(proto, shape, Some(tensors))
        .context("preparing the f32 graph for calibration in tract")?;
    let run = |x: &Vec<f32>| -> anyhow::Result<TVec<TValue>> {
        let t = Tensor::from_shape(&shape, x)?;
        plan.run(tvec!(t.into()))
    };
    let mut seen: Vec<Observed> = tensors
        .iter()
        .map(|_| Observed {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            histogram: vec![0; BINS],
        })
        .collect();
    for x in inputs {
        for (o, v) in seen.iter_mut().zip(run(x)?) {
            for &a in v.to_plain_array_view::<f32>()?.iter() {
                o.min = o.min.min(a);
                o.max = o.max.max(a);
            }
        }
    }
    for x in inputs {
        for (o, v) in seen.iter_mut().zip(run(x)?) {
            let w = o.bin_width();
            for &a in v.to_plain_array_view::<f32>()?.iter() {
                let i = ((a - o.min) as f64 / w) as usize;
                o.histogram[i.min(BINS - 1)] += 1;
            }
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ReLU-like tensor: most values small, a few far outliers.
    fn skewed() -> Observed {
        let mut histogram = vec![0u64; BINS];
        for (i, h) in histogram.iter_mut().enumerate().take(200) {
            *h = 10_000 - 40 * i as u64;
        }
        histogram[BINS - 1] = 3;
        Observed {
            min: 0.0,
            max: 100.0,
            histogram,
        }
    }

    #[test]
    fn min_max_keeps_everything_and_the_others_clip_rare_outliers() {
        let o = skewed();
        assert_eq!(o.range(Calibration::MinMax), (0.0, 100.0));
        let (lo, hi) = o.range(Calibration::Percentile);
        assert_eq!(lo, 0.0);
        assert!((8.0..11.0).contains(&hi), "percentile {hi}");
        let (lo, hi) = o.range(Calibration::Entropy);
        assert_eq!(lo, 0.0);
        // The mass sits below 100 * 200 / 2048 = 9.8: the threshold must keep it and drop
        // the outliers at 100.
        assert!((9.0..60.0).contains(&hi), "entropy {hi}");
    }

    #[test]
    fn ranges_hold_zero() {
        let o = Observed {
            min: 2.0,
            max: 4.0,
            histogram: vec![1; BINS],
        };
        for m in [
            Calibration::MinMax,
            Calibration::Percentile,
            Calibration::Entropy,
        ] {
            let (lo, hi) = o.range(m);
            assert!(lo == 0.0 && hi > 3.9, "{m:?}: {lo} {hi}");
        }
    }
}
