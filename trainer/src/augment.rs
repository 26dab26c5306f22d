//! Seeded data augmentation on prepared inputs; image and mask always move together.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Foundation-level augmentation: horizontal flip and intensity jitter.
/// (Geometric and phone-capture transforms belong to the SAS work.)
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    pub flip: bool,
    /// Contrast is scaled by a factor in `1 ± contrast`.
    pub contrast: f32,
    /// Brightness is shifted by up to ± this (in normalized units).
    pub brightness: f32,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            flip: true,
            contrast: 0.1,
            brightness: 0.1,
        }
    }
}

impl Augment {
    /// Augments one sample in place: `input` is `[C, H, W]`, `mask` is `[H, W]`.
    pub fn apply(&self, input: &mut [f32], mask: &mut [u8], width: usize, rng: &mut ChaCha8Rng) {
        if self.flip && rng.random_bool(0.5) {
            for row in input.chunks_exact_mut(width) {
                row.reverse();
            }
            for row in mask.chunks_exact_mut(width) {
                row.reverse();
            }
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
}
