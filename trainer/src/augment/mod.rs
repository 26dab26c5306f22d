//! Seeded data augmentation as a pipeline: an ordered list of [`Step`]s, each with its own
//! probability and ranges, applied to a prepared model input (`[C, H, W]`, normalized) and its
//! mask (`[H, W]` class indices). Image and mask always move together; colour and degradation
//! steps leave the mask as it is.
//!
//! Warps (affine, perspective, elastic) run on the whole sample before the random crop, so
//! rotated corners rarely reach the patch; every other step runs on the crop. Within each of
//! the two stages the steps run in list order.
//!
//! A step that does not fire (its probability) or has a degenerate range draws no random
//! numbers beyond its coin, so adding an inactive step never changes the other samples.

pub mod capture;
pub mod colour;
mod config;
pub mod degrade;
pub mod geometry;
mod legacy;
pub mod preview;

pub use config::{AugmentError, PRESETS};
pub use legacy::Legacy;

use medseg_runtime::InputSpec;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::sampling::random_crop;

/// One augmentation operation. The variant's struct lives in the file of its concern
/// (colour, geometry, degrade); adding an operation is a variant here and a line in
/// [`Step::op`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Flip(geometry::Flip),
    Affine(geometry::Affine),
    Perspective(geometry::Perspective),
    Elastic(geometry::Elastic),
    Jitter(colour::Jitter),
    Brightness(colour::Brightness),
    Contrast(colour::Contrast),
    Saturation(colour::Saturation),
    Hue(colour::Hue),
    Temperature(colour::Temperature),
    ColourJitter(colour::ColourJitter),
    Gamma(colour::Gamma),
    Noise(degrade::Noise),
    Blur(degrade::Blur),
    Jpeg(degrade::Jpeg),
    /// A simulated phone photo of the sample on a monitor (the phone-capture simulator).
    Phone(capture::Phone),
}

impl Step {
    /// The operation behind the variant.
    pub fn op(&self) -> &dyn Op {
        match self {
            Step::Flip(s) => s,
            Step::Affine(s) => s,
            Step::Perspective(s) => s,
            Step::Elastic(s) => s,
            Step::Jitter(s) => s,
            Step::Brightness(s) => s,
            Step::Contrast(s) => s,
            Step::Saturation(s) => s,
            Step::Hue(s) => s,
            Step::Temperature(s) => s,
            Step::ColourJitter(s) => s,
            Step::Gamma(s) => s,
            Step::Noise(s) => s,
            Step::Blur(s) => s,
            Step::Jpeg(s) => s,
            Step::Phone(s) => s,
        }
    }

    /// The `kind` name as written in TOML and run.json.
    pub fn kind(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// Where a step runs: on the whole sample before the crop, or on the crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Whole,
    Patch,
}

/// A setting outside what an operation accepts: the key and what was expected.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeError {
    pub key: &'static str,
    pub expected: String,
}

impl RangeError {
    pub fn new(key: &'static str, expected: impl Into<String>) -> Self {
        Self {
            key,
            expected: expected.into(),
        }
    }
}

/// What every step does.
pub trait Op: Send + Sync {
    /// Chance that the step fires on a sample.
    fn probability(&self) -> f32;
    fn stage(&self) -> Stage {
        Stage::Patch
    }
    /// Checks the ranges (the probability is checked by the pipeline).
    fn validate(&self) -> Result<(), RangeError>;
    /// Applies the step once (its coin already came up).
    fn apply(&self, sample: &mut Sample<'_>, rng: &mut ChaCha8Rng);
}

/// A sample being augmented: `input` is `[channels, height, width]` in model units
/// (`(pixel / 255 - mean) / std`), `mask` is `[height, width]`.
pub struct Sample<'a> {
    pub input: &'a mut [f32],
    pub mask: &'a mut [u8],
    pub width: usize,
    pub height: usize,
    pub spec: &'a InputSpec,
}

impl Sample<'_> {
    pub fn channels(&self) -> usize {
        self.input.len() / (self.width * self.height).max(1)
    }

    /// Three channels that are red, green and blue (not three stacked gray slices).
    pub fn is_rgb(&self) -> bool {
        self.channels() == 3 && !self.spec.stacked_neighbours
    }

    /// Model units to display units [0, 1].
    pub fn to_display(&self, v: f32) -> f32 {
        v * self.spec.std + self.spec.mean
    }

    pub fn to_model(&self, d: f32) -> f32 {
        (d - self.spec.mean) / self.spec.std
    }
}

/// An ordered list of augmentation steps (empty: no augmentation).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "legacy::Stored")]
pub struct Pipeline {
    pub steps: Vec<Step>,
}

impl Pipeline {
    /// Checks every step's probability and ranges; the error names the step and key.
    pub fn validate(&self) -> Result<(), AugmentError> {
        for (index, step) in self.steps.iter().enumerate() {
            let op = step.op();
            let p = op.probability();
            let checked = if (0.0..=1.0).contains(&p) {
                op.validate()
            } else {
                Err(RangeError::new("p", "a probability in 0..=1"))
            };
            checked.map_err(|e| AugmentError::Range {
                index,
                kind: step.kind(),
                key: e.key,
                expected: e.expected,
                got: serde_json::to_value(step)
                    .ok()
                    .map(|v| v[e.key].to_string())
                    .unwrap_or_default(),
                file: None,
            })?;
        }
        Ok(())
    }

    pub fn has_whole_stage(&self) -> bool {
        self.steps.iter().any(|s| s.op().stage() == Stage::Whole)
    }

    /// Augments one square sample (`input` `[C, side, side]`, `mask` `[side, side]`, side =
    /// `spec.width`) into a `crop`-sized patch: warps, random crop, then the other steps.
    pub fn patch(
        &self,
        input: &[f32],
        mask: &[u8],
        spec: &InputSpec,
        crop: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<u8>) {
        let side = spec.width;
        let (mut input, mut mask) = if self.has_whole_stage() {
            let (mut whole, mut whole_mask) = (input.to_vec(), mask.to_vec());
            self.run_stage(Stage::Whole, &mut whole, &mut whole_mask, side, spec, rng);
            random_crop(&whole, &whole_mask, side, crop, rng)
        } else {
            random_crop(input, mask, side, crop, rng)
        };
        let crop = crop.min(side);
        self.run_stage(Stage::Patch, &mut input, &mut mask, crop, spec, rng);
        (input, mask)
    }

    fn run_stage(
        &self,
        stage: Stage,
        input: &mut [f32],
        mask: &mut [u8],
        side: usize,
        spec: &InputSpec,
        rng: &mut ChaCha8Rng,
    ) {
        let mut sample = Sample {
            input,
            mask,
            width: side,
            height: side,
            spec,
        };
        for op in self.steps.iter().map(Step::op) {
            if op.stage() == stage && fires(op.probability(), rng) {
                op.apply(&mut sample, rng);
            }
        }
    }
}

/// A coin with probability `p`; certain outcomes draw nothing (so a step with p = 1 draws
/// exactly what the step before the pipeline existed drew).
pub fn fires(p: f32, rng: &mut ChaCha8Rng) -> bool {
    if p >= 1.0 {
        true
    } else if p <= 0.0 {
        false
    } else {
        rng.random_bool(f64::from(p))
    }
}

/// Uniform in `[lo, hi]`; a degenerate range draws nothing.
pub fn uniform(rng: &mut ChaCha8Rng, [lo, hi]: [f32; 2]) -> f32 {
    if lo == hi {
        lo
    } else {
        rng.random_range(lo..=hi)
    }
}

/// Checks `[lo, hi]`: finite, ordered, within `[min, max]`.
pub fn check_range(
    key: &'static str,
    [lo, hi]: [f32; 2],
    min: f32,
    max: f32,
) -> Result<(), RangeError> {
    if lo.is_finite() && hi.is_finite() && lo <= hi && lo >= min && hi <= max {
        Ok(())
    } else {
        Err(RangeError::new(
            key,
            format!("a range [lo, hi] with {min} <= lo <= hi <= {max}"),
        ))
    }
}

/// Checks a single value against `[min, max]`.
pub fn check_value(key: &'static str, v: f32, min: f32, max: f32) -> Result<(), RangeError> {
    if v.is_finite() && (min..=max).contains(&v) {
        Ok(())
    } else {
        Err(RangeError::new(key, format!("a number in {min}..={max}")))
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn spec(channels: usize) -> InputSpec {
        InputSpec {
            channels,
            height: 32,
            width: 32,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours: false,
        }
    }

    /// A square of label 1 (bright, display 0.9) on a dark background (display 0.1),
    /// `[channels, side, side]`, with a little texture so every pixel differs.
    pub fn square(side: usize, channels: usize) -> (Vec<f32>, Vec<u8>) {
        let s = spec(channels);
        let mut img = vec![0.0f32; channels * side * side];
        let mut mask = vec![0u8; side * side];
        for y in 0..side {
            for x in 0..side {
                let inside = (side / 4..3 * side / 4).contains(&y)
                    && (side * 3 / 8..side * 5 / 8).contains(&x);
                let d = if inside { 0.9 } else { 0.1 } + 0.001 * ((x * 3 + y) % 7) as f32;
                for c in 0..channels {
                    img[c * side * side + y * side + x] = (d - s.mean) / s.std;
                }
                mask[y * side + x] = u8::from(inside);
            }
        }
        (img, mask)
    }

    /// Applies one step (coin included) to a copy of the sample.
    pub fn run(
        step: &Step,
        img: &[f32],
        mask: &[u8],
        side: usize,
        spec: &InputSpec,
        seed: u64,
    ) -> (Vec<f32>, Vec<u8>) {
        use rand::SeedableRng;
        let (mut img, mut mask) = (img.to_vec(), mask.to_vec());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let op = step.op();
        if fires(op.probability(), &mut rng) {
            op.apply(
                &mut Sample {
                    input: &mut img,
                    mask: &mut mask,
                    width: side,
                    height: side,
                    spec,
                },
                &mut rng,
            );
        }
        (img, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use rand::SeedableRng;

    /// Every step of the `strong` preset, through the whole pipeline: the same seed gives the
    /// same patch, another seed another one.
    #[test]
    fn the_pipeline_is_seeded() {
        let pipeline = Pipeline::preset("strong").unwrap();
        let (img, mask) = square(32, 1);
        let spec = spec(1);
        let go =
            |seed| pipeline.patch(&img, &mask, &spec, 24, &mut ChaCha8Rng::seed_from_u64(seed));
        assert_eq!(go(5), go(5));
        assert_ne!(go(5).0, go(6).0);
        assert_eq!(go(5).0.len(), 24 * 24);
    }

    /// Probabilities are honoured: a flip with p = 0.2 fires in about a fifth of the seeds.
    #[test]
    fn probabilities_are_honoured_roughly() {
        for p in [0.0f32, 0.2, 0.8, 1.0] {
            let step = Step::Brightness(colour::Brightness {
                p,
                factor: [1.5, 1.5],
            });
            let (img, mask) = square(8, 1);
            let fired = (0..400)
                .filter(|&seed| run(&step, &img, &mask, 8, &spec(1), seed).0 != img)
                .count();
            let expected = 400.0 * p;
            assert!(
                (fired as f32 - expected).abs() <= 40.0,
                "p {p}: fired {fired}/400"
            );
        }
    }

    #[test]
    fn a_bad_probability_or_range_names_the_step_and_key() {
        let bad = Pipeline {
            steps: vec![
                Step::Flip(geometry::Flip::default()),
                Step::Hue(colour::Hue {
                    p: 1.5,
                    shift: [0.0, 0.1],
                }),
            ],
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("step 2 (hue)") && err.contains("`p`"), "{err}");
        let bad = Pipeline {
            steps: vec![Step::Blur(degrade::Blur {
                p: 0.5,
                sigma: [2.0, 1.0],
            })],
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("`sigma`") && err.contains("[2.0,1.0]"),
            "{err}"
        );
    }
}
