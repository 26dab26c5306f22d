//! Export checks itself: the same inputs through Burn and through tract must give the same
//! logits, or the file is not written.

use anyhow::Context;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::transform::ModelTransform;

use medseg_models::SegModel;
use medseg_runtime::Segmenter;
use medseg_runtime::onnx::pb;

use crate::train::validate::forward_batch;

/// Largest allowed `max |burn - tract| / (max logit - min logit)` for a well-conditioned
/// model.
pub const PARITY_TOLERANCE: f64 = 1e-4;
/// The same for int8 weights, on real images: quantization error is expected, a broken graph
/// (wrong axis, wrong scale) gives errors of the order of the range itself.
pub const QUANTIZED_TOLERANCE: f64 = 5e-2;
/// Largest allowed relative difference when Burn and tract both compute in f64: the fixed
/// f32 tolerance, held where the f32 logits differ by more than it, so that a wrong graph
/// cannot hide behind an ill-conditioned model. A wrong graph differs by a good part of the
/// range; a right one by ~1e-8, or up to ~1e-5 where the few ops in [`F32_ONLY_OPS`] still
/// round in f32 and the model amplifies it (r2unet behind a spatial transformer).
pub const F64_TOLERANCE: f64 = PARITY_TOLERANCE;
/// tract 0.23's ops without an f64 kernel (element-wise ones, and Resize, which reads its
/// scales as f32): the f64 check runs them in f32, with casts around them.
const F32_ONLY_OPS: [&str; 8] = [
    "Resize",
    "Sigmoid",
    "Erf",
    "GeluExact",
    "GeluApproximate",
    "Silu",
    "LeakyRelu",
    "HardSwish",
];
/// Largest share of pixels classed differently by Burn and tract in f32 for a model whose
/// graph agrees in f64 but whose logits jump under rounding (see [`Parity::passes`]).
pub const MASK_TOLERANCE: f64 = 1e-3;
/// Relative size of the noise that stands for f32 rounding: a computed convolution is the
/// exact convolution of weights changed by about sqrt(K) ulps for a sum of K terms (backward
/// error analysis); 2^-20 is that for K of a few hundred. Rounding differs from one output
/// position to the next, which weight noise alone does not show (equal windows stay equal
/// and max-pooling ties stay ties), so the input gets noise of the same size too.
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
    /// `max |burn(x) - burn'(x')| / range` where `burn'` has every weight and `x'` every
    /// input value multiplied by `1 + noise` of rounding size: how much the model itself
    /// amplifies f32 rounding.
    pub sensitivity: f64,
    /// 99.9th percentile of `|burn - tract| / range` over all logits.
    pub p999_relative: f64,
    /// Fraction of pixels whose predicted class (argmax over the classes) differs.
    pub mask_disagreement: f64,
    /// [`check_f64`]'s difference, measured where `relative` is above [`PARITY_TOLERANCE`].
    pub f64_relative: Option<f64>,
}

impl Parity {
    /// The limit this model is held to: [`PARITY_TOLERANCE`], or a few times the model's own
    /// sensitivity to rounding where that is larger (tract then differs from Burn no more
    /// than Burn differs from itself under rounding-sized noise).
    pub fn limit(&self) -> f64 {
        PARITY_TOLERANCE.max(SENSITIVITY_FACTOR * self.sensitivity)
    }

    /// What export holds a file to. Logits within [`PARITY_TOLERANCE`] pass at once.
    /// Otherwise the graph must compute the same function in f64 (within [`F64_TOLERANCE`]:
    /// a wrong graph cannot pass), and its f32 output must either stay within
    /// [`Self::limit`] or class at most [`MASK_TOLERANCE`] of the pixels differently. The
    /// last case is a model whose output jumps under rounding (SegNet's unpooling on flat
    /// regions, where each window is a tie that any two f32 programs may break differently):
    /// an estimate of that sensitivity from a few noise draws is not reliable, the f64
    /// agreement and the predictions are.
    pub fn passes(&self) -> bool {
        if self.relative <= PARITY_TOLERANCE {
            return true;
        }
        let same_function = self.f64_relative.is_some_and(|d| d <= F64_TOLERANCE);
        same_function && (self.relative <= self.limit() || self.mask_disagreement <= MASK_TOLERANCE)
    }
}

/// `extra` prepared inputs plus `random` seeded random ones of `n` values each.
fn parity_inputs(extra: &[Vec<f32>], random: usize, n: usize) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let mut inputs: Vec<Vec<f32>> = extra.to_vec();
    inputs.extend((0..random).map(|_| (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()));
    inputs
}

/// [`check_parity`], then [`check_f64`] on the same inputs where the f32 logits differ by
/// more than [`PARITY_TOLERANCE`]: what export holds a file to ([`Parity::passes`]).
pub fn check_export_parity<B: Backend>(
    model: &SegModel<B>,
    tract: &Segmenter,
    proto: &pb::ModelProto,
    extra: &[Vec<f32>],
    random: usize,
    device: &B::Device,
) -> anyhow::Result<Parity> {
    let mut parity = check_parity(model, tract, extra, random, device)?;
    if parity.relative > PARITY_TOLERANCE {
        let spec = &tract.card.input;
        let shape = spec.batch_of_one();
        let inputs = parity_inputs(extra, random, shape.iter().product());
        parity.f64_relative = Some(check_f64(model, proto, shape, &inputs, device)?);
    }
    Ok(parity)
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
    let inputs = parity_inputs(extra, random, n);
    let jittered = model.clone().map(&mut Jitter {
        rng: ChaCha8Rng::seed_from_u64(0x7133),
    });
    let mut input_rng = ChaCha8Rng::seed_from_u64(0x0F32);
    let (mut max_abs, mut lo, mut hi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
    let mut self_abs = 0f64;
    let classes = tract.card.classes.len().max(1);
    let (mut diffs, mut differing, mut pixels) = (Vec::new(), 0usize, 0usize);
    for input in inputs {
        let burn = forward_batch(model, std::slice::from_ref(&input), 1, spec, device);
        let noisy_input: Vec<f32> = input
            .iter()
            .map(|v| v * (1.0 + input_rng.random_range(-ROUNDING_NOISE..ROUNDING_NOISE)))
            .collect();
        let burn_noisy = forward_batch(&jittered, &[noisy_input], 1, spec, device);
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
        f64_relative: None,
    })
}

/// `max |burn - tract| / range` with both computing in f64: the model cast to f64 in Burn,
/// the ONNX file's graph translated to f64 in tract, on the same inputs. Tells a wrong graph
/// (differs whatever the precision) from a model whose output amplifies f32 rounding (agrees
/// in f64).
pub fn check_f64<B: Backend>(
    model: &SegModel<B>,
    proto: &pb::ModelProto,
    shape: [usize; 4],
    inputs: &[Vec<f32>],
    device: &B::Device,
) -> anyhow::Result<f64> {
    let typed = tract_onnx::onnx()
        .model_for_proto_model(proto)
        .and_then(|m| m.into_typed())
        .and_then(|m| m.into_decluttered())
        .context("loading the exported graph into tract for the f64 check")?;
    let mut wide = typed;
    FloatPrecisionTranslator::with_filter(f32::datum_type(), f64::datum_type(), |node| {
        !F32_ONLY_OPS.contains(&node.op.name().as_ref())
    })
    .transform(&mut wide)?;
    let plan = wide.into_optimized()?.into_runnable()?;
    let model64 = model.clone().map(&mut CastF64);
    let (mut max_abs, mut lo, mut hi) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
    for input in inputs {
        let data: Vec<f64> = input.iter().map(|&v| v as f64).collect();
        let x =
            Tensor::<B, 4>::from_data(TensorData::new(data.clone(), shape), (device, DType::F64));
        let burn: Vec<f64> = model64
            .forward(x)
            .into_data()
            .convert::<f64>()
            .to_vec()
            .map_err(|e| anyhow::anyhow!("Burn's f64 logits: {e:?}"))?;
        let t = tract_ndarray::ArrayD::from_shape_vec(shape.to_vec(), data)?.into_tensor();
        let out = plan.run(tvec!(t.into()))?;
        let out = out[0].cast_to::<f64>()?;
        let tract = out.to_plain_array_view::<f64>()?;
        anyhow::ensure!(
            burn.len() == tract.len(),
            "Burn and tract output sizes differ"
        );
        for (a, b) in burn.iter().zip(tract.iter()) {
            max_abs = max_abs.max((a - b).abs());
            lo = lo.min(*a);
            hi = hi.max(*a);
        }
    }
    Ok(max_abs / (hi - lo).max(f64::EPSILON))
}

/// Casts every float parameter to f64.
struct CastF64;

impl<B: Backend> ModuleMapper<B> for CastF64 {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(DType::F64), mapper)
    }
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
