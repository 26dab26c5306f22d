//! Export checks itself: the same inputs through Burn and through tract must give the same
//! logits, or the file is not written.

use burn::tensor::backend::Backend;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use medseg_models::SegModel;
use medseg_runtime::Segmenter;

use crate::train::validate::forward_batch;

/// Largest allowed `max |burn - tract| / (max logit - min logit)`.
pub const PARITY_TOLERANCE: f64 = 1e-4;
/// The same for int8 weights, on real images: quantization error is expected, a broken graph
/// (wrong axis, wrong scale) gives errors of the order of the range itself.
pub const QUANTIZED_TOLERANCE: f64 = 5e-2;

#[derive(Debug, Clone, Copy)]
pub struct Parity {
    pub max_abs_diff: f64,
    pub logit_range: f64,
    pub relative: f64,
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
    let (mut max_abs, mut lo, mut hi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
    for input in inputs {
        let burn = forward_batch(model, std::slice::from_ref(&input), 1, spec, device);
        let tract_logits = tract.logits(input)?;
        anyhow::ensure!(
            burn.len() == tract_logits.len(),
            "Burn and tract output sizes differ"
        );
        for (a, b) in burn.iter().zip(&tract_logits) {
            max_abs = max_abs.max((*a as f64 - *b as f64).abs());
            lo = lo.min(*a as f64);
            hi = hi.max(*a as f64);
        }
    }
    let range = (hi - lo).max(f64::EPSILON);
    Ok(Parity {
        max_abs_diff: max_abs,
        logit_range: range,
        relative: max_abs / range,
    })
}
