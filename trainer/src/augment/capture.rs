//! The phone-capture simulator ([`crate::phone`]) as an augmentation step: a training sample
//! becomes what a phone photo of it on a monitor would look like, its mask moved by the same
//! geometry. It runs on the whole sample, before the crop, like the other warps.

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Op, RangeError, Sample, Stage};
use crate::phone::PhoneCapture;

/// A phone photo of the sample with probability `p`, drawn with the simulator's training
/// settings by default (a wider spread than the benchmark's `phone` test domain uses, and
/// fresh seeds every step: docs/PHONE_CAPTURE.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Phone {
    pub p: f32,
    pub settings: PhoneCapture,
}

impl Default for Phone {
    fn default() -> Self {
        Self {
            p: 0.5,
            settings: PhoneCapture::training(),
        }
    }
}

impl Op for Phone {
    fn probability(&self) -> f32 {
        self.p
    }

    fn stage(&self) -> Stage {
        Stage::Whole
    }

    fn validate(&self) -> Result<(), RangeError> {
        self.settings
            .validate()
            .map_err(|e| RangeError::new("settings", e.to_string()))
    }

    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        // The simulator takes square samples; whole training samples are (the model card's
        // input size), and anything else is left as it is rather than guessed at.
        if s.width != s.height || ![1, 3].contains(&s.channels()) {
            return;
        }
        let spec = s.spec;
        let display: Vec<f32> = s.input.iter().map(|&v| v * spec.std + spec.mean).collect();
        let Ok((photo, mask)) =
            self.settings
                .try_capture_planes(&display, s.channels(), s.width, s.mask, rng)
        else {
            return;
        };
        for (v, d) in s.input.iter_mut().zip(photo) {
            *v = (d - spec.mean) / spec.std;
        }
        s.mask.copy_from_slice(&mask);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::test_util::{spec, square};
    use super::*;

    /// A bright labelled square on a dark screen: after a capture the labelled pixels are
    /// still the brighter ones (the mask went through the image's geometry), and the same
    /// seed gives the same sample.
    #[test]
    fn a_capture_moves_the_mask_with_the_image_and_is_seeded() {
        let spec = spec(1);
        let step = Phone {
            p: 1.0,
            ..Phone::default()
        };
        for seed in 0..6 {
            let (mut input, mut mask) = square(64, 1);
            let (before_input, before_mask) = (input.clone(), mask.clone());
            let mut sample = Sample {
                input: &mut input,
                mask: &mut mask,
                width: 64,
                height: 64,
                spec: &spec,
            };
            step.apply(&mut sample, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_ne!(input, before_input, "seed {seed}: nothing changed");
            let mean = |want: u8| {
                let v: Vec<f32> = input
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m == want)
                    .map(|(v, _)| *v)
                    .collect();
                (v.iter().sum::<f32>() / v.len().max(1) as f32, v.len())
            };
            let ((inside, n), (outside, _)) = (mean(1), mean(0));
            if n > 0 {
                assert!(
                    inside > outside,
                    "seed {seed}: label {inside} vs rest {outside}"
                );
            }
            let (mut again, mut again_mask) = (before_input.clone(), before_mask.clone());
            step.apply(
                &mut Sample {
                    input: &mut again,
                    mask: &mut again_mask,
                    width: 64,
                    height: 64,
                    spec: &spec,
                },
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert_eq!((again, again_mask), (input, mask), "seed {seed}");
        }
    }
}
