//! The monitor: how an image's display values become light. Display gamma, room light
//! reflected by the glass (what lifts black to the dark gray of a photo), and the RGB
//! sub-pixel grid, which the camera's sampling aliases into moire.

use image::RgbImage;
use rand::Rng;

use super::PhoneCapture;

/// The camera encodes with this gamma, so a monitor at exactly this gamma, photographed
/// with no other effect, gives the screenshot back.
pub const CAMERA_GAMMA: f32 = 2.2;

/// Fraction of a pixel's height taken by the dark gap between pixel rows.
const ROW_GAP: f64 = 0.15;

#[derive(Debug, Clone)]
pub(crate) struct Monitor {
    /// Linear light for each display value 0..=255 at this monitor's gamma.
    lut: Vec<f32>,
    /// Monitor pixels per image pixel.
    pixels_per_pixel: f64,
    /// 0 = no visible grid (the image is sampled directly: a screenshot at severity 0).
    contrast: f32,
    /// Reflected room light (linear), per channel.
    pub ambient: [f32; 3],
}

impl Monitor {
    pub fn sample(cfg: &PhoneCapture, s: f32, rng: &mut impl Rng) -> Self {
        let gamma = (CAMERA_GAMMA + s * cfg.gamma_shift.signed(rng)).clamp(1.0, 4.0);
        let pixels_per_pixel = f64::from(cfg.monitor_pixels_per_pixel.sample(rng));
        let contrast = (s * cfg.subpixel_contrast.sample(rng)).clamp(0.0, 1.0);
        let ambient = s * cfg.ambient_reflection.sample(rng);
        let lut = (0..256).map(|v| (v as f32 / 255.0).powf(gamma)).collect();
        Self {
            lut,
            pixels_per_pixel,
            contrast,
            // Tinted later by the lighting's colour cast (the room light's colour).
            ambient: [ambient; 3],
        }
    }

    /// Light emitted where image point `(u, v)` (image pixels, inside the image) is shown.
    pub fn emit(&self, image: &RgbImage, u: f64, v: f64) -> [f32; 3] {
        let (w, h) = image.dimensions();
        if self.contrast <= 0.0 {
            let p = image.get_pixel(clamp_index(u, w), clamp_index(v, h));
            return p.0.map(|c| self.lut[c as usize]);
        }
        // The monitor shows one value per monitor pixel (its centre's image pixel); inside
        // it, the light comes from three vertical stripes R, G, B and not from the gap
        // between rows. The weights average to 1 over a pixel, so brightness is kept.
        let (mu, mv) = (u * self.pixels_per_pixel, v * self.pixels_per_pixel);
        let (cu, cv) = (
            (mu.floor() + 0.5) / self.pixels_per_pixel,
            (mv.floor() + 0.5) / self.pixels_per_pixel,
        );
        let p = image.get_pixel(clamp_index(cu, w), clamp_index(cv, h));
        let stripe = ((mu - mu.floor()) * 3.0).floor().clamp(0.0, 2.0) as usize;
        let k = self.contrast;
        let row = if mv - mv.floor() >= 1.0 - ROW_GAP {
            1.0 - k
        } else {
            1.0 + k * (ROW_GAP / (1.0 - ROW_GAP)) as f32
        };
        let mut out = [0.0; 3];
        for (c, o) in out.iter_mut().enumerate() {
            let weight = 1.0 - k + if c == stripe { 3.0 * k } else { 0.0 };
            *o = self.lut[p[c] as usize] * weight * row;
        }
        out
    }
}

fn clamp_index(x: f64, n: u32) -> u32 {
    (x.floor().max(0.0) as u32).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn subpixel_grid_keeps_the_mean_and_modulates_the_channels() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut m = Monitor::sample(&PhoneCapture::default(), 1.0, &mut rng);
        m.pixels_per_pixel = 1.0;
        m.contrast = 0.5;
        let img = RgbImage::from_pixel(4, 4, image::Rgb([200, 200, 200]));
        let full = m.lut[200];
        // Average each channel over one monitor pixel, finely sampled.
        let n = 60;
        let mut sum = [0.0f64; 3];
        let (mut lo, mut hi) = (f32::MAX, 0.0f32);
        for i in 0..n {
            for j in 0..n {
                let e = m.emit(
                    &img,
                    1.0 + (i as f64 + 0.5) / n as f64,
                    1.0 + (j as f64 + 0.5) / n as f64,
                );
                for c in 0..3 {
                    sum[c] += f64::from(e[c]);
                }
                lo = lo.min(e[0]);
                hi = hi.max(e[0]);
            }
        }
        for s in sum {
            let mean = s / (n * n) as f64;
            assert!(
                (mean - f64::from(full)).abs() < 0.01 * f64::from(full),
                "{mean} vs {full}"
            );
        }
        assert!(
            hi > 1.5 * full && lo < 0.7 * full,
            "red stripe {lo}..{hi} around {full}"
        );
    }

    #[test]
    fn no_contrast_reads_the_image_pixel_directly() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let m = Monitor::sample(&PhoneCapture::with_severity(0.0), 0.0, &mut rng);
        let mut img = RgbImage::new(3, 3);
        img.put_pixel(1, 2, image::Rgb([10, 128, 255]));
        let e = m.emit(&img, 1.5, 2.5);
        let back = e.map(|l| (l.powf(1.0 / CAMERA_GAMMA) * 255.0).round() as u8);
        assert_eq!(back, [10, 128, 255]);
        assert_eq!(m.ambient, [0.0; 3]);
    }
}
