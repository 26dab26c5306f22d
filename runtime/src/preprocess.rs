//! Turning a decoded image into the model's input tensor, exactly as the card says.
//! The trainer uses this same function, so training and bedside inputs cannot drift apart.

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage};

use crate::card::InputSpec;
use crate::image_io::{as_gray, as_rgb};

/// `[channels, height, width]` values (row-major) for a `[1, C, H, W]` input.
pub fn to_model_input(img: &DynamicImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = (spec.width as u32, spec.height as u32);
    let plane = spec.width * spec.height;
    match spec.channels {
        1 => gray_to_model_input(&as_gray(img), spec),
        _ => {
            let rgb = image::imageops::resize(&*as_rgb(img), w, h, FilterType::Triangle);
            let mut out = vec![0.0; plane * 3];
            for (i, p) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    out[c * plane + i] = spec.normalize(p.0[c]);
                }
            }
            out
        }
    }
}

/// Single-channel input from an 8-bit gray image (resized to the model's size).
pub fn gray_to_model_input(gray: &GrayImage, spec: &InputSpec) -> Vec<f32> {
    let (w, h) = (spec.width as u32, spec.height as u32);
    let resized;
    let src = if gray.dimensions() == (w, h) {
        gray
    } else {
        resized = image::imageops::resize(gray, w, h, FilterType::Triangle);
        &resized
    };
    src.as_raw().iter().map(|&v| spec.normalize(v)).collect()
}

/// Resizes a class-index mask with nearest-neighbour sampling (labels must not blend).
pub fn resize_mask(mask: &GrayImage, width: u32, height: u32) -> GrayImage {
    if mask.dimensions() == (width, height) {
        return mask.clone();
    }
    image::imageops::resize(mask, width, height, FilterType::Nearest)
}

/// Mirrors every row of a row-major `[planes, h, w]` buffer left to right (model inputs,
/// logits and masks alike): the flip of training augmentation and of test-time augmentation.
pub fn mirror_rows<T>(data: &mut [T], width: usize) {
    for row in data.chunks_exact_mut(width) {
        row.reverse();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mirror_rows_reverses_each_row_of_each_plane() {
        let mut data = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        super::mirror_rows(&mut data, 3);
        assert_eq!(data, vec![3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
    }
}
