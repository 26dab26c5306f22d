//! Geometric steps: image bilinear, mask nearest neighbour, both through the same transform.
//! Pixels brought in from outside get the sample's minimum (the scanner's background) and
//! label 0.

use image::{ImageBuffer, Luma};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp_into};
use medseg_runtime::preprocess::mirror_rows;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Op, RangeError, Sample, Stage, check_range, uniform};

/// Mirror left-right (or top-bottom). Runs on the crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Flip {
    pub p: f32,
    pub vertical: bool,
}

impl Default for Flip {
    fn default() -> Self {
        Self {
            p: 0.5,
            vertical: false,
        }
    }
}

impl Op for Flip {
    fn probability(&self) -> f32 {
        self.p
    }
    fn validate(&self) -> Result<(), RangeError> {
        Ok(())
    }
    fn apply(&self, s: &mut Sample<'_>, _rng: &mut ChaCha8Rng) {
        if self.vertical {
            flip_rows(s.input, s.width, s.height);
            flip_rows(s.mask, s.width, s.height);
        } else {
            mirror_rows(s.input, s.width);
            mirror_rows(s.mask, s.width);
        }
    }
}

/// Reverses the row order of every `height x width` plane.
fn flip_rows<T>(data: &mut [T], width: usize, height: usize) {
    for plane in data.chunks_exact_mut(width * height) {
        for y in 0..height / 2 {
            let (top, bottom) = plane.split_at_mut((height - 1 - y) * width);
            top[y * width..(y + 1) * width].swap_with_slice(&mut bottom[..width]);
        }
    }
}

/// Rotation about the centre (degrees), isotropic scale, and translation (fraction of the
/// side, x and y drawn independently), as one warp so the image is resampled once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Affine {
    pub p: f32,
    pub rotate_degrees: [f32; 2],
    pub scale: [f32; 2],
    pub shift: [f32; 2],
}

impl Default for Affine {
    fn default() -> Self {
        Self {
            p: 1.0,
            rotate_degrees: [0.0, 0.0],
            scale: [1.0, 1.0],
            shift: [0.0, 0.0],
        }
    }
}

impl Op for Affine {
    fn probability(&self) -> f32 {
        self.p
    }
    fn stage(&self) -> Stage {
        Stage::Whole
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("rotate_degrees", self.rotate_degrees, -180.0, 180.0)?;
        check_range("scale", self.scale, 0.25, 4.0)?;
        check_range("shift", self.shift, -0.5, 0.5)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        // Draw order as the warp before the pipeline existed: angle, scale, dx, dy.
        let angle = uniform(rng, self.rotate_degrees).to_radians();
        let scale = uniform(rng, self.scale);
        let dx = uniform(rng, self.shift) * s.width as f32;
        let dy = uniform(rng, self.shift) * s.height as f32;
        let (cx, cy) = ((s.width as f32 - 1.0) / 2.0, (s.height as f32 - 1.0) / 2.0);
        let projection = Projection::translate(cx + dx, cy + dy)
            * Projection::rotate(angle)
            * Projection::scale(scale, scale)
            * Projection::translate(-cx, -cy);
        warp(s, projection);
    }
}

/// A camera tilt: each corner moves by up to `corner` of the side in x and y (drawn
/// independently), and the image follows the homography that takes the corners there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Perspective {
    pub p: f32,
    pub corner: [f32; 2],
}

impl Default for Perspective {
    fn default() -> Self {
        Self {
            p: 0.5,
            corner: [-0.08, 0.08],
        }
    }
}

impl Op for Perspective {
    fn probability(&self) -> f32 {
        self.p
    }
    fn stage(&self) -> Stage {
        Stage::Whole
    }
    fn validate(&self) -> Result<(), RangeError> {
        check_range("corner", self.corner, -0.25, 0.25)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let (w, h) = ((s.width - 1) as f32, (s.height - 1) as f32);
        let from = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
        let mut to = from;
        for (x, y) in to.iter_mut() {
            *x += uniform(rng, self.corner) * s.width as f32;
            *y += uniform(rng, self.corner) * s.height as f32;
        }
        // Within +-25% per corner the quadrilateral stays convex; a degenerate draw is skipped.
        if let Some(projection) = Projection::from_control_points(from, to) {
            warp(s, projection);
        }
    }
}

/// Smooth random deformation: displacements drawn on a `grid x grid` lattice of control
/// points (up to `magnitude` of the side, per sample uniform in the range) and interpolated
/// bilinearly between them, as tissue bends between acquisitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Elastic {
    pub p: f32,
    pub grid: usize,
    pub magnitude: [f32; 2],
}

impl Default for Elastic {
    fn default() -> Self {
        Self {
            p: 0.3,
            grid: 4,
            magnitude: [0.0, 0.03],
        }
    }
}

impl Op for Elastic {
    fn probability(&self) -> f32 {
        self.p
    }
    fn stage(&self) -> Stage {
        Stage::Whole
    }
    fn validate(&self) -> Result<(), RangeError> {
        if !(2..=32).contains(&self.grid) {
            return Err(RangeError::new("grid", "2..=32 control points per side"));
        }
        check_range("magnitude", self.magnitude, 0.0, 0.2)
    }
    fn apply(&self, s: &mut Sample<'_>, rng: &mut ChaCha8Rng) {
        let m = uniform(rng, self.magnitude);
        let g = self.grid;
        let mut field = vec![(0.0f32, 0.0f32); g * g];
        for d in field.iter_mut() {
            *d = (
                uniform(rng, [-m, m]) * s.width as f32,
                uniform(rng, [-m, m]) * s.height as f32,
            );
        }
        let (w, h) = (s.width, s.height);
        // Position of output pixel (x, y) on the lattice, in lattice cells.
        let cell = |v: usize, n: usize| v as f32 * (g - 1) as f32 / (n.max(2) - 1) as f32;
        let displacement = |x: usize, y: usize| {
            let (gx, gy) = (cell(x, w), cell(y, h));
            let (x0, y0) = ((gx as usize).min(g - 2), (gy as usize).min(g - 2));
            let (fx, fy) = (gx - x0 as f32, gy - y0 as f32);
            let at = |i: usize, j: usize| field[j * g + i];
            let lerp = |a: (f32, f32), b: (f32, f32), t: f32| {
                (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t)
            };
            let top = lerp(at(x0, y0), at(x0 + 1, y0), fx);
            let bottom = lerp(at(x0, y0 + 1), at(x0 + 1, y0 + 1), fx);
            lerp(top, bottom, fy)
        };
        remap(s, |x, y| {
            let (dx, dy) = displacement(x, y);
            (x as f32 + dx, y as f32 + dy)
        });
    }
}

fn sample_min(input: &[f32]) -> f32 {
    input.iter().copied().fold(f32::INFINITY, f32::min)
}

/// Warps every plane (bilinear) and the mask (nearest) by `projection` (input to output).
fn warp(s: &mut Sample<'_>, projection: Projection) {
    let (w, h) = (s.width as u32, s.height as u32);
    let fill = sample_min(s.input);
    let mut out = ImageBuffer::<Luma<f32>, Vec<f32>>::new(w, h);
    for plane in s.input.chunks_exact_mut(s.width * s.height) {
        let src = ImageBuffer::<Luma<f32>, Vec<f32>>::from_raw(w, h, plane.to_vec())
            .expect("plane is width x height");
        warp_into(
            &src,
            projection,
            Interpolation::Bilinear,
            Border::Constant(Luma([fill])),
            &mut out,
        );
        plane.copy_from_slice(out.as_raw());
    }
    let src = ImageBuffer::<Luma<u8>, Vec<u8>>::from_raw(w, h, s.mask.to_vec())
        .expect("mask is width x height");
    let mut warped = ImageBuffer::<Luma<u8>, Vec<u8>>::new(w, h);
    warp_into(
        &src,
        projection,
        Interpolation::Nearest,
        Border::Constant(Luma([0])),
        &mut warped,
    );
    s.mask.copy_from_slice(warped.as_raw());
}

/// Output pixel (x, y) takes the input at `source(x, y)`: bilinear for the image, nearest
/// for the mask.
fn remap(s: &mut Sample<'_>, source: impl Fn(usize, usize) -> (f32, f32)) {
    let (w, h) = (s.width, s.height);
    let fill = sample_min(s.input);
    let coords: Vec<(f32, f32)> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| source(x, y))
        .collect();
    let inside = |x: isize, y: isize| x >= 0 && y >= 0 && (x as usize) < w && (y as usize) < h;
    for plane in s.input.chunks_exact_mut(w * h) {
        let src = plane.to_vec();
        let at = |x: isize, y: isize| {
            if inside(x, y) {
                src[y as usize * w + x as usize]
            } else {
                fill
            }
        };
        for (out, &(sx, sy)) in plane.iter_mut().zip(&coords) {
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
            let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
            *out = top * (1.0 - fy) + bottom * fy;
        }
    }
    let src = s.mask.to_vec();
    for (out, &(sx, sy)) in s.mask.iter_mut().zip(&coords) {
        let (x, y) = (sx.round() as isize, sy.round() as isize);
        *out = if inside(x, y) {
            src[y as usize * w + x as usize]
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::Step;
    use super::super::test_util::*;
    use super::*;

    /// After any warp the label must sit on the bright pixels (both moved by the same
    /// transform), away from the one-pixel rim where bilinear blends; returns the labelled
    /// area.
    fn check_together(step: &Step, seed: u64) -> (usize, bool) {
        let side = 48;
        let (img, mask) = square(side, 1);
        let sp = spec(1);
        let (out, out_mask) = run(step, &img, &mask, side, &sp, seed);
        let mid = (0.5 - sp.mean) / sp.std;
        let mut disagree = 0;
        for (v, m) in out.iter().zip(&out_mask) {
            if (*m == 1) != (*v > mid) {
                disagree += 1;
            }
        }
        let area = out_mask.iter().filter(|&&m| m == 1).count();
        // Only pixels on the square's edge may disagree (nearest vs bilinear).
        assert!(
            disagree <= 2 * (side / 2 + side / 4) + 8,
            "{step:?} seed {seed}: {disagree} pixels where label and image disagree"
        );
        let (again, again_mask) = run(step, &img, &mask, side, &sp, seed);
        assert_eq!(
            (again, again_mask.clone()),
            (out, out_mask.clone()),
            "seeded"
        );
        (area, out_mask != mask)
    }

    #[test]
    fn every_warp_moves_image_and_mask_together() {
        let steps = [
            Step::Flip(Flip {
                p: 1.0,
                vertical: false,
            }),
            Step::Flip(Flip {
                p: 1.0,
                vertical: true,
            }),
            Step::Affine(Affine {
                p: 1.0,
                rotate_degrees: [-30.0, 30.0],
                scale: [0.8, 1.2],
                shift: [-0.1, 0.1],
            }),
            Step::Perspective(Perspective {
                p: 1.0,
                corner: [-0.1, 0.1],
            }),
            Step::Elastic(Elastic {
                p: 1.0,
                grid: 4,
                magnitude: [0.02, 0.05],
            }),
        ];
        for step in &steps {
            let mut moved = 0;
            for seed in 0..10 {
                let (area, changed) = check_together(step, seed);
                // The square is 12x24 = 288 px of 48x48; scale 0.8..1.2 gives 184..415.
                assert!(
                    (150..=450).contains(&area),
                    "{step:?} seed {seed}: {area} px"
                );
                moved += usize::from(changed);
            }
            // The test square is centred left-right, so a horizontal flip maps its mask onto
            // itself: for a flip, only "together" is checked above.
            if !matches!(step, Step::Flip(_)) {
                assert!(moved >= 9, "{step:?} moved the mask in {moved}/10 draws");
            }
        }
    }

    #[test]
    fn ranges_are_respected() {
        // A pure 90-degree rotation of a square sample maps the square's pixel count exactly.
        let step = Step::Affine(Affine {
            p: 1.0,
            rotate_degrees: [90.0, 90.0],
            ..Affine::default()
        });
        let (area, _) = check_together(&step, 0);
        assert_eq!(area, 288);
        // Scale fixed at 2: the labelled area grows about fourfold.
        let step = Step::Affine(Affine {
            p: 1.0,
            scale: [2.0, 2.0],
            ..Affine::default()
        });
        let (area, _) = check_together(&step, 0);
        assert!((1000..=1300).contains(&area), "{area}");
        // An elastic field of magnitude 0 leaves everything in place.
        let step = Step::Elastic(Elastic {
            p: 1.0,
            grid: 3,
            magnitude: [0.0, 0.0],
        });
        let (img, mask) = square(16, 1);
        assert_eq!(run(&step, &img, &mask, 16, &spec(1), 0), (img, mask));
    }

    #[test]
    fn vertical_flip_reverses_rows_of_each_plane() {
        let mut data = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        flip_rows(&mut data, 2, 3);
        assert_eq!(data, vec![5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8]);
    }
}
