//! Export checks itself: the same inputs through Burn and through tract must give the same
//! logits, or the file is not written.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use medseg_models::SegModel;
use medseg_runtime::Segmenter;

use crate::train::validate::forward_batch;

/// Largest allowed `max |burn - tract| / (max logit - min logit)` for a well-conditioned
/// model.
pub const PARITY_TOLERANCE: f64 = 1e-4;
/// The same for int8 weights, on real images: quantization error is expected, a broken graph
/// (wrong axis, wrong scale) gives errors of the order of the range itself.
pub const QUANTIZED_TOLERANCE: f64 = 5e-2;
/// Relative size of the weight noise that stands for f32 rounding: a computed convolution is
/// the exact convolution of weights changed by about sqrt(K) ulps for a sum of K terms
/// (backward error analysis); 2^-20 is that for K of a few hundred.
const ROUNDING_NOISE: f32 = 1.0 / (1u32 << 20) as f32;
/// How far beyond Burn's own reaction to rounding-sized noise tract may be. Two f32 programs
/// that sum in different orders differ by about that reaction; a wrong graph (an axis, a
/// scale, a padding) differs by a good fraction of the logit range whatever the noise.
const SENSITIVITY_FACTOR: f64 = 4.0;

#[derive(Debug, Clone, Copy)]
pub struct Parity {
    pub max_abs_diff: f64,
    pub logit_range: f64,
    pub relative: f64,
    /// `max |burn(x) - burn'(x)| / range` where `burn'` has every weight multiplied by
    /// `1 + noise` of rounding size: how much the model itself amplifies f32 rounding.
    pub sensitivity: f64,
    /// 99.9th percentile of `|burn - tract| / range` over all logits.
    pub p999_relative: f64,
    /// Fraction of pixels whose predicted class (argmax over the classes) differs.
    pub mask_disagreement: f64,
}

impl Parity {
    /// The limit this model is held to: [`PARITY_TOLERANCE`], or a few times the model's own
    /// sensitivity to rounding where that is larger (tract then differs from Burn no more
    /// than Burn differs from itself under rounding-sized noise).
    pub fn limit(&self) -> f64 {
        PARITY_TOLERANCE.max(SENSITIVITY_FACTOR * self.sensitivity)
    }

    /// Every logit within [`Self::limit`]. (The percentile and the mask disagreement are
    /// reported to tell a few outlying logits from a wrong graph; they do not pass a model.)
    pub fn passes(&self) -> bool {
        self.relative <= self.limit()
    }
}

/// Compares logits on `extra` prepared inputs plus `random` seeded random inputs.
pub fn check_parity<B: Backend>(
    model: &SegModel<B>,
    tract: &Segmenter,
    extra: &[Vec<f32>],
    random: usize,
    device: &B::Device,
) -> anyhow::Result<Parity> {
    let spec = &tract.card.input;
    let n = spec.channels * spec.width * spec.height;
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let mut inputs: Vec<Vec<f32>> = extra.to_vec();
    inputs.extend((0..random).map(|_| (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()));
    let jittered = model.clone().map(&mut Jitter { rng: rng.clone() });
    let (mut max_abs, mut lo, mut hi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
    let mut self_abs = 0f64;
    let classes = tract.card.classes.len().max(1);
    let (mut diffs, mut differing, mut pixels) = (Vec::new(), 0usize, 0usize);
    for input in inputs {
        let burn = forward_batch(model, std::slice::from_ref(&input), 1, spec, device);
        let burn_noisy = forward_batch(&jittered, std::slice::from_ref(&input), 1, spec, device);
        for (a, b) in burn.iter().zip(&burn_noisy) {
            self_abs = self_abs.max((*a as f64 - *b as f64).abs());
        }
        let tract_logits = tract.logits(input)?;
        anyhow::ensure!(
            burn.len() == tract_logits.len(),
            "Burn and tract output sizes differ"
        );
        for (a, b) in burn.iter().zip(&tract_logits) {
            let d = (*a as f64 - *b as f64).abs();
            max_abs = max_abs.max(d);
            diffs.push(d);
            lo = lo.min(*a as f64);
            hi = hi.max(*a as f64);
        }
        let plane = burn.len() / classes;
        let class_at = |logits: &[f32], p: usize| {
            (0..classes)
                .max_by(|&i, &j| logits[i * plane + p].total_cmp(&logits[j * plane + p]))
                .unwrap_or(0)
        };
        pixels += plane;
        differing += (0..plane)
            .filter(|&p| class_at(&burn, p) != class_at(&tract_logits, p))
            .count();
    }
    let range = (hi - lo).max(f64::EPSILON);
    diffs.sort_by(f64::total_cmp);
    let p999 = diffs
        .get((diffs.len() as f64 * 0.999) as usize)
        .or(diffs.last())
        .copied()
        .unwrap_or(0.0);
    Ok(Parity {
        max_abs_diff: max_abs,
        logit_range: range,
        relative: max_abs / range,
        sensitivity: self_abs / range,
        p999_relative: p999 / range,
        mask_disagreement: differing as f64 / pixels.max(1) as f64,
    })
}

/// Multiplies every float parameter by `1 + u`, `u` uniform in `±ROUNDING_NOISE`.
struct Jitter {
    rng: ChaCha8Rng,
}

impl<B: Backend> ModuleMapper<B> for Jitter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let factors: Vec<f32> = (0..shape.num_elements())
            .map(|_| 1.0 + self.rng.random_range(-ROUNDING_NOISE..ROUNDING_NOISE))
            .collect();
        let factors = Tensor::from_data(TensorData::new(factors, shape), &tensor.device());
        Param::from_mapped_value(id, tensor * factors, mapper)
    }
}
