//! Pictures for reviewing a model against ground truth: the prediction as the usual overlay,
//! the truth's outline drawn over it in white, and a strip of several slices side by side.

use image::{DynamicImage, Rgb, RgbImage, imageops};

use crate::image_io::Mask;
use crate::postprocess::overlay;

const TRUTH: Rgb<u8> = Rgb([255, 255, 255]);

/// Prediction overlay with the ground truth's class boundaries in white.
pub fn overlay_with_truth(img: &DynamicImage, pred: &Mask, truth: &Mask) -> RgbImage {
    let mut out = overlay(img, pred);
    let (w, h) = (truth.width, truth.height);
    let at = |x: usize, y: usize| truth.data[y * w + x];
    for y in 0..h {
        for x in 0..w {
            let c = at(x, y);
            // A labelled pixel with a 4-neighbour of another class: a one-pixel outline.
            let edge = c != 0
                && ((x + 1 < w && at(x + 1, y) != c)
                    || (y + 1 < h && at(x, y + 1) != c)
                    || (x > 0 && at(x - 1, y) != c)
                    || (y > 0 && at(x, y - 1) != c));
            if edge {
                out.put_pixel(x as u32, y as u32, TRUTH);
            }
        }
    }
    out
}

/// Images side by side, each scaled to `height`, with a 4-pixel dark gap.
pub fn strip(images: &[RgbImage], height: u32) -> RgbImage {
    const GAP: u32 = 4;
    let scaled: Vec<RgbImage> = images
        .iter()
        .map(|i| {
            let w = (i.width() as u64 * height as u64 / i.height().max(1) as u64).max(1) as u32;
            imageops::resize(i, w, height, imageops::FilterType::Triangle)
        })
        .collect();
    let width = scaled
        .iter()
        .map(|i| i.width() + GAP)
        .sum::<u32>()
        .saturating_sub(GAP);
    let mut out = RgbImage::from_pixel(width.max(1), height, Rgb([20, 20, 20]));
    let mut x = 0i64;
    for i in &scaled {
        imageops::replace(&mut out, i, x, 0);
        x += (i.width() + GAP) as i64;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truth_outline_is_white_and_prediction_keeps_its_colour() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(6, 6, image::Luma([50])));
        let mut truth = Mask {
            width: 6,
            height: 6,
            data: vec![0; 36],
        };
        for y in 1..5 {
            for x in 1..5 {
                truth.data[y * 6 + x] = 1;
            }
        }
        let pred = Mask {
            width: 6,
            height: 6,
            data: vec![0; 36],
        };
        let out = overlay_with_truth(&img, &pred, &truth);
        assert_eq!(
            *out.get_pixel(1, 1),
            TRUTH,
            "corner of the truth square is outline"
        );
        assert_eq!(
            out.get_pixel(2, 2).0,
            [50, 50, 50],
            "inside the square: the image"
        );
        assert_eq!(out.get_pixel(0, 0).0, [50, 50, 50], "outside: the image");
        let s = strip(&[out.clone(), out], 12);
        assert_eq!((s.width(), s.height()), (12 + 4 + 12, 12));
    }
}
