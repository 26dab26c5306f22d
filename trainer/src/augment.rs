//! Seeded data augmentation on prepared inputs; image and mask always move together.

use image::{ImageBuffer, Luma};
use imageproc::filter::gaussian_blur_f32;
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp_into};
use medseg_runtime::preprocess::mirror_rows;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// What a training sample may go through. The geometric part (rotation, zoom, shift) and the
/// MR-style intensity part (gamma, blur) are off by default; real scans vary in pose, field of
/// view, contrast and sharpness far more than the phantom does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Augment {
    pub flip: bool,
    /// Contrast is scaled by a factor in `1 ± contrast`.
    pub contrast: f32,
    /// Brightness is shifted by up to ± this (in normalized units).
    pub brightness: f32,
    /// Rotation about the image centre, uniform in ± this many degrees.
    pub rotate_degrees: f32,
    /// Isotropic scale, uniform in `1 ± zoom`.
    pub zoom: f32,
    /// Translation, uniform in ± this fraction of the side, independently in x and y.
    pub shift: f32,
    /// Gamma (non-linear contrast) on the sample's own min..max range, exponent log-uniform
    /// in `[1 / (1 + gamma), 1 + gamma]`: scanners and sequences weight tissues differently.
    pub gamma: f32,
    /// Gaussian blur of half the samples, sigma uniform in `(0, blur]` pixels: motion and
    /// low-resolution acquisitions soften edges (one test subject of the real MRI set does).
    pub blur: f32,
}

impl Default for Augment {
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

impl Augment {
    pub fn is_geometric(&self) -> bool {
        self.rotate_degrees > 0.0 || self.zoom > 0.0 || self.shift > 0.0
    }

    /// Draws one random similarity transform and applies it to a whole square sample:
    /// `input` is `[C, side, side]` (bilinear; outside filled with the sample's minimum, the
    /// scanner's background), `mask` is `[side, side]` (nearest neighbour; outside is class 0).
    /// Done before cropping, so rotated corners rarely reach the patch.
    pub fn warp(&self, input: &mut [f32], mask: &mut [u8], side: usize, rng: &mut ChaCha8Rng) {
        if !self.is_geometric() {
            return;
        }
        let draw = |rng: &mut ChaCha8Rng, r: f32| {
            if r > 0.0 {
                rng.random_range(-r..=r)
            } else {
                0.0
            }
        };
        let angle = draw(rng, self.rotate_degrees).to_radians();
        let scale = 1.0 + draw(rng, self.zoom);
        let (dx, dy) = (
            draw(rng, self.shift) * side as f32,
            draw(rng, self.shift) * side as f32,
        );
        let c = (side as f32 - 1.0) / 2.0;
        let projection = Projection::translate(c + dx, c + dy)
            * Projection::rotate(angle)
            * Projection::scale(scale, scale)
            * Projection::translate(-c, -c);
        let s = side as u32;
        let fill = input.iter().copied().fold(f32::INFINITY, f32::min);
        let mut out = ImageBuffer::<Luma<f32>, Vec<f32>>::new(s, s);
        for plane in input.chunks_exact_mut(side * side) {
            let src = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(s, s, plane.to_vec())
                .expect("plane is side x side");
            warp_into(
                &src,
                projection,
                Interpolation::Bilinear,
                Border::Constant(Luma([fill])),
                &mut out,
            );
            plane.copy_from_slice(out.as_raw());
        }
        let src = ImageBuffer::<Luma<u8>, Vec<u8>>::from_raw(s, s, mask.to_vec())
            .expect("mask is side x side");
        let mut warped = ImageBuffer::<Luma<u8>, Vec<u8>>::new(s, s);
        warp_into(
            &src,
            projection,
            Interpolation::Nearest,
            Border::Constant(Luma([0])),
            &mut warped,
        );
        mask.copy_from_slice(warped.as_raw());
    }

    /// Flip, blur, gamma and intensity jitter of one (cropped) sample in place: `input` is
    /// `[C, H, W]`, `mask` is `[H, W]`. Settings that are off draw no random numbers, so runs
    /// made before a setting existed replay the same samples.
    pub fn apply(&self, input: &mut [f32], mask: &mut [u8], width: usize, rng: &mut ChaCha8Rng) {
        if self.flip && rng.random_bool(0.5) {
            mirror_rows(input, width);
            mirror_rows(mask, width);
        }
        if self.blur > 0.0 && rng.random_bool(0.5) {
            let sigma = rng.random_range(0.0..=self.blur);
            blur_planes(input, width, mask.len() / width.max(1), sigma);
        }
        if self.gamma > 0.0 {
            let bound = (1.0 + self.gamma).ln();
            apply_gamma(input, rng.random_range(-bound..=bound).exp());
        }
        if self.contrast > 0.0 || self.brightness > 0.0 {
            let gain = 1.0 + rng.random_range(-self.contrast..=self.contrast);
            let shift = rng.random_range(-self.brightness..=self.brightness);
            for v in input.iter_mut() {
                *v = *v * gain + shift;
            }
        }
    }
}

/// Gaussian blur of every `height x width` plane of `input`. Below 0.1 px the kernel is the
/// identity to float precision (and imageproc refuses sigma 0), so nothing is done.
fn blur_planes(input: &mut [f32], width: usize, height: usize, sigma: f32) {
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

/// `v -> lo + (hi - lo) * ((v - lo) / (hi - lo))^exponent` over the sample's own range, so the
/// darkest and brightest values stay where they were (inputs are already normalized, and
/// negative; a power needs the 0..1 range).
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
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn flip_moves_image_and_mask_together_and_is_seeded() {
        let aug = Augment {
            flip: true,
            contrast: 0.0,
            brightness: 0.0,
            ..Augment::default()
        };
        let mut flipped_once = false;
        for seed in 0..8 {
            let mut img = vec![1.0, 2.0, 3.0, 4.0];
            let mut mask = vec![1, 0, 0, 0];
            aug.apply(&mut img, &mut mask, 2, &mut ChaCha8Rng::seed_from_u64(seed));
            // Pixel 0 had value 1.0 and label 1: wherever it went, both went.
            let pos = img.iter().position(|&v| v == 1.0).unwrap();
            assert_eq!(mask[pos], 1);
            flipped_once |= pos == 1;
            let mut again = vec![1.0, 2.0, 3.0, 4.0];
            let mut mask2 = vec![1, 0, 0, 0];
            aug.apply(
                &mut again,
                &mut mask2,
                2,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert_eq!(again, img);
        }
        assert!(flipped_once);
    }

    /// A bright square labelled 1 on a dark background: after any warp the label must sit on
    /// the bright pixels (both moved by the same transform) and the area must scale with zoom.
    #[test]
    fn warp_moves_image_and_mask_together() {
        let side = 64;
        let aug = Augment {
            rotate_degrees: 30.0,
            zoom: 0.2,
            shift: 0.1,
            ..Augment::default()
        };
        let square = || {
            let mut img = vec![0.0f32; side * side];
            let mut mask = vec![0u8; side * side];
            for y in 20..44 {
                for x in 24..40 {
                    img[y * side + x] = 1.0;
                    mask[y * side + x] = 1;
                }
            }
            (img, mask)
        };
        let mut changed = 0;
        for seed in 0..20 {
            let (mut img, mut mask) = square();
            let before = mask.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            aug.warp(&mut img, &mut mask, side, &mut rng);
            changed += (mask != before) as usize;
            let labelled = mask.iter().filter(|&&m| m == 1).count();
            // 24x16 = 384 px, zoom 0.8..1.2 gives 246..553 px.
            assert!(
                (200..=600).contains(&labelled),
                "seed {seed}: {labelled} px"
            );
            for (v, m) in img.iter().zip(&mask) {
                // Nearest-neighbour labels can differ from bilinear intensities only on the
                // one-pixel rim where the image is blended.
                if *m == 1 {
                    assert!(*v > 0.0, "seed {seed}: a label on the dark background");
                } else {
                    assert!(*v < 1.0, "seed {seed}: a bright pixel lost its label");
                }
            }
            let (mut again_img, mut again_mask) = square();
            aug.warp(
                &mut again_img,
                &mut again_mask,
                side,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert_eq!(again_mask, mask, "seeded");
        }
        assert!(
            changed >= 18,
            "the warp moved the mask in {changed}/20 draws"
        );
    }

    #[test]
    fn warp_without_geometric_settings_is_the_identity() {
        let mut img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut mask: Vec<u8> = (0..16).map(|v| (v % 2) as u8).collect();
        let (i0, m0) = (img.clone(), mask.clone());
        Augment::default().warp(&mut img, &mut mask, 4, &mut ChaCha8Rng::seed_from_u64(0));
        assert_eq!((img, mask), (i0, m0));
    }

    fn intensity_only(gamma: f32, blur: f32) -> Augment {
        Augment {
            flip: false,
            contrast: 0.0,
            brightness: 0.0,
            gamma,
            blur,
            ..Augment::default()
        }
    }

    /// A ramp: gamma must keep its ends and its order, bend the middle, and leave the mask.
    #[test]
    fn gamma_keeps_range_and_order_and_bends_the_middle() {
        let ramp: Vec<f32> = (0..64).map(|v| v as f32 / 63.0 * 4.0 - 2.0).collect();
        let mut bent = 0;
        for seed in 0..16 {
            let (mut img, mut mask) = (ramp.clone(), vec![1u8; 64]);
            intensity_only(1.0, 0.0).apply(
                &mut img,
                &mut mask,
                8,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            assert!(
                (img[0] + 2.0).abs() < 1e-5 && (img[63] - 2.0).abs() < 1e-5,
                "ends moved"
            );
            assert!(img.windows(2).all(|w| w[0] <= w[1]), "order changed");
            assert_eq!(mask, vec![1u8; 64]);
            bent += ((img[32] - ramp[32]).abs() > 0.05) as usize;
        }
        assert!(bent >= 12, "gamma bent the middle in {bent}/16 draws");
    }

    /// A checkerboard: blur must lower its contrast in about half the draws, keep its mean
    /// and never touch the mask.
    #[test]
    fn blur_softens_half_the_samples_and_keeps_the_mask() {
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
        let spread = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32;
        let mut softened = 0;
        for seed in 0..40 {
            let (mut img, mut mask) = (board.clone(), vec![0u8; side * side]);
            intensity_only(0.0, 2.0).apply(
                &mut img,
                &mut mask,
                side,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            let mean = img.iter().sum::<f32>() / img.len() as f32;
            assert!(mean.abs() < 0.05, "seed {seed}: mean moved to {mean}");
            assert_eq!(mask, vec![0u8; side * side]);
            softened += (spread(&img) < 0.9) as usize;
        }
        assert!(
            (10..=30).contains(&softened),
            "blurred {softened}/40 samples"
        );
    }

    /// Each channel is blurred on its own: two constant planes stay constant (a blur over the
    /// stacked planes would blend them where they meet).
    #[test]
    fn blur_keeps_channels_apart() {
        let side = 8;
        let mut img: Vec<f32> = [vec![1.0f32; side * side], vec![-1.0f32; side * side]].concat();
        blur_planes(&mut img, side, side, 2.0);
        assert!(img[..side * side].iter().all(|v| (v - 1.0).abs() < 1e-5));
        assert!(img[side * side..].iter().all(|v| (v + 1.0).abs() < 1e-5));
    }

    /// Off settings draw nothing: a run made before gamma/blur existed replays the same flips.
    #[test]
    fn off_intensity_settings_draw_no_random_numbers() {
        let mut a = ChaCha8Rng::seed_from_u64(7);
        let mut b = ChaCha8Rng::seed_from_u64(7);
        let (mut img, mut mask) = (vec![0.5f32; 4], vec![0u8; 4]);
        Augment::default().apply(&mut img, &mut mask, 2, &mut a);
        // Default = flip + contrast/brightness: one bool and two ranges.
        let d = Augment::default();
        let _ = b.random_bool(0.5);
        let _ = b.random_range(-d.contrast..=d.contrast);
        let _ = b.random_range(-d.brightness..=d.brightness);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }
}
