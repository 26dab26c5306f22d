//! Gray images deeper than 8 bits (16-bit PNG exports of CT and MR slices) brought to the 8
//! bits every model here reads. `image`'s own conversion divides by 257, which leaves a 12-bit
//! scan (values up to 4095) almost black: levels 0..15 out of 255.

use image::{DynamicImage, GrayImage, ImageBuffer, Luma};

/// The percentiles mapped to 0 and 255: the volume importers' default for MRI, whose values
/// have no fixed scale.
const LOW_PERCENTILE: f64 = 0.5;
const HIGH_PERCENTILE: f64 = 99.5;

/// 16-bit gray (with or without alpha) mapped to 8 bits by the image's own 0.5 and 99.5
/// percentiles; every other image is returned as it is.
pub fn gray_to_8_bits(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageLuma16(gray) => DynamicImage::ImageLuma8(stretch(&gray)),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma8(stretch(&img.to_luma16())),
        other => other,
    }
}

fn stretch(gray: &ImageBuffer<Luma<u16>, Vec<u16>>) -> GrayImage {
    // A histogram over the 65536 levels finds both percentiles in one pass, without sorting.
    let mut histogram = vec![0u32; 1 << 16];
    for &v in gray.as_raw() {
        histogram[usize::from(v)] += 1;
    }
    let n = gray.as_raw().len();
    let level_at = |p: f64| {
        let rank = ((p / 100.0) * (n.saturating_sub(1)) as f64).round() as u64;
        let mut seen = 0u64;
        for (level, &count) in histogram.iter().enumerate() {
            seen += u64::from(count);
            if seen > rank {
                return level as f32;
            }
        }
        u16::MAX as f32
    };
    let (lo, hi) = (level_at(LOW_PERCENTILE), level_at(HIGH_PERCENTILE));
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    GrayImage::from_fn(gray.width(), gray.height(), |x, y| {
        let v = f32::from(gray.get_pixel(x, y).0[0]);
        let mapped = if hi > lo {
            (v - lo) * scale
        } else if v > lo {
            255.0
        } else {
            0.0
        };
        Luma([mapped.round().clamp(0.0, 255.0) as u8])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray16(w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> ImageBuffer<Luma<u16>, Vec<u16>> {
        ImageBuffer::from_fn(w, h, |x, y| Luma([f(x, y)]))
    }

    #[test]
    fn a_12_bit_scan_fills_the_8_bit_range() {
        // Values 1000..=3000, as a CT slice stored as HU + 1024 would hold.
        let img = gray16(201, 10, |x, _| 1000 + 10 * x as u16);
        let out = gray_to_8_bits(DynamicImage::ImageLuma16(img)).into_luma8();
        let (min, max) = out
            .as_raw()
            .iter()
            .fold((255, 0), |(a, b), &v| (a.min(v), b.max(v)));
        assert_eq!((min, max), (0, 255));
        // The middle of the range lands in the middle.
        assert!((126..=129).contains(&out.get_pixel(100, 0).0[0]));
    }

    #[test]
    fn outliers_beyond_the_percentiles_saturate_instead_of_compressing_the_rest() {
        let img = gray16(100, 100, |x, y| {
            if (x, y) == (0, 0) {
                65535
            } else {
                2000 + (x as u16 % 2) * 100
            }
        });
        let out = gray_to_8_bits(DynamicImage::ImageLuma16(img)).into_luma8();
        assert_eq!(out.get_pixel(0, 0).0[0], 255);
        assert_eq!(out.get_pixel(1, 1).0[0], 255); // 2100: the 99.5th percentile
        assert_eq!(out.get_pixel(2, 1).0[0], 0); // 2000: the 0.5th
    }

    #[test]
    fn flat_images_and_8_bit_images_pass_through() {
        let flat = gray_to_8_bits(DynamicImage::ImageLuma16(gray16(4, 4, |_, _| 3000)));
        assert!(flat.into_luma8().as_raw().iter().all(|&v| v == 0));
        let eight = DynamicImage::ImageLuma8(GrayImage::from_pixel(3, 3, Luma([17])));
        assert_eq!(gray_to_8_bits(eight.clone()), eight);
    }
}
