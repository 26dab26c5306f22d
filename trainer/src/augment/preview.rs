//! What an augmentation pipeline does, as pictures: each sample as the model sees it, then
//! several augmented versions of it with the mask's outline (`medseg-train augment-preview`).

use image::{Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use medseg_runtime::InputSpec;
use medseg_runtime::image_io::Mask;

use super::Pipeline;
use crate::panels::outline;

/// A model input `[C, side, side]` (model units) back in display colours: RGB as it is,
/// gray (or the middle of three stacked slices) on every channel.
pub fn to_rgb(input: &[f32], spec: &InputSpec, side: usize) -> RgbImage {
    let plane = side * side;
    let channels = input.len() / plane.max(1);
    let byte = |v: f32| ((v * spec.std + spec.mean).clamp(0.0, 1.0) * 255.0).round() as u8;
    let rgb = channels == 3 && !spec.stacked_neighbours;
    let gray_channel = if channels == 3 { 1 } else { 0 };
    RgbImage::from_fn(side as u32, side as u32, |x, y| {
        let p = y as usize * side + x as usize;
        Rgb(if rgb {
            std::array::from_fn(|c| byte(input[c * plane + p]))
        } else {
            [byte(input[gray_channel * plane + p]); 3]
        })
    })
}

/// A sample and its mask as a panel with the mask outlined.
pub fn panel(input: &[f32], mask: &[u8], spec: &InputSpec, side: usize) -> RgbImage {
    let mask = Mask {
        width: side,
        height: side,
        data: mask.to_vec(),
    };
    outline(&to_rgb(input, spec, side), &mask)
}

/// `variants` augmented patches (side `crop`, or the whole input when `crop` is 0) of one
/// sample, each from its own generator seeded by `seed` and the variant's number, so a
/// preview is reproducible and a variant does not depend on how many are asked for.
pub fn variants(
    pipeline: &Pipeline,
    input: &[f32],
    mask: &[u8],
    spec: &InputSpec,
    crop: usize,
    variants: usize,
    seed: u64,
) -> Vec<RgbImage> {
    let side = if crop == 0 {
        spec.width
    } else {
        crop.min(spec.width)
    };
    (0..variants)
        .map(|v| {
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(v as u64));
            let (img, m) = pipeline.patch(input, mask, spec, side, &mut rng);
            panel(&img, &m, spec, side)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{spec, square};
    use super::*;

    #[test]
    fn gray_inputs_come_back_as_their_display_values() {
        let (img, _) = square(32, 1);
        let rgb = to_rgb(&img, &spec(1), 32);
        // Display 0.1 outside the square, 0.9 inside (square() adds < 0.007 of texture).
        assert!((rgb.get_pixel(0, 0).0[0] as i32 - 26).abs() <= 2);
        assert!((rgb.get_pixel(16, 16).0[0] as i32 - 230).abs() <= 2);
        assert_eq!(rgb.get_pixel(16, 16).0[0], rgb.get_pixel(16, 16).0[2]);
    }

    #[test]
    fn variants_are_seeded_and_differ_from_each_other() {
        let pipeline = Pipeline::preset("strong").unwrap();
        let (img, mask) = square(32, 1);
        let a = variants(&pipeline, &img, &mask, &spec(1), 0, 3, 7);
        let b = variants(&pipeline, &img, &mask, &spec(1), 0, 2, 7);
        assert_eq!(a.len(), 3);
        assert_eq!(
            a[..2],
            b[..],
            "a variant does not depend on how many are drawn"
        );
        assert_ne!(a[0], a[1]);
        let crops = variants(&pipeline, &img, &mask, &spec(1), 24, 1, 7);
        assert_eq!(crops[0].dimensions(), (24, 24));
    }

    /// The outline drawn on a flipped sample follows the flipped mask.
    #[test]
    fn the_outline_moves_with_the_geometry() {
        let flip = Pipeline {
            steps: vec![super::super::Step::Flip(super::super::geometry::Flip {
                p: 1.0,
                vertical: false,
            })],
        };
        // An off-centre square so that a left-right flip moves it.
        let s = spec(1);
        let side = s.width;
        let mut img = vec![(0.1 - s.mean) / s.std; side * side];
        let mut mask = vec![0u8; side * side];
        for y in 4..8 {
            for x in 1..5 {
                img[y * side + x] = (0.9 - s.mean) / s.std;
                mask[y * side + x] = 1;
            }
        }
        let out = &variants(&flip, &img, &mask, &s, 0, 1, 0)[0];
        let red = |x, y| out.get_pixel(x, y).0 == [255, 40, 40];
        assert!(
            red(side as u32 - 2, 4) && !red(1, 4),
            "outline on the flipped side"
        );
    }
}
