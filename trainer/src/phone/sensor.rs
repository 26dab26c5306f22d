//! The sensor and the phone's processing: defocus and hand-shake blur, shot and read noise
//! (in linear light, where they arise), the tone curve back to display values, and JPEG.

use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::monitor::CAMERA_GAMMA;
use super::{PhoneCapture, Planes};

/// Shot-noise variance per unit of linear light, per unit of read-noise variance: a sensor
/// with more read noise (a smaller pixel, a darker room) also has fewer photons per level.
const SHOT_PER_READ_VAR: f32 = 8.0;

/// Mean linear luminance auto-exposure aims at (about 35% gray once encoded).
const AUTO_EXPOSURE_TARGET: f32 = 0.1;

#[derive(Debug, Clone)]
pub(crate) struct Sensor {
    /// Gaussian sigma in photo pixels.
    defocus: f32,
    /// Streak length in photo pixels and its direction.
    motion: f32,
    motion_dir: f32,
    read_noise: f32,
    /// How far auto-exposure goes towards its target (0 = off, 1 = all the way).
    auto_exposure: f32,
    /// JPEG quality, `None` for none (severity 0).
    jpeg_quality: Option<u8>,
}

impl Sensor {
    /// `px`: pixels of this image per pixel of a 512-pixel one.
    pub fn sample(cfg: &PhoneCapture, s: f32, px: f32, rng: &mut impl Rng) -> Self {
        let defocus = s * cfg.defocus_px.sample(rng) * px;
        let motion = s * cfg.motion_px.sample(rng) * px;
        let motion_dir = rng.random::<f32>() * std::f32::consts::PI;
        let read_noise = s * cfg.noise.sample(rng);
        let auto_exposure = s.min(1.0);
        let loss = (s * cfg.jpeg_loss.sample(rng)).round().clamp(0.0, 95.0) as u8;
        Self {
            defocus,
            motion,
            motion_dir,
            read_noise,
            auto_exposure,
            jpeg_quality: (loss > 0).then_some(100 - loss),
        }
    }

    /// The photo as the phone saves it, and the JPEG file when one was written.
    pub fn develop(&self, mut planes: Planes, rng: &mut ChaCha8Rng) -> (RgbImage, Option<Vec<u8>>) {
        let (w, h) = (planes.width, planes.height);
        // A phone exposes for the scene's mean: a mostly black CT slice comes out brighter
        // than on the screen, its blacks a lifted gray (as in the reference photo).
        if self.auto_exposure > 0.0 {
            let n = (w * h).max(1) as f32;
            let [r, g, b] = &planes.rgb;
            let mean = (0..w * h)
                .map(|i| 0.2126 * r[i] + 0.7152 * g[i] + 0.0722 * b[i])
                .sum::<f32>()
                / n;
            let gain = (AUTO_EXPOSURE_TARGET / mean.max(1e-4))
                .clamp(0.5, 4.0)
                .powf(self.auto_exposure);
            planes.rgb.iter_mut().flatten().for_each(|v| *v *= gain);
        }
        for plane in &mut planes.rgb {
            if self.defocus > 0.05 {
                gaussian_blur(plane, w, h, self.defocus);
            }
            if self.motion >= 0.5 {
                *plane = motion_blur(plane, w, h, self.motion, self.motion_dir);
            }
        }
        if self.read_noise > 0.0 {
            let read_var = self.read_noise * self.read_noise;
            // Pixel by pixel, channels together: the draw order does not depend on layout.
            for i in 0..w * h {
                for plane in &mut planes.rgb {
                    let v = plane[i];
                    let sd = (read_var * (1.0 + SHOT_PER_READ_VAR * v.max(0.0))).sqrt();
                    plane[i] = v + sd * standard_normal(rng);
                }
            }
        }
        let inv_gamma = 1.0 / CAMERA_GAMMA;
        let mut raw = Vec::with_capacity(3 * w * h);
        for i in 0..w * h {
            for plane in &planes.rgb {
                let v = plane[i].clamp(0.0, 1.0).powf(inv_gamma);
                raw.push((v * 255.0).round() as u8);
            }
        }
        let photo = RgbImage::from_raw(w as u32, h as u32, raw).expect("3 bytes per pixel");
        match self.jpeg_quality {
            Some(q) => match jpeg_round_trip(&photo, q) {
                Some((decoded, bytes)) => (decoded, Some(bytes)),
                // Encoding an in-memory RGB image does not fail for a non-empty image; if
                // it ever did, the photo without compression is still a valid capture.
                None => (photo, None),
            },
            None => (photo, None),
        }
    }
}

/// Box-Muller (one of the pair): exact normal tails, unlike a sum of uniforms, at the cost of
/// a log and a cosine per draw.
fn standard_normal(rng: &mut impl Rng) -> f32 {
    let u1 = 1.0 - rng.random::<f32>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f32>();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn jpeg_round_trip(photo: &RgbImage, quality: u8) -> Option<(RgbImage, Vec<u8>)> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(photo)
        .ok()?;
    let decoded = image::load_from_memory_with_format(&bytes, ImageFormat::Jpeg)
        .ok()?
        .into_rgb8();
    (decoded.dimensions() == photo.dimensions()).then_some((decoded, bytes))
}

/// Separable Gaussian blur, edges clamped.
fn gaussian_blur(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    let r = (3.0 * sigma).ceil() as isize;
    let mut k: Vec<f32> = (-r..=r)
        .map(|i| (-0.5 * (i as f32 / sigma).powi(2)).exp())
        .collect();
    let sum: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    let mut tmp = vec![0.0f32; w * h];
    let clamp = |i: isize, n: usize| i.clamp(0, n as isize - 1) as usize;
    for y in 0..h {
        for x in 0..w {
            tmp[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * plane[y * w + clamp(x as isize + j as isize - r, w)])
                .sum();
        }
    }
    for y in 0..h {
        for x in 0..w {
            plane[y * w + x] = k
                .iter()
                .enumerate()
                .map(|(j, kv)| kv * tmp[clamp(y as isize + j as isize - r, h) * w + x])
                .sum();
        }
    }
}

/// Average along a straight streak of `len` pixels (bilinear samples, edges clamped).
fn motion_blur(plane: &[f32], w: usize, h: usize, len: f32, dir: f32) -> Vec<f32> {
    let n = len.ceil() as usize + 1;
    let (dx, dy) = (dir.cos(), dir.sin());
    let offsets: Vec<(f32, f32)> = (0..n)
        .map(|i| {
            let t = len * (i as f32 / (n - 1) as f32 - 0.5);
            (t * dx, t * dy)
        })
        .collect();
    let at = |x: f32, y: f32| {
        let x = x.clamp(0.0, (w - 1) as f32);
        let y = y.clamp(0.0, (h - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
        let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        for x in 0..w {
            let s: f32 = offsets
                .iter()
                .map(|(ox, oy)| at(x as f32 + ox, y as f32 + oy))
                .sum();
            out[y * w + x] = s / n as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blurs_keep_a_flat_field_and_spread_an_edge() {
        let (w, h) = (16, 8);
        let mut flat = vec![0.5f32; w * h];
        gaussian_blur(&mut flat, w, h, 1.5);
        assert!(flat.iter().all(|v| (v - 0.5).abs() < 1e-5));
        let edge: Vec<f32> = (0..w * h)
            .map(|i| if i % w < 8 { 0.0 } else { 1.0 })
            .collect();
        let streak = motion_blur(&edge, w, h, 4.0, 0.0);
        let row = &streak[4 * w..5 * w];
        assert!(row[7] > 0.0 && row[8] < 1.0, "edge not spread: {row:?}");
        assert!(row[0] == 0.0 && row[15] == 1.0);
    }

    #[test]
    fn jpeg_round_trip_keeps_the_size_and_is_close() {
        let img = RgbImage::from_fn(40, 24, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 10) as u8, 128])
        });
        let (back, bytes) = jpeg_round_trip(&img, 80).unwrap();
        assert_eq!(back.dimensions(), img.dimensions());
        assert_eq!(&bytes[..2], &[0xFF, 0xD8], "not a JPEG stream");
        let err: f64 = img
            .as_raw()
            .iter()
            .zip(back.as_raw())
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
            .sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(err < 6.0, "mean error {err}");
    }
}
