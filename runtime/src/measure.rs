//! What a report says about each class of a mask: area in pixels and, where the image's pixel
//! spacing is known (DICOM, NIfTI), in mm^2; bounding box; centroid; outline polygons; mean
//! confidence.

use image::GrayImage;
use imageproc::contours::{BorderType, find_contours};
use imageproc::geometry::approximate_polygon_dp;
use imageproc::point::Point;
use serde::{Deserialize, Serialize};

use crate::postprocess::Prediction;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub class: String,
    pub area_pixels: usize,
    /// Area in mm^2 from the image's pixel spacing; absent when the input carries none (a PNG
    /// or a photo).
    #[serde(default)]
    pub area_mm2: Option<f64>,
    /// `[x_min, y_min, x_max, y_max]`, inclusive; absent when the class is not present.
    pub bbox: Option<[usize; 4]>,
    /// `[x, y]`: the mean pixel position of the class (pixel centres at whole numbers).
    #[serde(default)]
    pub centroid: Option<[f64; 2]>,
    /// The outer outline of each connected region as a closed polygon of `[x, y]` pixel
    /// positions (the region's boundary pixels, simplified to within 1 px), largest region
    /// first. Holes are not listed: their area is already left out of `area_pixels`.
    #[serde(default)]
    pub contours: Vec<Vec<[u32; 2]>>,
    pub mean_confidence: Option<f32>,
}

/// The largest distance in px between a region's traced boundary and its reported polygon.
const CONTOUR_TOLERANCE_PX: f64 = 1.0;

/// Measures every class except background (class 0). `spacing_mm` is the (row, column) pixel
/// spacing in mm, when the input gives one.
pub fn class_stats(
    pred: &Prediction,
    class_names: &[String],
    spacing_mm: Option<(f64, f64)>,
) -> Vec<ClassStats> {
    let mask = &pred.mask;
    (1..class_names.len())
        .map(|c| {
            let mut area = 0usize;
            let (mut sum_x, mut sum_y) = (0f64, 0f64);
            let mut bbox: Option<[usize; 4]> = None;
            for (i, &v) in mask.data.iter().enumerate() {
                if v as usize != c {
                    continue;
                }
                let (x, y) = (i % mask.width, i / mask.width);
                area += 1;
                sum_x += x as f64;
                sum_y += y as f64;
                bbox = Some(match bbox {
                    None => [x, y, x, y],
                    Some([x0, y0, x1, y1]) => [x0.min(x), y0.min(y), x1.max(x), y1.max(y)],
                });
            }
            ClassStats {
                class: class_names[c].clone(),
                area_pixels: area,
                area_mm2: spacing_mm.map(|(r, col)| area as f64 * r * col),
                bbox,
                centroid: (area > 0).then(|| [sum_x / area as f64, sum_y / area as f64]),
                contours: bbox.map_or_else(Vec::new, |b| contours(mask, c as u8, b)),
                // A class with pixels in the mask is one the model has, so it has a sum.
                mean_confidence: (area > 0).then(|| (pred.confidence_sums[c] / area as f64) as f32),
            }
        })
        .collect()
}

/// Outer contours of `class` inside its bounding box. The box is cut out with a 1 px margin
/// first: the tracer allocates 4 bytes per pixel of what it is given, 96 MB for a whole 24 MP
/// photo.
fn contours(
    mask: &crate::image_io::Mask,
    class: u8,
    [x0, y0, x1, y1]: [usize; 4],
) -> Vec<Vec<[u32; 2]>> {
    let (w, h) = (x1 - x0 + 3, y1 - y0 + 3);
    let crop = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let (x, y) = (x as usize, y as usize);
        let inside = (1..w - 1).contains(&x) && (1..h - 1).contains(&y);
        let v = inside && mask.data[(y0 + y - 1) * mask.width + x0 + x - 1] == class;
        image::Luma([if v { 255 } else { 0 }])
    });
    let mut outlines: Vec<(usize, Vec<[u32; 2]>)> = find_contours::<i32>(&crop)
        .into_iter()
        .filter(|c| c.border_type == BorderType::Outer && !c.points.is_empty())
        .map(|c| {
            let traced = c.points.len();
            let simplified = if traced > 2 {
                approximate_polygon_dp(&c.points, CONTOUR_TOLERANCE_PX, true)
            } else {
                c.points
            };
            let polygon = simplified
                .into_iter()
                .map(|Point { x, y }| [(x0 as i32 + x - 1) as u32, (y0 as i32 + y - 1) as u32])
                .collect();
            (traced, polygon)
        })
        .collect();
    // Largest first (by traced boundary length), so a reader wanting one outline takes the first.
    outlines.sort_by_key(|o| std::cmp::Reverse(o.0));
    outlines.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_io::Mask;

    fn prediction(width: usize, height: usize, data: Vec<u8>) -> Prediction {
        let classes = data.iter().copied().max().unwrap_or(0) as usize + 1;
        let mut confidence_sums = vec![0.0; classes.max(3)];
        for &v in &data {
            confidence_sums[v as usize] += 0.9;
        }
        Prediction {
            mask: Mask {
                width,
                height,
                data,
            },
            confidence_sums,
        }
    }

    #[test]
    fn a_rectangle_gives_its_area_centroid_corners_and_mm2() {
        // Class 1: x 3..=8, y 2..=5 (6 x 4 = 24 px) in a 12 x 9 image; class 2 absent.
        let (w, h) = (12, 9);
        let data = (0..w * h)
            .map(|i| u8::from((3..=8).contains(&(i % w)) && (2..=5).contains(&(i / w))))
            .collect();
        let names = ["bg".to_string(), "a".into(), "b".into()];
        let stats = class_stats(&prediction(w, h, data), &names, Some((0.5, 0.8)));
        let a = &stats[0];
        assert_eq!(a.area_pixels, 24);
        assert!((a.area_mm2.unwrap() - 24.0 * 0.4).abs() < 1e-12);
        assert_eq!(a.bbox, Some([3, 2, 8, 5]));
        assert_eq!(a.centroid, Some([5.5, 3.5]));
        assert_eq!(a.contours.len(), 1);
        let mut corners = a.contours[0].clone();
        corners.sort();
        assert_eq!(corners, vec![[3, 2], [3, 5], [8, 2], [8, 5]]);
        assert!((a.mean_confidence.unwrap() - 0.9).abs() < 1e-6);
        let b = &stats[1];
        assert_eq!((b.area_pixels, b.area_mm2), (0, Some(0.0)));
        assert!(b.bbox.is_none() && b.centroid.is_none() && b.contours.is_empty());
    }

    #[test]
    fn each_region_has_its_own_outline_holes_excepted_largest_first() {
        // A 7 x 7 ring (hole 3 x 3) at the top-left and a lone pixel in the bottom-right
        // corner of a 12 x 10 image: two outer outlines, the ring's first, no hole outline.
        let (w, h) = (12, 10);
        let data = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let ring = x < 7 && y < 7 && !((2..5).contains(&x) && (2..5).contains(&y));
                u8::from(ring || (x, y) == (11, 9))
            })
            .collect();
        let stats = class_stats(&prediction(w, h, data), &["bg".into(), "a".into()], None);
        let a = &stats[0];
        assert_eq!(a.area_pixels, 49 - 9 + 1);
        assert_eq!(a.area_mm2, None);
        assert_eq!(a.contours.len(), 2, "{:?}", a.contours);
        let mut ring = a.contours[0].clone();
        ring.sort();
        assert_eq!(ring, vec![[0, 0], [0, 6], [6, 0], [6, 6]]);
        assert_eq!(a.contours[1], vec![[11, 9]]);
    }
}
