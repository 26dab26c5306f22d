//! Labels from a DICOM RT Structure Set, the form most clinical contours take (radiotherapy
//! planning systems write them): each ROI named like a class (any case) becomes that class's
//! label value; its closed planar contours are filled on the slice they lie on. Contours of one
//! ROI on one slice combine even-odd, so a contour inside another is a hole. Where ROIs
//! overlap, the higher class wins (as in DICOM SEG).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::dicom::{class_named, text};
use super::dicom_series::Series;
use super::volume::Volume;

fn items(obj: &InMemDicomObject, seq: dicom_object::Tag) -> &[InMemDicomObject] {
    obj.element(seq)
        .ok()
        .and_then(|e| e.items())
        .unwrap_or_default()
}

fn int(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<i64> {
    obj.element(tag).ok()?.to_int::<i64>().ok()
}

/// Reads an RT Structure Set (opened from `path`) onto the grid of `series`; `classes[i]` names
/// label value i.
pub fn read_rtstruct(
    path: &Path,
    obj: &InMemDicomObject,
    series: &Series,
    classes: &[String],
) -> anyhow::Result<Volume> {
    let shown = path.display();
    // ROI number -> label value, for the ROIs named like a class.
    let mut names = Vec::new();
    let mut label_of = HashMap::new();
    for roi in items(obj, tags::STRUCTURE_SET_ROI_SEQUENCE) {
        let name = text(roi, tags::ROI_NAME).filter(|n| !n.is_empty());
        let (Some(number), Some(name)) = (int(roi, tags::ROI_NUMBER), name) else {
            continue;
        };
        if let Some(label) = class_named(classes, &name) {
            label_of.insert(number, label);
        }
        names.push(name);
    }
    if label_of.is_empty() {
        bail!(
            "{shown}: none of its ROIs ({}) is named like a class ({}); give --classes the ROI \
             names to import, background first",
            names.join(", "),
            classes[1..].join(", ")
        );
    }
    let [nx, ny, nz] = series.volume.dims;
    let mut data = vec![0.0f32; nx * ny * nz];
    for roi in items(obj, tags::ROI_CONTOUR_SEQUENCE) {
        let number = int(roi, tags::REFERENCED_ROI_NUMBER);
        let Some(&label) = number.and_then(|n| label_of.get(&n)) else {
            continue;
        };
        let number = number.unwrap_or_default();
        // The ROI's inside on each slice it touches, contours combined even-odd.
        let mut inside: HashMap<usize, Vec<bool>> = HashMap::new();
        for (n, contour) in items(roi, tags::CONTOUR_SEQUENCE).iter().enumerate() {
            if text(contour, tags::CONTOUR_GEOMETRIC_TYPE).as_deref() != Some("CLOSED_PLANAR") {
                continue; // POINT and OPEN_* contours enclose nothing
            }
            let points = contour
                .element(tags::CONTOUR_DATA)
                .ok()
                .and_then(|e| e.to_multi_float64().ok())
                .with_context(|| {
                    format!("{shown}: ROI {number} contour {} has no ContourData", n + 1)
                })?;
            ensure!(
                points.len() >= 9 && points.len() % 3 == 0,
                "{shown}: ROI {number} contour {} has {} ContourData values; expected x,y,z \
                 triplets of at least 3 points",
                n + 1,
                points.len()
            );
            let (k, polygon) = on_slice(series, &points).with_context(|| {
                format!(
                    "{shown}: ROI {number} contour {} through ({:.2}, {:.2}, {:.2}) mm lies on no \
                     slice of its series",
                    n + 1,
                    points[0],
                    points[1],
                    points[2]
                )
            })?;
            let mask = inside.entry(k).or_insert_with(|| vec![false; nx * ny]);
            fill_even_odd(&polygon, nx, ny, mask);
        }
        for (k, mask) in inside {
            for (p, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
                let v = &mut data[p + nx * ny * k];
                *v = v.max(f32::from(label));
            }
        }
    }
    Volume::new(series.volume.dims, data, series.volume.affine)
}

/// The slice a planar contour lies on (within half a slice spacing along the normal), and its
/// points in that slice's (column, row) pixel coordinates.
fn on_slice(series: &Series, points: &[f64]) -> Option<(usize, Vec<(f64, f64)>)> {
    let dot = |a: [f64; 3], b: [f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let first = [points[0], points[1], points[2]];
    let k = series.positions.iter().position(|o| {
        let d = [first[0] - o[0], first[1] - o[1], first[2] - o[2]];
        dot(d, series.normal).abs() < 0.5 * series.slice_spacing
    })?;
    let origin = series.positions[k];
    let (row_spacing, col_spacing) = series.pixel_spacing;
    let polygon = points
        .chunks_exact(3)
        .map(|p| {
            let d = [p[0] - origin[0], p[1] - origin[1], p[2] - origin[2]];
            (
                dot(d, series.row_dir) / col_spacing,
                dot(d, series.col_dir) / row_spacing,
            )
        })
        .collect();
    Some((k, polygon))
}

/// Flips `mask` at every pixel whose centre lies inside `polygon` (even-odd rule), so that
/// successive contours of one ROI cut holes. Written here because imageproc's polygon fill
/// rounds vertices to whole pixels, which moves contour edges by up to half a pixel.
fn fill_even_odd(polygon: &[(f64, f64)], width: usize, height: usize, mask: &mut [bool]) {
    let mut crossings = Vec::new();
    for row in 0..height {
        let y = row as f64;
        crossings.clear();
        for (i, &(x0, y0)) in polygon.iter().enumerate() {
            let (x1, y1) = polygon[(i + 1) % polygon.len()];
            // Half-open in y, so a vertex on the scan line counts once.
            if (y0 <= y) != (y1 <= y) {
                crossings.push(x0 + (y - y0) / (y1 - y0) * (x1 - x0));
            }
        }
        crossings.sort_by(f64::total_cmp);
        for span in crossings.chunks_exact(2) {
            // Pixel centres c with span[0] <= c < span[1], clipped to the image.
            let from = span[0].ceil().max(0.0) as usize;
            let to = (span[1].ceil().min(width as f64)).max(0.0) as usize;
            for col in from..to {
                let m = &mut mask[row * width + col];
                *m = !*m;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(polygons: &[&[(f64, f64)]], w: usize, h: usize) -> Vec<Vec<u8>> {
        let mut mask = vec![false; w * h];
        for p in polygons {
            fill_even_odd(p, w, h, &mut mask);
        }
        mask.chunks(w)
            .map(|r| r.iter().map(|&b| b as u8).collect())
            .collect()
    }

    #[test]
    fn pixel_centres_inside_are_filled_and_an_inner_contour_is_a_hole() {
        let outer: &[(f64, f64)] = &[(0.5, 0.5), (4.5, 0.5), (4.5, 4.5), (0.5, 4.5)];
        let inner: &[(f64, f64)] = &[(1.5, 1.5), (3.5, 1.5), (3.5, 3.5), (1.5, 3.5)];
        assert_eq!(
            filled(&[outer, inner], 6, 6),
            vec![
                vec![0, 0, 0, 0, 0, 0],
                vec![0, 1, 1, 1, 1, 0],
                vec![0, 1, 0, 0, 1, 0],
                vec![0, 1, 0, 0, 1, 0],
                vec![0, 1, 1, 1, 1, 0],
                vec![0, 0, 0, 0, 0, 0],
            ]
        );
    }

    #[test]
    fn a_triangle_takes_the_centres_under_its_edge_and_clips_at_the_border() {
        // The hypotenuse runs through pixel centres (x = y): a span includes its left end, so
        // the diagonal is inside. The right edge lies beyond the 3-pixel-wide image.
        let tri: &[(f64, f64)] = &[(-0.5, -0.5), (3.5, -0.5), (3.5, 3.5)];
        let rows = filled(&[tri], 3, 3);
        assert_eq!(rows, vec![vec![1, 1, 1], vec![0, 1, 1], vec![0, 0, 1]]);
    }
}
