//! Training patches: random crops of the prepared image, half of them centred on a random
//! foreground pixel (nnU-Net's foreground oversampling), so a small structure on a large
//! slice is seen often while the rest of the slice still teaches what is not the label.
//! Crops cut the cost of a step by (size/crop)^2; the network, being fully convolutional,
//! still runs on the whole image at inference.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Fraction of crops centred on the foreground.
pub const FOREGROUND_FRACTION: f64 = 0.5;

/// Cuts a `crop x crop` patch from `input` (`[C, size, size]`) and `mask` (`[size, size]`).
pub fn random_crop(
    input: &[f32],
    mask: &[u8],
    size: usize,
    crop: usize,
    rng: &mut ChaCha8Rng,
) -> (Vec<f32>, Vec<u8>) {
    if crop >= size {
        return (input.to_vec(), mask.to_vec());
    }
    let max = size - crop;
    let centred = rng.random_bool(FOREGROUND_FRACTION);
    let foreground = centred.then(|| pick_foreground(mask, rng)).flatten();
    let (x0, y0) = match foreground {
        Some(p) => {
            let (x, y) = (p % size, p / size);
            (
                x.saturating_sub(crop / 2).min(max),
                y.saturating_sub(crop / 2).min(max),
            )
        }
        None => (rng.random_range(0..=max), rng.random_range(0..=max)),
    };
    let channels = input.len() / (size * size);
    let mut out = Vec::with_capacity(channels * crop * crop);
    for c in 0..channels {
        let plane = &input[c * size * size..(c + 1) * size * size];
        for y in y0..y0 + crop {
            out.extend_from_slice(&plane[y * size + x0..y * size + x0 + crop]);
        }
    }
    let mut m = Vec::with_capacity(crop * crop);
    for y in y0..y0 + crop {
        m.extend_from_slice(&mask[y * size + x0..y * size + x0 + crop]);
    }
    (out, m)
}

fn pick_foreground(mask: &[u8], rng: &mut ChaCha8Rng) -> Option<usize> {
    let count = mask.iter().filter(|&&v| v != 0).count();
    if count == 0 {
        return None;
    }
    let k = rng.random_range(0..count);
    mask.iter()
        .enumerate()
        .filter(|&(_, &v)| v != 0)
        .nth(k)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crops_keep_image_and_mask_aligned_and_often_hold_the_foreground() {
        let size = 32;
        // Image value encodes the pixel index; one foreground pixel at (25, 3).
        let input: Vec<f32> = (0..size * size).map(|i| i as f32).collect();
        let mut mask = vec![0u8; size * size];
        mask[3 * size + 25] = 1;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut with_fg = 0;
        for _ in 0..100 {
            let (img, m) = random_crop(&input, &mask, size, 8, &mut rng);
            assert_eq!((img.len(), m.len()), (64, 64));
            for (v, l) in img.iter().zip(&m) {
                assert_eq!(*l == 1, *v as usize == 3 * size + 25);
            }
            with_fg += m.contains(&1) as usize;
        }
        assert!(with_fg >= 35, "foreground in {with_fg}/100 crops");
    }
}
