//! From logits to what a person sees: class mask and confidence at the input's own size,
//! and an overlay picture (the per-class measurements are in [`crate::measure`]).

use std::convert::Infallible;

use image::{DynamicImage, GrayImage, RgbImage};

use crate::cleanup::Cleanup;
use crate::image_io::{Mask, as_gray};

/// A segmentation at the size of the original image.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub mask: Mask,
    /// Per class, the sum over the pixels labelled with it of their softmax probability of
    /// that class: what every reported confidence is a mean of. A per-pixel map is not kept:
    /// on a 24 MP phone photo it took 96 MB, a third of the run's peak memory. f64, because
    /// an f32 running sum stops growing at 2^24 (it gave 0.70 for pixels that all held 0.95).
    pub confidence_sums: Vec<f64>,
}

impl Prediction {
    /// Mean confidence of the chosen class over the whole image.
    pub fn mean_confidence(&self) -> f32 {
        let sum: f64 = self.confidence_sums.iter().sum();
        (sum / self.mask.data.len().max(1) as f64) as f32
    }

    /// Mean confidence over the pixels of any class but background; None when there are none.
    pub fn foreground_mean_confidence(&self) -> Option<f32> {
        let pixels = self.mask.data.iter().filter(|&&c| c != 0).count();
        let sum: f64 = self.confidence_sums.iter().skip(1).sum();
        (pixels > 0).then(|| (sum / pixels as f64) as f32)
    }
}

/// Up-samples each class's logits bilinearly to `out_w x out_h`, takes the softmax argmax and
/// applies `cleanup` to the mask. `logits` is `[classes, h, w]` row-major.
///
/// Works one output row at a time: full-size logit planes of a 24 MP phone photo would take
/// 4 bytes x classes x 24 M, and a bedside board may have 2 GB in all.
pub fn logits_to_prediction(
    logits: &[f32],
    classes: usize,
    (w, h): (usize, usize),
    (out_w, out_h): (usize, usize),
    cleanup: &Cleanup,
) -> Prediction {
    assert_eq!(
        logits.len(),
        classes * w * h,
        "logits size does not match [classes, h, w]"
    );
    let planes: Vec<&[f32]> = logits.chunks_exact(w * h).collect();
    let up = Bilinear::new((w, h), (out_w, out_h));
    let mut rows = vec![vec![0f32; out_w]; classes];
    let mut data = vec![0u8; out_w * out_h];
    let mut confidence_sums = vec![0f64; classes];
    for y in 0..out_h {
        for (row, plane) in rows.iter_mut().zip(&planes) {
            up.row(plane, y, row);
        }
        for x in 0..out_w {
            let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
            for (c, row) in rows.iter().enumerate() {
                if row[x] > best_v {
                    best = c;
                    best_v = row[x];
                }
            }
            data[y * out_w + x] = best as u8;
            confidence_sums[best] += f64::from(softmax_of(best_v, rows.iter().map(|r| r[x])));
        }
    }
    let mut mask = Mask {
        width: out_w,
        height: out_h,
        data,
    };
    if !cleanup.is_off() {
        let argmax = mask.data.clone();
        cleanup.apply(&mut mask, w * h);
        // Pixels the clean-up relabelled count the probability of their new class. `at` gives
        // bit for bit what `row` gave, so the old class loses exactly what it was given.
        for (i, (&new, &old)) in mask.data.iter().zip(&argmax).enumerate() {
            if new != old {
                let (x, y) = (i % out_w, i / out_w);
                let prob = |c: u8| {
                    let chosen = up.at(planes[c as usize], x, y);
                    f64::from(softmax_of(chosen, planes.iter().map(|p| up.at(p, x, y))))
                };
                confidence_sums[old as usize] -= prob(old);
                confidence_sums[new as usize] += prob(new);
            }
        }
    }
    Prediction {
        mask,
        confidence_sums,
    }
}

/// The softmax probability of `class` at every pixel of the `out_w x out_h` image, as 8-bit
/// rows (0..255 for 0..1), up-sampled as [`logits_to_prediction`] up-samples: what an optional
/// probability map shows. Before any clean-up: the model's own belief. Row by row, for the
/// memory reason given there.
pub fn probability_rows<E>(
    logits: &[f32],
    classes: usize,
    (w, h): (usize, usize),
    (out_w, out_h): (usize, usize),
    class: usize,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    assert!(
        logits.len() == classes * w * h && class < classes,
        "logits do not match [classes, h, w]"
    );
    let planes: Vec<&[f32]> = logits.chunks_exact(w * h).collect();
    let up = Bilinear::new((w, h), (out_w, out_h));
    let mut rows = vec![vec![0f32; out_w]; classes];
    let mut out = vec![0u8; out_w];
    for y in 0..out_h {
        for (row, plane) in rows.iter_mut().zip(&planes) {
            up.row(plane, y, row);
        }
        for (x, o) in out.iter_mut().enumerate() {
            let p = softmax_of(rows[class][x], rows.iter().map(|r| r[x]));
            *o = (p * 255.0).round() as u8;
        }
        emit(&out)?;
    }
    Ok(())
}

/// The softmax probability of the class whose logit is `chosen`, among all classes' `logits`
/// (which include it), as 1 / sum(exp(l - chosen)): no exp() of a raw logit, which could overflow.
fn softmax_of(chosen: f32, logits: impl Iterator<Item = f32>) -> f32 {
    1.0 / logits.map(|l| (l - chosen).exp()).sum::<f32>()
}

/// Bilinear sampling of a `w x h` float plane on an output grid, with half-pixel centres
/// (PyTorch's `align_corners=False`); at equal sizes it returns the plane's own values.
/// Written here because `image`'s resize clamps float pixels to [0, 1], which would flatten
/// logits.
struct Bilinear {
    w: usize,
    /// Per output column and row: the two source indices and the weight of the second.
    xs: Vec<(usize, usize, f32)>,
    ys: Vec<(usize, usize, f32)>,
}

impl Bilinear {
    fn new((w, h): (usize, usize), (out_w, out_h): (usize, usize)) -> Self {
        let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
            let scale = n_in as f32 / n_out as f32;
            (0..n_out)
                .map(|o| {
                    let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                    let i0 = (x.floor() as usize).min(n_in - 1);
                    let i1 = (i0 + 1).min(n_in - 1);
                    (i0, i1, x - i0 as f32)
                })
                .collect()
        };
        Self {
            w,
            xs: taps(w, out_w),
            ys: taps(h, out_h),
        }
    }

    /// Output row `y` of `plane`, written into `out` (one value per output column).
    fn row(&self, plane: &[f32], y: usize, out: &mut [f32]) {
        let (y0, y1, fy) = self.ys[y];
        let (r0, r1) = (
            &plane[y0 * self.w..(y0 + 1) * self.w],
            &plane[y1 * self.w..(y1 + 1) * self.w],
        );
        for (o, &(x0, x1, fx)) in out.iter_mut().zip(&self.xs) {
            let top = r0[x0] + (r0[x1] - r0[x0]) * fx;
            let bottom = r1[x0] + (r1[x1] - r1[x0]) * fx;
            *o = top + (bottom - top) * fy;
        }
    }

    /// The output pixel `(x, y)` of `plane`.
    fn at(&self, plane: &[f32], x: usize, y: usize) -> f32 {
        let ((x0, x1, fx), (y0, y1, fy)) = (self.xs[x], self.ys[y]);
        let v = |xx: usize, yy: usize| plane[yy * self.w + xx];
        let top = v(x0, y0) + (v(x1, y0) - v(x0, y0)) * fx;
        let bottom = v(x0, y1) + (v(x1, y1) - v(x0, y1)) * fx;
        top + (bottom - top) * fy
    }
}

/// Distinct colours for classes 1.. (class 0 is left unpainted).
const PALETTE: [[u8; 3]; 6] = [
    [255, 40, 40],
    [40, 220, 60],
    [60, 120, 255],
    [255, 200, 0],
    [220, 60, 255],
    [0, 220, 220],
];

/// The image in gray with each class tinted and its outline drawn in full colour.
pub fn overlay(img: &DynamicImage, mask: &Mask) -> RgbImage {
    let mut data = Vec::with_capacity(3 * mask.width * mask.height);
    overlay_rows(&as_gray(img), mask, |row| {
        data.extend_from_slice(row);
        Ok::<(), Infallible>(())
    })
    .unwrap_or_else(|never| match never {});
    RgbImage::from_raw(mask.width as u32, mask.height as u32, data)
        .expect("one RGB row per mask row")
}

/// The [`overlay`]'s rows, top to bottom, `3 * width` bytes each, handed to `emit` one at a
/// time: a 24 MP photo's overlay can then be encoded as it is drawn instead of held whole
/// (72 MB). `gray` is the image in gray, at the mask's size.
pub fn overlay_rows<E>(
    gray: &GrayImage,
    mask: &Mask,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let (w, h) = (mask.width, mask.height);
    let gray = gray.as_raw();
    let at = |x: usize, y: usize| mask.data[y * w + x];
    let mut row = vec![0u8; 3 * w];
    for y in 0..h {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let g = gray[y * w + x];
            let c = at(x, y);
            let rgb = if c == 0 {
                [g, g, g]
            } else {
                let colour = PALETTE[(c as usize - 1) % PALETTE.len()];
                let edge = x == 0
                    || y == 0
                    || x + 1 == w
                    || y + 1 == h
                    || at(x - 1, y) != c
                    || at(x + 1, y) != c
                    || at(x, y - 1) != c
                    || at(x, y + 1) != c;
                if edge {
                    colour
                } else {
                    // 30% tint keeps the anatomy under the label readable.
                    colour.map(|v| ((v as u16 * 3 + g as u16 * 7) / 10) as u8)
                }
            };
            px.copy_from_slice(&rgb);
        }
        emit(&row)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::class_stats;

    #[test]
    fn mean_confidence_holds_on_a_phone_photo_sized_prediction() {
        // Constant logits up-sampled to 24 MP: every pixel holds the same probability, which
        // an f32 running sum would report as 0.70 instead.
        let (w, h) = (6000, 4000);
        let logits = [0.0f32; 4]
            .into_iter()
            .chain([3.0f32; 4])
            .collect::<Vec<_>>();
        let pred = logits_to_prediction(&logits, 2, (2, 2), (w, h), &Cleanup::default());
        let p = 1.0 / (1.0 + (-3.0f32).exp());
        assert!((pred.mean_confidence() - p).abs() < 1e-6);
        assert!((pred.foreground_mean_confidence().unwrap() - p).abs() < 1e-6);
        let stats = class_stats(&pred, &["bg".into(), "fg".into()], None);
        assert_eq!(stats[0].area_pixels, w * h);
        assert!((stats[0].mean_confidence.unwrap() - p).abs() < 1e-6);
    }

    #[test]
    fn argmax_and_confidence_at_same_size() {
        // Two classes on a 2x1 image: pixel 0 favours class 0, pixel 1 class 1.
        let logits = [2.0, 0.0, 0.0, 1.0];
        let p = logits_to_prediction(&logits, 2, (2, 1), (2, 1), &Cleanup::default());
        assert_eq!(p.mask.data, vec![0, 1]);
        let expect0 = 1.0 / (1.0 + (-2.0f32).exp());
        let expect1 = 1.0 / (1.0 + (-1.0f32).exp());
        assert!((p.confidence_sums[0] - f64::from(expect0)).abs() < 1e-6);
        assert!((p.confidence_sums[1] - f64::from(expect1)).abs() < 1e-6);
        assert!((p.mean_confidence() - (expect0 + expect1) / 2.0).abs() < 1e-6);
        assert!((p.foreground_mean_confidence().unwrap() - expect1).abs() < 1e-6);
    }

    #[test]
    fn cleaned_pixels_count_the_probability_of_their_new_class() {
        // A 3x1 image; the middle pixel alone favours class 1 and is dropped as an island.
        let logits = [2.0, 0.0, 2.0, 0.0, 1.0, 0.0];
        let drop = Cleanup {
            min_component_px: 2,
            fill_holes: false,
        };
        let p = logits_to_prediction(&logits, 2, (3, 1), (3, 1), &drop);
        assert_eq!(p.mask.data, vec![0, 0, 0]);
        let edge = 1.0 / (1.0 + (-2.0f32).exp());
        let middle = 1.0 / (1.0 + 1.0f32.exp());
        let want = 2.0 * f64::from(edge) + f64::from(middle);
        assert!((p.confidence_sums[0] - want).abs() < 1e-6);
        assert_eq!(
            p.confidence_sums[1], 0.0,
            "class 1 gave back exactly what it got"
        );
        assert_eq!(p.foreground_mean_confidence(), None);
    }

    /// The whole plane resized, row by row, and checked against `at` pixel by pixel.
    fn resized(src: &[f32], from: (usize, usize), (out_w, out_h): (usize, usize)) -> Vec<f32> {
        let up = Bilinear::new(from, (out_w, out_h));
        let mut out = vec![0.0; out_w * out_h];
        for (y, row) in out.chunks_exact_mut(out_w).enumerate() {
            up.row(src, y, row);
            for (x, &v) in row.iter().enumerate() {
                assert_eq!(up.at(src, x, y), v);
            }
        }
        out
    }

    #[test]
    fn bilinear_resize_keeps_values_outside_unit_range_and_interpolates_at_half_pixels() {
        // 2x1 -> 4x1: output centres at source x = -0.25, 0.25, 0.75, 1.25.
        let out = resized(&[-4.0, 4.0], (2, 1), (4, 1));
        assert_eq!(out, vec![-4.0, -2.0, 2.0, 4.0]);
        assert_eq!(resized(&[5.0; 4], (2, 2), (3, 5)), vec![5.0; 15]);
        let plane: Vec<f32> = (0..12).map(|v| v as f32 * 1.7 - 9.0).collect();
        assert_eq!(
            resized(&plane, (4, 3), (4, 3)),
            plane,
            "equal sizes copy the plane"
        );
    }

    #[test]
    fn upsampled_mask_keeps_the_object_where_it_was() {
        // A 4x4 logit map with class 1 in the top-left 2x2 block, up-sampled to 8x8.
        let mut logits = vec![1.0f32; 16];
        logits.extend((0..16).map(|i| if i % 4 < 2 && i / 4 < 2 { 3.0 } else { -3.0 }));
        let p = logits_to_prediction(&logits, 2, (4, 4), (8, 8), &Cleanup::default());
        assert_eq!(p.mask.data[0], 1);
        assert_eq!(p.mask.data[8 * 7 + 7], 0);
        let area = p.mask.data.iter().filter(|&&v| v == 1).count();
        assert!((12..=20).contains(&area), "area {area}");
        let stats = class_stats(&p, &["bg".into(), "fg".into()], None);
        assert_eq!(stats[0].area_pixels, area);
        assert_eq!(stats[0].bbox.unwrap()[0], 0);
    }
}
