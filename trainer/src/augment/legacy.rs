//! The fixed augmentation settings runs had before the pipeline (run.json's flat `augment`
//! object, and the `--rotate/--zoom/--shift/--gamma/--blur` flags), and their translation into
//! the pipeline that draws the same random numbers in the same order.

use serde::{Deserialize, Serialize};

use super::colour::{Gamma, Jitter};
use super::degrade::Blur;
use super::geometry::{Affine, Flip};
use super::{Pipeline, Step};

/// The old flat settings; a missing field has its old default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Legacy {
    pub flip: bool,
    /// Contrast is scaled by a factor in `1 ± contrast` (model units).
    pub contrast: f32,
    /// Brightness is shifted by up to ± this (model units).
    pub brightness: f32,
    /// Rotation about the centre, uniform in ± this many degrees.
    pub rotate_degrees: f32,
    /// Isotropic scale, uniform in `1 ± zoom`.
    pub zoom: f32,
    /// Translation, uniform in ± this fraction of the side.
    pub shift: f32,
    /// Gamma exponent log-uniform in `[1 / (1 + gamma), 1 + gamma]`.
    pub gamma: f32,
    /// Blur of half the samples, sigma uniform in `(0, blur]`.
    pub blur: f32,
}

impl Default for Legacy {
    fn default() -> Self {
        Self {
            flip: true,
            contrast: 0.1,
            brightness: 0.1,
            rotate_degrees: 0.0,
            zoom: 0.0,
            shift: 0.0,
            gamma: 0.0,
            blur: 0.0,
        }
    }
}

impl Legacy {
    /// The warp step, if any setting asks for one.
    pub fn affine(&self) -> Option<Step> {
        let geometric = self.rotate_degrees > 0.0 || self.zoom > 0.0 || self.shift > 0.0;
        geometric.then(|| {
            Step::Affine(Affine {
                p: 1.0,
                rotate_degrees: [-self.rotate_degrees, self.rotate_degrees],
                scale: [1.0 - self.zoom, 1.0 + self.zoom],
                shift: [-self.shift, self.shift],
            })
        })
    }

    pub fn blur_step(&self) -> Option<Step> {
        (self.blur > 0.0).then_some(Step::Blur(Blur {
            p: 0.5,
            sigma: [0.0, self.blur],
        }))
    }

    pub fn gamma_step(&self) -> Option<Step> {
        (self.gamma > 0.0).then(|| {
            Step::Gamma(Gamma {
                p: 1.0,
                exponent: [1.0 / (1.0 + self.gamma), 1.0 + self.gamma],
            })
        })
    }
}

impl From<Legacy> for Pipeline {
    /// The old order: warp (before the crop), then flip, blur, gamma, intensity jitter.
    fn from(l: Legacy) -> Self {
        let flip = l.flip.then(|| Step::Flip(Flip::default()));
        let jitter = (l.contrast > 0.0 || l.brightness > 0.0).then_some(Step::Jitter(Jitter {
            p: 1.0,
            contrast: l.contrast,
            brightness: l.brightness,
        }));
        let steps = [l.affine(), flip, l.blur_step(), l.gamma_step(), jitter];
        Pipeline {
            steps: steps.into_iter().flatten().collect(),
        }
    }
}

/// What run.json may hold under `augment`: the pipeline, or the old flat settings.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Stored {
    Steps { steps: Vec<Step> },
    Legacy(Legacy),
}

impl From<Stored> for Pipeline {
    fn from(stored: Stored) -> Self {
        match stored {
            Stored::Steps { steps } => Pipeline { steps },
            Stored::Legacy(l) => l.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A run.json written before the pipeline: its flat object loads as the equivalent
    /// pipeline, in the old order, and a missing object or field keeps the old defaults.
    #[test]
    fn an_old_run_json_augment_object_loads_as_the_equivalent_pipeline() {
        let old = r#"{"flip": true, "contrast": 0.1, "brightness": 0.1,
            "rotate_degrees": 10.0, "zoom": 0.1, "shift": 0.05, "gamma": 0.5, "blur": 1.5}"#;
        let p: Pipeline = serde_json::from_str(old).unwrap();
        let expected = Pipeline {
            steps: vec![
                Step::Affine(Affine {
                    p: 1.0,
                    rotate_degrees: [-10.0, 10.0],
                    scale: [0.9, 1.1],
                    shift: [-0.05, 0.05],
                }),
                Step::Flip(Flip {
                    p: 0.5,
                    vertical: false,
                }),
                Step::Blur(Blur {
                    p: 0.5,
                    sigma: [0.0, 1.5],
                }),
                Step::Gamma(Gamma {
                    p: 1.0,
                    exponent: [1.0 / 1.5, 1.5],
                }),
                Step::Jitter(Jitter {
                    p: 1.0,
                    contrast: 0.1,
                    brightness: 0.1,
                }),
            ],
        };
        assert_eq!(p, expected);
        let defaults: Pipeline = serde_json::from_str("{}").unwrap();
        assert_eq!(defaults, Pipeline::preset("basic").unwrap());
        let no_flip: Pipeline = serde_json::from_str(r#"{"flip": false}"#).unwrap();
        assert_eq!(no_flip.steps.len(), 1);
        // The pipeline written back and read again is the same pipeline.
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""kind":"affine""#), "{json}");
        assert_eq!(serde_json::from_str::<Pipeline>(&json).unwrap(), p);
        // A typo in an old object is not silently the default.
        assert!(serde_json::from_str::<Pipeline>(r#"{"flipp": true}"#).is_err());
    }

    /// The old default (flip + contrast/brightness jitter), written out as it was: `basic`
    /// gives the very same patches, bit for bit.
    #[test]
    fn basic_replays_the_old_default_exactly() {
        let old_default =
            |img: &mut Vec<f32>, mask: &mut Vec<u8>, w: usize, rng: &mut ChaCha8Rng| {
                if rng.random_bool(0.5) {
                    medseg_runtime::preprocess::mirror_rows(img, w);
                    medseg_runtime::preprocess::mirror_rows(mask, w);
                }
                let gain = 1.0 + rng.random_range(-0.1f32..=0.1);
                let shift = rng.random_range(-0.1f32..=0.1);
                for v in img.iter_mut() {
                    *v = *v * gain + shift;
                }
            };
        let basic = Pipeline::preset("basic").unwrap();
        let sp = spec(1);
        let (img, mask) = square(32, 1);
        for seed in 0..16 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (mut old_img, mut old_mask) =
                crate::sampling::random_crop(&img, &mask, 32, 16, &mut rng);
            old_default(&mut old_img, &mut old_mask, 16, &mut rng);
            let mut rng2 = ChaCha8Rng::seed_from_u64(seed);
            let (new_img, new_mask) = basic.patch(&img, &mask, &sp, 16, &mut rng2);
            assert_eq!((new_img, new_mask), (old_img, old_mask), "seed {seed}");
            assert_eq!(rng.random::<u64>(), rng2.random::<u64>(), "same draws");
        }
    }
}
