//! Random fields and whole-slice filters: seed hashing, value noise, smooth curves along z,
//! partial-volume blur, reconstruction-kernel sharpening, CT noise and the display window.

use rand::{Rng, RngCore};

use super::raster::Bounds;

/// SplitMix64 finaliser: turns structured seeds (small integers, xors) into well-mixed ones.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a: folds a name into a seed; unlike `DefaultHasher` it is stable across Rust versions.
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// Uniform sample in `[lo, hi)`; tolerates `lo == hi` (unlike `random_range`).
pub fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// Approximately standard normal (Irwin-Hall of four bytes): cheap enough to call per pixel.
pub fn gauss(rng: &mut impl RngCore) -> f32 {
    let r = rng.next_u32();
    let s = (r & 0xFF) + ((r >> 8) & 0xFF) + ((r >> 16) & 0xFF) + (r >> 24);
    (s as f32 - 510.0) * (1.0 / 147.8)
}

fn smoothstep(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth random field in [-1, 1] over a world-space rectangle: random values on a square
/// lattice, interpolated with smoothstep. Sampling outside the rectangle clamps to its edge.
pub struct ValueNoise {
    x0: f32,
    y0: f32,
    inv_cell: f32,
    cols: usize,
    rows: usize,
    values: Vec<f32>,
}

impl ValueNoise {
    /// Noise covering `b` with one random value per `cell` pixels.
    pub fn over(rng: &mut impl Rng, b: &Bounds, cell: f32) -> Self {
        Self::new(rng, b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0, cell)
    }

    pub fn new(rng: &mut impl Rng, x0: f32, y0: f32, width: f32, height: f32, cell: f32) -> Self {
        let cols = (width / cell).ceil().max(1.0) as usize + 2;
        let rows = (height / cell).ceil().max(1.0) as usize + 2;
        let values = (0..cols * rows).map(|_| uniform(rng, -1.0, 1.0)).collect();
        Self {
            x0,
            y0,
            inv_cell: 1.0 / cell,
            cols,
            rows,
            values,
        }
    }

    pub fn at(&self, x: f32, y: f32) -> f32 {
        let fx = ((x - self.x0) * self.inv_cell).clamp(0.0, (self.cols - 2) as f32);
        let fy = ((y - self.y0) * self.inv_cell).clamp(0.0, (self.rows - 2) as f32);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (smoothstep(fx - ix as f32), smoothstep(fy - iy as f32));
        let i = iy * self.cols + ix;
        let top = self.values[i] + (self.values[i + 1] - self.values[i]) * tx;
        let j = i + self.cols;
        let bottom = self.values[j] + (self.values[j + 1] - self.values[j]) * tx;
        top + (bottom - top) * ty
    }
}

const KNOTS: usize = 8;

/// Smooth periodic random curve in [-1, 1]: how a patient's anatomy drifts from slice to slice.
pub struct ZCurve {
    knots: [f32; KNOTS],
    inv_spacing: f32,
    phase: f32,
}

impl ZCurve {
    /// `spacing`: distance between independent knots, in the caller's z units.
    pub fn new(rng: &mut impl Rng, spacing: f32) -> Self {
        let mut knots = [0.0; KNOTS];
        for k in &mut knots {
            *k = uniform(rng, -1.0, 1.0);
        }
        Self {
            knots,
            inv_spacing: 1.0 / spacing,
            phase: uniform(rng, 0.0, KNOTS as f32),
        }
    }

    pub fn at(&self, z: f32) -> f32 {
        let u = z * self.inv_spacing + self.phase;
        let base = u.floor();
        let i = (base as i64).rem_euclid(KNOTS as i64) as usize;
        let t = smoothstep(u - base);
        self.knots[i] + (self.knots[(i + 1) % KNOTS] - self.knots[i]) * t
    }
}

/// Convolves rows then columns with a symmetric kernel (odd length), clamping at the borders.
fn convolve_separable(buf: &mut [f32], w: usize, h: usize, kernel: &[f32]) {
    let r = kernel.len() / 2;
    let mut tmp = vec![0.0f32; buf.len()];
    for y in 0..h {
        let row = &buf[y * w..(y + 1) * w];
        let out = &mut tmp[y * w..(y + 1) * w];
        for (x, o) in out.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (k, &kv) in kernel.iter().enumerate() {
                let xi = (x + k).saturating_sub(r).min(w - 1);
                acc += kv * row[xi];
            }
            *o = acc;
        }
    }
    // Column pass row by row so memory is walked sequentially.
    for y in 0..h {
        let out = &mut buf[y * w..(y + 1) * w];
        out.fill(0.0);
        for (k, &kv) in kernel.iter().enumerate() {
            let yi = (y + k).saturating_sub(r).min(h - 1);
            let src = &tmp[yi * w..(yi + 1) * w];
            for (o, &s) in out.iter_mut().zip(src) {
                *o += kv * s;
            }
        }
    }
}

/// Partial-volume blur: a normalised gaussian of `sigma` pixels (no-op for tiny sigma).
pub fn gaussian_blur(buf: &mut [f32], w: usize, h: usize, sigma: f32) {
    if sigma < 0.05 {
        return;
    }
    convolve_separable(buf, w, h, &gaussian_kernel(sigma));
}

/// Normalised 1-D gaussian, radius 3 sigma.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i32;
    let mut kernel: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    kernel
}

/// Edge-enhancing ("bone") reconstruction kernel: unsharp mask against a [1 2 1] blur.
pub fn sharpen(buf: &mut [f32], w: usize, h: usize, amount: f32) {
    if amount <= 0.0 {
        return;
    }
    let mut soft = buf.to_vec();
    convolve_separable(&mut soft, w, h, &[0.25, 0.5, 0.25]);
    for (v, s) in buf.iter_mut().zip(&soft) {
        *v += amount * (*v - s);
    }
}

/// Unit-variance CT noise field with a gaussian grain of `grain` pixels (the noise texture of
/// the reconstruction kernel); renormalised after filtering.
pub fn ct_noise(w: usize, h: usize, rng: &mut impl RngCore, grain: f32) -> Vec<f32> {
    let mut noise: Vec<f32> = (0..w * h).map(|_| gauss(rng)).collect();
    if grain >= 0.05 {
        let kernel = gaussian_kernel(grain);
        convolve_separable(&mut noise, w, h, &kernel);
        // Std of unit white noise through a separable filter = product of the 1-D L2 norms.
        let gain = 1.0 / kernel.iter().map(|k| k * k).sum::<f32>();
        noise.iter_mut().for_each(|n| *n *= gain);
    }
    noise
}

/// Maps HU to 8-bit grey through a display window.
pub fn window(hu: f32, lower: f32, width: f32) -> u8 {
    ((hu - lower) * (255.0 / width)).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn curves_and_noise_are_smooth_and_bounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let c = ZCurve::new(&mut rng, 4.0);
        for i in 0..400 {
            let z = i as f32 * 0.1 - 10.0;
            assert!(c.at(z).abs() <= 1.0);
            assert!(
                (c.at(z + 0.1) - c.at(z)).abs() < 0.1,
                "curve jumps at z={z}"
            );
        }
        let n = ValueNoise::new(&mut rng, -5.0, -5.0, 10.0, 10.0, 2.0);
        assert!((n.at(0.0, 0.0) - n.at(0.05, 0.0)).abs() < 0.1);
        assert!(n.at(100.0, -100.0).abs() <= 1.0);
    }

    #[test]
    fn noise_has_requested_sigma() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for grain in [0.0, 0.6, 1.0] {
            let buf = ct_noise(128, 128, &mut rng, grain);
            let var = buf.iter().map(|v| v * v).sum::<f32>() / buf.len() as f32;
            assert!(
                (var.sqrt() - 1.0).abs() < 0.08,
                "grain {grain}: std {}",
                var.sqrt()
            );
        }
    }

    #[test]
    fn blur_preserves_mean() {
        let mut buf: Vec<f32> = (0..64 * 64).map(|i| (i % 7) as f32).collect();
        let before: f32 = buf.iter().sum();
        gaussian_blur(&mut buf, 64, 64, 1.0);
        let after: f32 = buf.iter().sum();
        assert!((before - after).abs() / before < 0.01);
    }
}
