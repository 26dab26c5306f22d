//! Colour and intensity steps. They work in display units [0, 1] (the sample de-normalized
//! with the input spec's mean and std, re-normalized after) and clamp there, as a camera or
//! screen would. On a gray model each channel is taken as a gray RGB image, changed, and
//! turned back into luma (Rec. 601): that is what a colour cast does to a gray input. Hue and
//! saturation have no colour to act on in a gray pixel, so they leave gray inputs unchanged;
//! colour temperature and the intensity steps do change them. The mask is never touched.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Op, RangeError, Sample, check_range, check_value, uniform};

type Rgb = [f32; 3];

fn luma([r, g, b]: Rgb) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn clamp(px: Rgb) -> Rgb {
    px.map(|v| v.clamp(0.0, 1.0))
}

/// Runs `change` on the sample as RGB images in display units: one for an RGB model, one
/// per channel (gray, replicated to RGB) otherwise; gray results are turned back into luma.
fn on_rgb(s: &mut Sample<'_>, change: impl Fn(&mut [Rgb])) {
    let plane = s.width * s.height;
    let (mean, std) = (s.spec.mean, s.spec.std);
    let display = |v: f32| v * std + mean;
    let model = |d: f32| (d - mean) / std;
    if s.is_rgb() {
        let mut img: Vec<Rgb> = (0..plane)
            .map(|i| [0, 1, 2].map(|c| display(s.input[c * plane + i])))
            .collect();
        change(&mut img);
        for (i, px) in img.iter().enumerate() {
            for (c, v) in px.iter().enumerate() {
                s.input[c * plane + i] = model(*v);
            }
        }
    } else {
        for channel in s.input.chunks_exact_mut(plane) {
            let mut img: Vec<Rgb> = channel.iter().map(|&v| [display(v); 3]).collect();
            change(&mut img);
            for (v, px) in channel.iter_mut().zip(&img) {
                *v = model(luma(*px).clamp(0.0, 1.0));
            }
        }
    }
}

fn brightness(img: &mut [Rgb], factor: f32) {
    for px in img.iter_mut() {
        *px = clamp(px.map(|v| v * factor));
    }
}

/// Blends with the image's mean luma (torchvision's definition).
fn contrast(img: &mut [Rgb], factor: f32) {
    let mean = img.iter().map(|&p| luma(p)).sum::<f32>() / img.len().max(1) as f32;
    for px in img.iter_mut() {
        *px = clamp(px.map(|v| mean + (v - mean) * factor));
    }
}

/// Blends each pixel with its own luma.
fn saturation(img: &mut [Rgb], factor: f32) {
    for px in img.iter_mut() {
        let l = luma(*px);
        *px = clamp(px.map(|v| l + (v - l) * factor));
    }
}

/// Rotates the hue by `shift` turns (HSV).
fn hue(img: &mut [Rgb], shift: f32) {
    for px in img.iter_mut() {
        let [r, g, b] = *px;
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let chroma = max - min;
        if chroma <= 0.0 {
            continue;
        }
        let h = if max == r {
            ((g - b) / chroma).rem_euclid(6.0)
        } else if max == g {
            (b - r) / chroma + 2.0
        } else {
            (r - g) / chroma + 4.0
        };
        let h = (h + shift * 6.0).rem_euclid(6.0);
        let x = chroma * (1.0 - (h % 2.0 - 1.0).abs());
        let (r1, g1, b1) = match h as u32 {
            0 => (chroma, x, 0.0),
            1 => (x, chroma, 0.0),
            2 => (0.0, chroma, x),
            3 => (0.0, x, chroma),
            4 => (x, 0.0, chroma),
            _ => (chroma, 0.0, x),
        };
        *px = clamp([r1 + min, g1 + min, b1 + min]);
    }
}

/// Warm (positive) or cool (negative) cast: red gain `1 + shift`, blue gain `1 - shift`.
fn temperature(img: &mut [Rgb], shift: f32) {
    for px in img.iter_mut() {
        *px = clamp([px[0] * (1.0 + shift), px[1], px[2] * (1.0 - shift)]);
    }
}

macro_rules! factor_step {
    ($(#[$doc:meta])* $name:ident, $key:ident, $default:expr, $lo:expr, $hi:expr, $f:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            pub p: f32,
            pub $key: [f32; 2],
        }

        impl Default for $name {
            fn default() -> Self {
                Self { p: 1.0, $key: $default }
            }
        }

        impl Op for $name {
            fn probability(&self) -> f32 {
                self.p
            }
            fn validate(&self) -> Result<(), RangeError> {
                check_range(stringify!($key), self.$key, $lo, $hi)
            }
            fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
                let v = uniform(rng, self.$key);
                on_rgb(s, |img| $f(img, v));
            }
        }
    };
}

factor_step!(
    /// Multiplies display values by a factor drawn from `factor`.
    Brightness, factor, [0.8, 1.2], 0.0, 4.0, brightness
);
factor_step!(
    /// Stretches display values about the image's mean luma by a factor from `factor`.
    Contrast, factor, [0.8, 1.2], 0.0, 4.0, contrast
);
factor_step!(
    /// Scales colourfulness by a factor from `factor` (0: gray). Gray inputs: no change.
    Saturation, factor, [0.8, 1.2], 0.0, 4.0, saturation
);
factor_step!(
    /// Rotates the hue by `shift` turns of the colour circle. Gray inputs: no change.
    Hue, shift, [-0.05, 0.05], -0.5, 0.5, hue
);
factor_step!(
    /// Colour temperature: red gain `1 + shift`, blue gain `1 - shift` (a warm or cool light
    /// or screen). A gray input becomes the luma of the cast image.
    Temperature, shift, [-0.2, 0.2], -1.0, 1.0, temperature
);

/// torchvision's `ColorJitter(brightness, contrast, saturation, hue)` as JMedSeg uses it: with
/// probability `p`, the four changes in a random order, factors uniform in `1 ± value`
/// (at least 0) and the hue shift in `± hue` turns; 0 turns a change off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColourJitter {
    pub p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl Default for ColourJitter {
    fn default() -> Self {
        Self {
            p: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.4,
            hue: 0.1,
        }
    }
}

impl Op for ColourJitter {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_value("brightness", self.brightness, 0.0, 1.0)?;
        check_value("contrast", self.contrast, 0.0, 1.0)?;
        check_value("saturation", self.saturation, 0.0, 1.0)?;
        check_value("hue", self.hue, 0.0, 0.5)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut ChaCha8Rng, v: f32| uniform(rng, [(1.0 - v).max(0.0), 1.0 + v]);
        let values = [
            factor(rng, self.brightness),
            factor(rng, self.contrast),
            factor(rng, self.saturation),
            uniform(rng, [-self.hue, self.hue]),
        ];
        on_rgb(s, |img| {
            for &i in &order {
                match i {
                    0 => brightness(img, values[0]),
                    1 => contrast(img, values[1]),
                    2 => saturation(img, values[2]),
                    _ => hue(img, values[3]),
                }
            }
        });
    }
}

/// Linear intensity jitter in model units (the augmentation every run had before the
/// pipeline): gain `1 ± contrast`, offset `± brightness`, both always drawn. No clamping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jitter {
    pub p: f32,
    pub contrast: f32,
    pub brightness: f32,
}

impl Default for Jitter {
    fn default() -> Self {
        Self {
            p: 1.0,
            contrast: 0.1,
            brightness: 0.1,
        }
    }
}

impl Op for Jitter {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_value("contrast", self.contrast, 0.0, 1.0)?;
        check_value("brightness", self.brightness, 0.0, 2.0)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let gain = 1.0 + rng.random_range(-self.contrast..=self.contrast);
        let shift = rng.random_range(-self.brightness..=self.brightness);
        for v in s.input.iter_mut() {
            *v = *v * gain + shift;
        }
    }
}

/// Gamma on the sample's own min..max range, exponent log-uniform in `exponent`: scanners
/// and sequences weight tissues differently. The darkest and brightest values stay put, so
/// the result is the same in model or display units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gamma {
    pub p: f32,
    pub exponent: [f32; 2],
}

impl Default for Gamma {
    fn default() -> Self {
        Self {
            p: 1.0,
            exponent: [0.67, 1.5],
        }
    }
}

impl Op for Gamma {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("exponent", self.exponent, 0.1, 10.0)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let [lo, hi] = self.exponent;
        let exponent = uniform(rng, [lo.ln(), hi.ln()]).exp();
        apply_gamma(s.input, exponent);
    }
}

/// `v -> lo + (hi - lo) * ((v - lo) / (hi - lo))^exponent` over the sample's own range.
fn apply_gamma(input: &mut [f32], exponent: f32) {
    let (lo, hi) = input
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if range.is_nan() || range <= f32::EPSILON {
        return;
    }
    for v in input.iter_mut() {
        *v = lo + range * ((*v - lo) / range).clamp(0.0, 1.0).powf(exponent);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::super::test_util::*;
    use super::*;
    use medseg_runtime::InputSpec;

    fn all_colour_steps() -> Vec<Step> {
        vec![
            Step::Brightness(Brightness {
                p: 1.0,
                factor: [0.6, 1.4],
            }),
            Step::Contrast(Contrast {
                p: 1.0,
                factor: [0.6, 1.4],
            }),
            Step::Saturation(Saturation {
                p: 1.0,
                factor: [0.0, 2.0],
            }),
            Step::Hue(Hue {
                p: 1.0,
                shift: [-0.3, 0.3],
            }),
            Step::Temperature(Temperature {
                p: 1.0,
                shift: [-0.5, 0.5],
            }),
            Step::ColourJitter(ColourJitter {
                p: 1.0,
                ..ColourJitter::default()
            }),
            Step::Jitter(Jitter::default()),
            Step::Gamma(Gamma {
                p: 1.0,
                exponent: [0.5, 2.0],
            }),
        ]
    }

    #[test]
    fn colour_steps_leave_the_mask_and_stay_in_display_range() {
        for channels in [1, 3] {
            let sp = spec(channels);
            let (img, mask) = square(16, channels);
            // Make the RGB sample coloured so hue and saturation have something to do.
            let mut img = img;
            if channels == 3 {
                for v in &mut img[..256] {
                    *v += 0.8;
                }
            }
            for step in all_colour_steps() {
                let mut changed = 0;
                for seed in 0..8 {
                    let (out, out_mask) = run(&step, &img, &mask, 16, &sp, seed);
                    assert_eq!(out_mask, mask, "{step:?}");
                    assert_eq!(out.len(), img.len());
                    // Jitter works in model units, and gamma keeps the sample's own range
                    // (the coloured RGB test sample starts above 1): neither clamps.
                    if !matches!(step, Step::Jitter(_) | Step::Gamma(_)) {
                        for &v in &out {
                            let d = v * sp.std + sp.mean;
                            assert!((-1e-4..=1.0001).contains(&d), "{step:?}: display {d}");
                        }
                    }
                    // A gray pixel through RGB and back to luma can differ in the last bit
                    // (0.299 + 0.587 + 0.114 is not exactly 1 in f32): that is no change.
                    let moved = out.iter().zip(&img).any(|(a, b)| (a - b).abs() > 1e-4);
                    changed += usize::from(moved);
                }
                let gray_noop = channels == 1 && matches!(step, Step::Hue(_) | Step::Saturation(_));
                if gray_noop {
                    assert_eq!(changed, 0, "{step:?} changed a gray input");
                } else {
                    assert!(changed >= 7, "{step:?} ({channels} ch) changed {changed}/8");
                }
            }
        }
    }

    /// A gray input under a colour cast stays one gray channel in display range, brighter
    /// under a warm cast (red weighs more in luma than blue), and keeps its order of values.
    #[test]
    fn a_gray_input_under_a_colour_temperature_change_stays_a_valid_gray_input() {
        let sp = spec(1);
        let ramp: Vec<f32> = (0..64)
            .map(|i| (i as f32 / 63.0 - sp.mean) / sp.std)
            .collect();
        let mask = vec![0u8; 64];
        for shift in [-0.5f32, 0.3] {
            let step = Step::Temperature(Temperature {
                p: 1.0,
                shift: [shift, shift],
            });
            let (out, _) = run(&step, &ramp, &mask, 8, &sp, 0);
            assert_eq!(out.len(), 64);
            assert!(out.windows(2).all(|w| w[0] <= w[1] + 1e-6), "order kept");
            for (o, r) in out.iter().zip(&ramp) {
                let (d, d0) = (o * sp.std + sp.mean, r * sp.std + sp.mean);
                assert!((0.0..=1.0).contains(&d) && d.is_finite());
                // Red and blue gains, each channel clamped to the display range, then luma.
                let expected = 0.299 * (d0 * (1.0 + shift)).clamp(0.0, 1.0)
                    + 0.587 * d0
                    + 0.114 * (d0 * (1.0 - shift)).clamp(0.0, 1.0);
                assert!(
                    (d - expected).abs() < 1e-4,
                    "shift {shift}: {d} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn hue_rotation_by_a_third_turn_cycles_the_primaries() {
        let mut img = vec![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.2]];
        hue(&mut img, 1.0 / 3.0);
        let close = |a: Rgb, b: Rgb| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5);
        assert!(close(img[0], [0.0, 1.0, 0.0]), "{:?}", img[0]);
        assert!(close(img[1], [0.0, 0.0, 1.0]), "{:?}", img[1]);
        assert!(close(img[2], [0.2, 0.2, 0.2]));
    }

    #[test]
    fn brightness_factor_stays_in_its_range() {
        let sp = InputSpec {
            mean: 0.0,
            std: 1.0,
            ..spec(1)
        };
        let img = vec![0.5f32; 4];
        let step = Step::Brightness(Brightness {
            p: 1.0,
            factor: [0.7, 1.1],
        });
        let mut seen = (f32::INFINITY, 0.0f32);
        for seed in 0..200 {
            let v = run(&step, &img, &[0; 4], 2, &sp, seed).0[0] / 0.5;
            assert!((0.7..=1.1).contains(&v), "{v}");
            seen = (seen.0.min(v), seen.1.max(v));
        }
        assert!(seen.0 < 0.75 && seen.1 > 1.05, "{seen:?}");
    }

    /// A ramp: gamma keeps its ends and its order and bends the middle.
    #[test]
    fn gamma_keeps_range_and_order_and_bends_the_middle() {
        let ramp: Vec<f32> = (0..64).map(|v| v as f32 / 63.0 * 4.0 - 2.0).collect();
        let step = Step::Gamma(Gamma {
            p: 1.0,
            exponent: [0.5, 2.0],
        });
        let mut bent = 0;
        for seed in 0..16 {
            let (img, _) = run(&step, &ramp, &[1u8; 64], 8, &spec(1), seed);
            assert!((img[0] + 2.0).abs() < 1e-5 && (img[63] - 2.0).abs() < 1e-5);
            assert!(img.windows(2).all(|w| w[0] <= w[1]), "order changed");
            bent += usize::from((img[32] - ramp[32]).abs() > 0.05);
        }
        assert!(bent >= 12, "gamma bent the middle in {bent}/16 draws");
    }
}
