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
    /// How many of those values were exactly zero (ReLU's output, zero padding).
    pub zeros: u64,
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

    /// TensorRT's entropy calibration, adapted to our asymmetric uint8 activations: every
    /// candidate range [a, b) of histogram bins (holding zero's bin when the tensor is signed)
    /// is scored by the divergence between the distribution clipped there (outliers added to
    /// the end bins) and the same merged into the 8-bit levels that range would get; the
    /// least divergence wins.
    ///
    /// Departs from TensorRT, whose int8 is symmetric: it searches one threshold on |x|.
    /// Folding about zero made both sides share it, so a tensor in [-0.17, 0.9] (a ReLU skip
    /// concatenated with a signed up-sampled one) was clipped to +-0.16, and a bimodal input
    /// (background at -0.5, a bright structure at 1.5) to +-0.4, which changed up to 20% of
    /// a small UNet's pixels. The exact zeros of post-ReLU tensors are left out: zero is
    /// always exact, and that spike, left in, outweighs the whole distribution so that a
    /// threshold clipping nearly everything wins (measured: a UNet's xh Dice 0.977 -> 0.02).
    fn entropy_range(&self) -> (f32, f32) {
        if self.max <= self.min {
            return (self.min, self.max);
        }
        let mut hist: Vec<f64> = self.histogram.iter().map(|&c| c as f64).collect();
        let zero_bin = self.bin_of(0.0);
        if let Some(z) = zero_bin {
            hist[z] -= self.zeros as f64;
        }
        // Candidate edges every STEP bins; a one-sided tensor keeps the side that ends at
        // zero or beyond it unclipped (values between zero and the bins are representable).
        const STEP: usize = 16;
        let starts: Vec<usize> = if self.min >= 0.0 {
            vec![0]
        } else {
            let z = zero_bin.unwrap_or(BINS - 1);
            (0..=z).step_by(STEP).collect()
        };
        let ends: Vec<usize> = if self.max <= 0.0 {
            vec![BINS]
        } else {
            let z = zero_bin.map_or(1, |z| z + 1);
            (z..=BINS).rev().step_by(STEP).collect()
        };
        let mut best = (f64::INFINITY, 0, BINS);
        for &a in &starts {
            for &b in &ends {
                let (lo, hi) = (self.value_at(a), self.value_at(b));
                let span = (hi.max(0.0) - lo.min(0.0)) as f64;
                // The share of the 256 levels the bins [a, b) get (all unless the range
                // had to be extended to reach zero).
                let levels = ((256.0 * (hi - lo) as f64 / span).round() as usize).clamp(1, 256);
                let kl = clipped_divergence(&hist, a, b, levels);
                if kl < best.0 {
                    best = (kl, a, b);
                }
            }
        }
        (self.value_at(best.1), self.value_at(best.2))
    }

    /// The bin holding `v`, if it lies in [min, max].
    fn bin_of(&self, v: f32) -> Option<usize> {
        (self.min..=self.max)
            .contains(&v)
            .then(|| (((v - self.min) as f64 / self.bin_width()) as usize).min(BINS - 1))
    }
}

/// KL(P || Q) where P is `hist[a..b]` with everything outside added to its end bins, and Q is
/// `hist[a..b]` without those tails, merged into `levels` equal groups, each group's mass
/// spread over the bins where P is not empty. Clipping costs through the tails P holds and Q
/// lacks; coarse levels cost through the spreading (the reference algorithm of
/// TensorRT/MXNet, with a clipped side at each end).
fn clipped_divergence(hist: &[f64], a: usize, b: usize, levels: usize) -> f64 {
    let mut p: Vec<f64> = hist[a..b].to_vec();
    let n = p.len();
    if n == 0 {
        return f64::INFINITY;
    }
    p[0] += hist[..a].iter().sum::<f64>();
    p[n - 1] += hist[b..].iter().sum::<f64>();
    let levels = levels.min(n);
    let mut q = vec![0f64; n];
    for g in 0..levels {
        // levels <= n, so every group holds at least one bin.
        let (s, e) = (g * n / levels, (g + 1) * n / levels);
        let mass: f64 = hist[a + s..a + e].iter().sum();
        let nonzero = p[s..e].iter().filter(|&&v| v > 0.0).count();
        for i in s..e {
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
            zeros: 0,
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
                o.zeros += u64::from(a == 0.0);
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
            zeros: 0,
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

    /// Values in [min, max] as an observed histogram.
    fn observed(min: f32, max: f32, values: impl Iterator<Item = f32>) -> Observed {
        let mut o = Observed {
            min,
            max,
            histogram: vec![0; BINS],
            zeros: 0,
        };
        let w = o.bin_width();
        for v in values {
            o.histogram[(((v - min) as f64 / w) as usize).min(BINS - 1)] += 1;
            o.zeros += u64::from(v == 0.0);
        }
        o
    }

    #[test]
    fn entropy_keeps_both_modes_of_a_two_sided_input() {
        // Background near -0.5 and a bright structure near 1.5 (a tenth of the pixels): the
        // symmetric search clipped both at +-0.4.
        let values = (0..20_000).map(|i| {
            let wobble = 0.1 * (i as f32 * 0.37).sin();
            (if i % 10 == 0 { 1.5 } else { -0.5 }) + wobble
        });
        let (lo, hi) = observed(-0.6, 1.6, values).range(Calibration::Entropy);
        assert!(lo <= -0.55 && hi >= 1.55, "entropy [{lo}, {hi}]");
    }

    #[test]
    fn entropy_picks_each_side_of_a_skewed_tensor_on_its_own() {
        // Signed but mostly positive (a ReLU skip concatenated with a signed tensor), with
        // rare far outliers on the positive side only.
        let values = (0..50_000).map(|i| {
            let t = (i as f32 * 0.618).fract();
            match i % 5 {
                0 => -0.15 * t,
                _ if i % 10_000 == 1 => 8.0,
                _ => 0.9 * t,
            }
        });
        let (lo, hi) = observed(-0.15, 8.0, values).range(Calibration::Entropy);
        assert!(lo < -0.1, "the negative side is kept: {lo}");
        assert!(
            (0.85..4.0).contains(&hi),
            "the bulk is kept, the outliers clip: {hi}"
        );
    }

    #[test]
    fn the_exact_zeros_of_a_relu_output_do_not_pull_the_range_in() {
        // 90% exact zeros, the rest spread over (0, 2].
        let values = (0..30_000).map(|i| {
            if i % 10 == 0 {
                2.0 * ((i / 10) as f32 * 0.618).fract().max(1e-3)
            } else {
                0.0
            }
        });
        let (lo, hi) = observed(0.0, 2.0, values).range(Calibration::Entropy);
        assert_eq!(lo, 0.0);
        assert!(hi > 1.8, "entropy {hi}");
    }

    #[test]
    fn ranges_hold_zero() {
        let o = Observed {
            min: 2.0,
            max: 4.0,
            histogram: vec![1; BINS],
            zeros: 0,
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
