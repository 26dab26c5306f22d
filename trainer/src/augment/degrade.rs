//! Degradations a scanner, a camera or a file format adds: sensor noise, blur, JPEG
//! re-compression. The mask is never touched.

use std::io::Cursor;

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::{DynamicImage, ExtendedColorType, ImageBuffer, Luma};
use imageproc::filter::gaussian_blur_f32;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Op, RangeError, Sample, check_range, uniform};

/// Additive Gaussian noise, standard deviation drawn from `sigma` (display units, so 0.02
/// is 2% of the display range; about 5 grey levels of 255).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Noise {
    pub p: f32,
    pub sigma: [f32; 2],
}

impl Default for Noise {
    fn default() -> Self {
        Self {
            p: 0.3,
            sigma: [0.0, 0.03],
        }
    }
}

impl Op for Noise {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("sigma", self.sigma, 0.0, 0.5)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let sigma = uniform(rng, self.sigma) / s.spec.std;
        if sigma <= 0.0 {
            return;
        }
        // Box-Muller, two normals per pair of uniforms.
        for pair in s.input.chunks_mut(2) {
            let u1: f32 = rng.random_range(f32::EPSILON..1.0);
            let u2: f32 = rng.random();
            let r = (-2.0 * u1.ln()).sqrt() * sigma;
            let t = std::f32::consts::TAU * u2;
            pair[0] += r * t.cos();
            if let Some(v) = pair.get_mut(1) {
                *v += r * t.sin();
            }
        }
    }
}

/// Gaussian blur of each channel, sigma (pixels) drawn from `sigma`: motion, defocus and
/// low-resolution acquisitions soften edges. Below 0.1 px nothing is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Blur {
    pub p: f32,
    pub sigma: [f32; 2],
}

impl Default for Blur {
    fn default() -> Self {
        Self {
            p: 0.5,
            sigma: [0.1, 2.0],
        }
    }
}

impl Op for Blur {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("sigma", self.sigma, 0.0, 10.0)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let sigma = uniform(rng, self.sigma);
        blur_planes(s.input, s.width, s.height, sigma);
    }
}

/// Gaussian blur of every `height x width` plane. Below 0.1 px the kernel is the identity to
/// float precision (and imageproc refuses sigma 0), so nothing is done.
pub(crate) fn blur_planes(input: &mut [f32], width: usize, height: usize, sigma: f32) {
    if sigma < 0.1 || width * height == 0 {
        return;
    }
    for plane in input.chunks_exact_mut(width * height) {
        let src = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(
            width as u32,
            height as u32,
            plane.to_vec(),
        )
        .expect("plane is width x height");
        plane.copy_from_slice(gaussian_blur_f32(&src, sigma).as_raw());
    }
}

/// JPEG re-compression through the `image` crate's encoder and decoder, quality drawn from
/// `quality` (1..=100): block artefacts and ringing, as in photos and exported slices. The
/// sample is quantized to 8 bits on the way (display range, clamped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Jpeg {
    pub p: f32,
    pub quality: [f32; 2],
}

impl Default for Jpeg {
    fn default() -> Self {
        Self {
            p: 0.3,
            quality: [30.0, 90.0],
        }
    }
}

impl Op for Jpeg {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("quality", self.quality, 1.0, 100.0)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let quality = uniform(rng, self.quality).round().clamp(1.0, 100.0) as u8;
        let plane = s.width * s.height;
        // The spec, not the sample, in the closures: the sample's input is written below.
        let spec = s.spec;
        let to_byte = |v: f32| ((v * spec.std + spec.mean).clamp(0.0, 1.0) * 255.0).round() as u8;
        let to_model = |d: f32| (d - spec.mean) / spec.std;
        let (w, h) = (s.width as u32, s.height as u32);
        if s.is_rgb() {
            let bytes: Vec<u8> = (0..plane)
                .flat_map(|i| [0, 1, 2].map(|c| to_byte(s.input[c * plane + i])))
                .collect();
            if let Some(decoded) = round_trip(&bytes, w, h, ExtendedColorType::Rgb8, quality) {
                let rgb = decoded.into_rgb8();
                for (i, px) in rgb.pixels().enumerate() {
                    for c in 0..3 {
                        s.input[c * plane + i] = to_model(f32::from(px[c]) / 255.0);
                    }
                }
            }
        } else {
            for c in 0..s.channels() {
                let bytes: Vec<u8> = s.input[c * plane..(c + 1) * plane]
                    .iter()
                    .map(|&v| to_byte(v))
                    .collect();
                if let Some(decoded) = round_trip(&bytes, w, h, ExtendedColorType::L8, quality) {
                    let gray = decoded.into_luma8();
                    for (i, px) in gray.pixels().enumerate() {
                        s.input[c * plane + i] = to_model(f32::from(px[0]) / 255.0);
                    }
                }
            }
        }
    }
}

/// Encodes and decodes; `None` (sample left as it was) if the codec refuses, which for an
/// in-memory buffer of the right size it does not.
fn round_trip(
    bytes: &[u8],
    w: u32,
    h: u32,
    colour: ExtendedColorType,
    quality: u8,
) -> Option<DynamicImage> {
    let mut encoded = Vec::new();
    JpegEncoder::new_with_quality(&mut encoded, quality)
        .encode(bytes, w, h, colour)
        .ok()?;
    let decoder = JpegDecoder::new(Cursor::new(encoded)).ok()?;
    DynamicImage::from_decoder(decoder).ok()
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::super::test_util::*;
    use super::*;

    fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
    }

    #[test]
    fn degradations_leave_the_mask_and_change_the_image_a_little() {
        for channels in [1, 3] {
            let sp = spec(channels);
            let (img, mask) = square(32, channels);
            for step in [
                Step::Noise(Noise {
                    p: 1.0,
                    sigma: [0.02, 0.05],
                }),
                Step::Blur(Blur {
                    p: 1.0,
                    sigma: [1.0, 2.0],
                }),
                Step::Jpeg(Jpeg {
                    p: 1.0,
                    quality: [10.0, 30.0],
                }),
            ] {
                for seed in 0..4 {
                    let (out, out_mask) = run(&step, &img, &mask, 32, &sp, seed);
                    assert_eq!(out_mask, mask, "{step:?}");
                    let d = mean_abs_diff(&out, &img) * sp.std;
                    // Changed, but the image is still the image (display units).
                    assert!(d > 1e-3 && d < 0.1, "{step:?} ({channels} ch): {d}");
                }
            }
        }
    }

    #[test]
    fn noise_has_the_drawn_standard_deviation() {
        let sp = spec(1);
        let img = vec![0.0f32; 64 * 64];
        let step = Step::Noise(Noise {
            p: 1.0,
            sigma: [0.04, 0.04],
        });
        let (out, _) = run(&step, &img, &vec![0; 64 * 64], 64, &sp, 1);
        let var = out.iter().map(|v| (v * sp.std).powi(2)).sum::<f32>() / out.len() as f32;
        assert!((var.sqrt() - 0.04).abs() < 0.004, "std {}", var.sqrt());
    }

    /// A checkerboard: blur lowers its contrast and keeps its mean; channels stay apart.
    #[test]
    fn blur_softens_and_keeps_channels_apart() {
        let side = 16;
        let board: Vec<f32> = (0..side * side)
            .map(|i| {
                if (i / side + i % side) % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let mut img = board.clone();
        blur_planes(&mut img, side, side, 1.5);
        let mean = img.iter().sum::<f32>() / img.len() as f32;
        assert!(mean.abs() < 0.05);
        assert!(img.iter().all(|v| v.abs() < 0.5));
        let mut two: Vec<f32> = [vec![1.0f32; side * side], vec![-1.0f32; side * side]].concat();
        blur_planes(&mut two, side, side, 2.0);
        assert!(two[..side * side].iter().all(|v| (v - 1.0).abs() < 1e-5));
        assert!(two[side * side..].iter().all(|v| (v + 1.0).abs() < 1e-5));
    }

    /// Lower quality, larger error: the quality range is what is applied.
    #[test]
    fn jpeg_error_grows_as_quality_falls() {
        let sp = spec(1);
        let (img, mask) = square(32, 1);
        let err = |q: f32| {
            let step = Step::Jpeg(Jpeg {
                p: 1.0,
                quality: [q, q],
            });
            mean_abs_diff(&run(&step, &img, &mask, 32, &sp, 0).0, &img)
        };
        assert!(err(5.0) > err(95.0), "{} vs {}", err(5.0), err(95.0));
    }
}
