//! Per-image, per-class distance maps computed on the host from integer masks, for the
//! shape-aware losses ([`super::BoundaryLoss`], [`super::HausdorffDtLoss`]).
//!
//! Masks are class-index images `&[u8]` laid out `[n, h, w]` (row-major), values `< classes`;
//! maps come back as `Vec<f32>` laid out `[n, classes, h, w]`, ready for
//! `TensorData::new(maps, [n, classes, h, w])`. Spacing is `(row mm, col mm)` as in
//! `medseg_runtime::metrics`; `(1.0, 1.0)` gives distances in pixels. Distances are exact
//! Euclidean ones (`medseg_runtime::metrics::edt`).
//!
//! Two kinds:
//!
//! * [`signed_distance_maps`]: the boundary loss's φ (Kervadec et al.), negative inside the
//!   class, positive outside. Conventions on [`signed_distance_maps_with_spacing`].
//! * [`boundary_distance_maps`]: the unsigned distance to the class's surface, d in Karimi &
//!   Salcudean's HD_DT loss. Conventions on that function.

use medseg_runtime::metrics::edt::edt;
use medseg_runtime::metrics::surface_mask;
use rayon::prelude::*;

/// Why maps could not be computed; every variant names the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DistanceMapError {
    #[error(
        "masks hold {got} labels, expected n x h x w = {n} x {h} x {w} = {expected}: pass the \
         masks of the whole batch, row-major, one u8 label per pixel"
    )]
    Length {
        got: usize,
        expected: usize,
        n: usize,
        h: usize,
        w: usize,
    },
    #[error(
        "image {image}, pixel (row {row}, col {col}) has label {label}, but with {classes} \
         classes labels must be below {classes}: pass the number of classes the masks were \
         labelled with"
    )]
    Label {
        image: usize,
        row: usize,
        col: usize,
        label: u8,
        classes: usize,
    },
    #[error("pixel spacing {0:?} (row mm, col mm) must be finite and > 0")]
    Spacing((f64, f64)),
}

/// φ for every image and class, in pixels: [`signed_distance_maps_with_spacing`] with spacing
/// `(1.0, 1.0)`.
pub fn signed_distance_maps(
    masks: &[u8],
    n: usize,
    h: usize,
    w: usize,
    classes: usize,
) -> Result<Vec<f32>, DistanceMapError> {
    signed_distance_maps_with_spacing(masks, n, h, w, classes, (1.0, 1.0))
}

/// The boundary loss's level-set map φ_c for every image and class, `[n, classes, h, w]`.
///
/// For the region G of class c in one image (pixel q, Euclidean distances in the units of
/// `spacing`):
///
/// * q outside G: φ(q) = distance from q to the nearest pixel of G (> 0; pixels 4-adjacent to G
///   get one spacing step).
/// * q inside G: φ(q) = -(distance from q to the nearest pixel outside G - s), with
///   s = min(row mm, col mm). At spacing (1, 1) this is the reference implementation's
///   `one_hot2dist` exactly: `negmask * edt(negmask) - (edt(posmask) - 1) * posmask`. The
///   pixels of G with a 4-neighbour outside G (its inner contour) get 0 (the "boundary"
///   pixels), the deeper ones negative values; a pixel of G whose nearest outside pixel is
///   diagonal gets 1 - √2.
///   *Departure:* the reference subtracts a literal 1 whatever the unit of `sampling`, which
///   at a spacing under 1 mm makes inner-contour pixels positive (wrong sign); we subtract the
///   smaller spacing step instead, which is the same at (1, 1) and gives φ_mm = s · φ_px for
///   an isotropic spacing s.
/// * Pixels outside the image are not "outside G": like the reference (scipy's EDT of the
///   mask itself), a region touching the image border has no boundary there.
/// * G empty (class absent from the image): φ = 0 on the whole image, as in the reference
///   ("leave blank the negative classes"): the class then adds nothing to the loss for that
///   image and the other classes' maps supervise its pixels.
/// * G the whole image: φ = 0 as well. *Departure:* the reference calls scipy's EDT on a mask
///   with no background pixel, which has no defined distance; with no boundary inside the
///   image there is no level set to measure from, so we treat it like the empty case.
pub fn signed_distance_maps_with_spacing(
    masks: &[u8],
    n: usize,
    h: usize,
    w: usize,
    classes: usize,
    spacing: (f64, f64),
) -> Result<Vec<f32>, DistanceMapError> {
    check(masks, n, h, w, classes, spacing)?;
    Ok(per_class(masks, n, h, w, classes, |class_mask, out| {
        signed_map(class_mask, w, h, spacing, out)
    }))
}

/// The unsigned distance to each class's surface, `[n, classes, h, w]`: d_g in the HD_DT loss
/// (Karimi & Salcudean), "the distance transform of the ground truth boundary".
///
/// * The surface of a class is the runtime metrics' one ([`surface_mask`]): its pixels with a
///   4-connected neighbour outside the class, pixels beyond the image border counting as
///   outside. This is the surface on which `medseg eval` measures the Hausdorff distance the
///   loss is meant to reduce, so the loss and the metric agree on where the boundary is.
/// * d(q) = Euclidean distance from q to the nearest surface pixel, on both sides of it
///   (surface pixels 0, in the units of `spacing`).
/// * A class absent from the image has no surface: d = 0 there. The paper does not define
///   this case (its distance would be infinite); 0 leaves the other map of the pair (the
///   prediction's) to weigh the errors.
///
/// The public re-implementation most code copies (Ma's SegWithDistMap, reused by the
/// boundary-loss repository as `one_hot2hd_dist`) computes the distance inside the object only
/// (`edt(posmask)`, 0 outside); we follow the paper, which defines d on the whole image.
pub fn boundary_distance_maps(
    masks: &[u8],
    n: usize,
    h: usize,
    w: usize,
    classes: usize,
    spacing: (f64, f64),
) -> Result<Vec<f32>, DistanceMapError> {
    check(masks, n, h, w, classes, spacing)?;
    Ok(per_class(masks, n, h, w, classes, |class_mask, out| {
        surface_distance_map(class_mask, w, h, spacing, out)
    }))
}

/// [`boundary_distance_maps`] of a prediction: class c's region is where its probability
/// exceeds 0.5 (`probs` laid out `[n, classes, h, w]`). Every class is thresholded on its own,
/// so a pixel may belong to none (or, with more than two classes, to none of the foreground
/// ones while its argmax is foreground).
pub(crate) fn prediction_distance_maps(
    probs: &[f32],
    n: usize,
    classes: usize,
    h: usize,
    w: usize,
    spacing: (f64, f64),
) -> Vec<f32> {
    assert_eq!(
        probs.len(),
        n * classes * h * w,
        "probabilities are not [n, c, h, w]"
    );
    let mut out = vec![0f32; probs.len()];
    out.par_chunks_mut((h * w).max(1))
        .zip(probs.par_chunks((h * w).max(1)))
        .for_each(|(out, p)| {
            let mask: Vec<bool> = p.iter().map(|&v| v > 0.5).collect();
            surface_distance_map(&mask, w, h, spacing, out);
        });
    out
}

fn check(
    masks: &[u8],
    n: usize,
    h: usize,
    w: usize,
    classes: usize,
    spacing: (f64, f64),
) -> Result<(), DistanceMapError> {
    let expected = n * h * w;
    if masks.len() != expected {
        return Err(DistanceMapError::Length {
            got: masks.len(),
            expected,
            n,
            h,
            w,
        });
    }
    if !(spacing.0.is_finite() && spacing.0 > 0.0 && spacing.1.is_finite() && spacing.1 > 0.0) {
        return Err(DistanceMapError::Spacing(spacing));
    }
    if let Some(i) = masks.iter().position(|&l| usize::from(l) >= classes) {
        let plane = h * w;
        return Err(DistanceMapError::Label {
            image: i / plane,
            row: (i % plane) / w,
            col: i % w,
            label: masks[i],
            classes,
        });
    }
    Ok(())
}

/// Calls `map(mask of class c in image b, output plane)` for every image and class, in
/// parallel (each plane is independent, so the result does not depend on the thread count).
fn per_class(
    masks: &[u8],
    n: usize,
    h: usize,
    w: usize,
    classes: usize,
    map: impl Fn(&[bool], &mut [f32]) + Sync,
) -> Vec<f32> {
    let plane = h * w;
    let mut out = vec![0f32; n * classes * plane];
    if plane == 0 {
        return out;
    }
    out.par_chunks_mut(plane).enumerate().for_each(|(k, out)| {
        let (b, c) = (k / classes, k % classes);
        let image = &masks[b * plane..(b + 1) * plane];
        let class_mask: Vec<bool> = image.iter().map(|&l| usize::from(l) == c).collect();
        map(&class_mask, out);
    });
    out
}

fn signed_map(mask: &[bool], w: usize, h: usize, spacing: (f64, f64), out: &mut [f32]) {
    let inside = mask.iter().any(|&m| m);
    let outside = mask.iter().any(|&m| !m);
    if !(inside && outside) {
        out.fill(0.0);
        return;
    }
    let to_region = edt(mask, w, h, spacing);
    let complement: Vec<bool> = mask.iter().map(|&m| !m).collect();
    let to_outside = edt(&complement, w, h, spacing);
    let step = spacing.0.min(spacing.1);
    for (i, o) in out.iter_mut().enumerate() {
        *o = if mask[i] {
            (step - to_outside[i]) as f32
        } else {
            to_region[i] as f32
        };
    }
}

fn surface_distance_map(mask: &[bool], w: usize, h: usize, spacing: (f64, f64), out: &mut [f32]) {
    let surface = surface_mask(mask, w, h);
    if !surface.iter().any(|&s| s) {
        out.fill(0.0);
        return;
    }
    for (o, d) in out.iter_mut().zip(edt(&surface, w, h, spacing)) {
        *o = d as f32;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    const S2: f32 = std::f32::consts::SQRT_2;

    /// 5x5, class 1 on the top-left 3x3 block (touching the image border), class 0 elsewhere.
    pub(crate) fn corner_block() -> Vec<u8> {
        (0..25).map(|i| u8::from(i / 5 < 3 && i % 5 < 3)).collect()
    }

    /// φ of [`corner_block`]'s class 1, by hand: inside, 1 - (distance to the nearest pixel
    /// outside) = max(row, col) - 2 (the image border is not a boundary, so the corner is
    /// deepest); outside, the distance to the block.
    pub(crate) fn corner_block_phi() -> Vec<f32> {
        let (s5, s8) = (5f32.sqrt(), 8f32.sqrt());
        #[rustfmt::skip]
        let phi = vec![
            -2.0, -1.0, 0.0, 1.0, 2.0,
            -1.0, -1.0, 0.0, 1.0, 2.0,
             0.0,  0.0, 0.0, 1.0, 2.0,
             1.0,  1.0, 1.0, S2,  s5,
             2.0,  2.0, 2.0, s5,  s8,
        ];
        phi
    }

    /// d_g of [`corner_block`]'s class 1, by hand: its surface is the block less its centre
    /// (1, 1) (rows 0 and 2, cols 0 and 2 of the block; the image border counts as outside).
    pub(crate) fn corner_block_surface_distance() -> Vec<f32> {
        let (s5, s8) = (5f32.sqrt(), 8f32.sqrt());
        #[rustfmt::skip]
        let d = vec![
            0.0, 0.0, 0.0, 1.0, 2.0,
            0.0, 1.0, 0.0, 1.0, 2.0,
            0.0, 0.0, 0.0, 1.0, 2.0,
            1.0, 1.0, 1.0, S2,  s5,
            2.0, 2.0, 2.0, s5,  s8,
        ];
        d
    }

    fn assert_close(got: &[f32], want: &[f32], tol: f32, ctx: &str) {
        assert_eq!(got.len(), want.len(), "{ctx}: length");
        for (i, (g, e)) in got.iter().zip(want).enumerate() {
            assert!((g - e).abs() <= tol, "{ctx}: value {i}: got {g}, want {e}");
        }
    }

    #[test]
    fn signed_map_of_a_corner_block_matches_hand_computation() {
        let maps = signed_distance_maps(&corner_block(), 1, 5, 5, 2).unwrap();
        let phi1 = corner_block_phi();
        assert_close(&maps[25..], &phi1, 1e-6, "class 1");
        // Class 0 is the complement: its φ is 1 - φ_1 (outside distance d becomes an inside
        // value 1 - d, and the inside value 1 - d' becomes the outside distance d').
        let phi0: Vec<f32> = phi1.iter().map(|v| 1.0 - v).collect();
        assert_close(&maps[..25], &phi0, 1e-6, "class 0");
    }

    #[test]
    fn signed_map_of_a_centred_square_has_zero_on_the_inner_contour() {
        // 5x5, class 1 on rows 1..=3, cols 1..=3.
        let mask: Vec<u8> = (0..25)
            .map(|i| u8::from((1..=3).contains(&(i / 5)) && (1..=3).contains(&(i % 5))))
            .collect();
        let maps = signed_distance_maps(&mask, 1, 5, 5, 2).unwrap();
        #[rustfmt::skip]
        let phi1 = [
            S2,  1.0, 1.0, 1.0, S2,
            1.0, 0.0, 0.0, 0.0, 1.0,
            1.0, 0.0, -1.0, 0.0, 1.0,
            1.0, 0.0, 0.0, 0.0, 1.0,
            S2,  1.0, 1.0, 1.0, S2,
        ];
        assert_close(&maps[25..], &phi1, 1e-6, "class 1");
        // Class 0 (the ring): its corners' nearest outside pixel is diagonal, 1 - √2; the
        // square's centre is 2 from the ring.
        let c = 1.0 - S2;
        #[rustfmt::skip]
        let phi0 = [
            c,   0.0, 0.0, 0.0, c,
            0.0, 1.0, 1.0, 1.0, 0.0,
            0.0, 1.0, 2.0, 1.0, 0.0,
            0.0, 1.0, 1.0, 1.0, 0.0,
            c,   0.0, 0.0, 0.0, c,
        ];
        assert_close(&maps[..25], &phi0, 1e-6, "class 0");
    }

    #[test]
    fn empty_and_whole_image_classes_get_zero_maps() {
        // Image 0: all background (class 0 whole, classes 1 and 2 empty); image 1: the corner
        // block as class 2, so class 1 is empty there too.
        let mut masks = vec![0u8; 25];
        masks.extend(corner_block().iter().map(|&l| l * 2));
        let signed = signed_distance_maps(&masks, 2, 5, 5, 3).unwrap();
        let plane =
            |m: &[f32], b: usize, c: usize| m[(b * 3 + c) * 25..(b * 3 + c + 1) * 25].to_vec();
        for c in 0..3 {
            assert!(
                plane(&signed, 0, c).iter().all(|&v| v == 0.0),
                "image 0 class {c}"
            );
        }
        assert!(plane(&signed, 1, 1).iter().all(|&v| v == 0.0));
        assert_close(
            &plane(&signed, 1, 2),
            &corner_block_phi(),
            1e-6,
            "image 1 class 2",
        );

        let unsigned = boundary_distance_maps(&masks, 2, 5, 5, 3, (1.0, 1.0)).unwrap();
        // The whole-image class has a surface (the image border), the empty ones none.
        let ring: Vec<f32> = (0..25)
            .map(|i| {
                let (r, c) = (i / 5, i % 5);
                let to_border = r.min(c).min(4 - r).min(4 - c);
                to_border as f32
            })
            .collect();
        assert_close(&plane(&unsigned, 0, 0), &ring, 1e-6, "whole image");
        assert!(plane(&unsigned, 0, 1).iter().all(|&v| v == 0.0));
        assert!(plane(&unsigned, 1, 1).iter().all(|&v| v == 0.0));
        assert_close(
            &plane(&unsigned, 1, 2),
            &corner_block_surface_distance(),
            1e-6,
            "image 1 class 2",
        );
    }

    #[test]
    fn spacing_scales_isotropic_maps_and_bad_input_is_refused() {
        let px = signed_distance_maps(&corner_block(), 1, 5, 5, 2).unwrap();
        let mm =
            signed_distance_maps_with_spacing(&corner_block(), 1, 5, 5, 2, (0.5, 0.5)).unwrap();
        let half: Vec<f32> = px.iter().map(|v| v * 0.5).collect();
        assert_close(&mm, &half, 1e-6, "0.5 mm");
        // Anisotropic: along a 2 mm row step the inner contour is 1 mm deep (2 - 1), along a
        // 1 mm column step it is 0; outside, one row step is 2 mm.
        let an =
            signed_distance_maps_with_spacing(&corner_block(), 1, 5, 5, 2, (2.0, 1.0)).unwrap();
        assert!((an[25 + 2 * 5] + 1.0).abs() < 1e-6, "{}", an[25 + 2 * 5]); // (2, 0)
        assert!(an[25 + 2].abs() < 1e-6, "{}", an[25 + 2]); // (0, 2)
        assert!((an[25 + 3 * 5] - 2.0).abs() < 1e-6, "{}", an[25 + 3 * 5]); // (3, 0)

        assert_eq!(
            signed_distance_maps(&[0u8; 24], 1, 5, 5, 2),
            Err(DistanceMapError::Length {
                got: 24,
                expected: 25,
                n: 1,
                h: 5,
                w: 5
            })
        );
        let mut bad = corner_block();
        bad[7] = 2;
        let err = boundary_distance_maps(&bad, 1, 5, 5, 2, (1.0, 1.0)).unwrap_err();
        assert_eq!(
            err,
            DistanceMapError::Label {
                image: 0,
                row: 1,
                col: 2,
                label: 2,
                classes: 2
            }
        );
        assert!(err.to_string().contains("labels must be below 2"), "{err}");
        assert!(matches!(
            signed_distance_maps_with_spacing(&corner_block(), 1, 5, 5, 2, (0.0, 1.0)),
            Err(DistanceMapError::Spacing(_))
        ));
    }

    fn dist(a: usize, b: usize, w: usize, (sy, sx): (f64, f64)) -> f64 {
        let dy = ((a / w) as f64 - (b / w) as f64) * sy;
        let dx = ((a % w) as f64 - (b % w) as f64) * sx;
        (dy * dy + dx * dx).sqrt()
    }

    fn nearest(q: usize, set: &[usize], w: usize, spacing: (f64, f64)) -> f64 {
        set.iter()
            .map(|&s| dist(q, s, w, spacing))
            .fold(f64::INFINITY, f64::min)
    }

    /// Both kinds of maps straight from their definitions, by comparing every pair of pixels.
    fn brute_force(
        mask: &[u8],
        h: usize,
        w: usize,
        classes: usize,
        spacing: (f64, f64),
    ) -> (Vec<f32>, Vec<f32>) {
        let (mut signed, mut unsigned) = (Vec::new(), Vec::new());
        for c in 0..classes {
            let inside: Vec<usize> = (0..h * w).filter(|&i| usize::from(mask[i]) == c).collect();
            let outside: Vec<usize> = (0..h * w).filter(|&i| usize::from(mask[i]) != c).collect();
            let is_in = |r: isize, col: isize| {
                r >= 0
                    && col >= 0
                    && (r as usize) < h
                    && (col as usize) < w
                    && usize::from(mask[r as usize * w + col as usize]) == c
            };
            let surface: Vec<usize> = inside
                .iter()
                .copied()
                .filter(|&i| {
                    let (r, col) = ((i / w) as isize, (i % w) as isize);
                    [(-1, 0), (1, 0), (0, -1), (0, 1)]
                        .iter()
                        .any(|&(dr, dc)| !is_in(r + dr, col + dc))
                })
                .collect();
            let step = spacing.0.min(spacing.1);
            for (q, &label) in mask.iter().enumerate() {
                signed.push(if inside.is_empty() || outside.is_empty() {
                    0.0
                } else if usize::from(label) == c {
                    (step - nearest(q, &outside, w, spacing)) as f32
                } else {
                    nearest(q, &inside, w, spacing) as f32
                });
                unsigned.push(if surface.is_empty() {
                    0.0
                } else {
                    nearest(q, &surface, w, spacing) as f32
                });
            }
        }
        (signed, unsigned)
    }

    #[test]
    fn maps_match_brute_force_on_random_9x7_masks() {
        let (h, w, classes) = (9, 7, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(20);
        for trial in 0..60 {
            let spacing = [(1.0, 1.0), (0.5, 2.0), (1.5, 0.7)][trial % 3];
            // Labels drawn with uneven odds, sometimes leaving a class out or one class only.
            let odds: [u32; 3] = match trial % 5 {
                0 => [1, 1, 1],
                1 => [8, 1, 0],
                2 => [1, 0, 0],
                3 => [20, 1, 1],
                _ => [1, 3, 9],
            };
            let total: u32 = odds.iter().sum();
            let mask: Vec<u8> = (0..h * w)
                .map(|_| {
                    let mut x = rng.random_range(0..total);
                    let mut label = 0u8;
                    while x >= odds[label as usize] {
                        x -= odds[label as usize];
                        label += 1;
                    }
                    label
                })
                .collect();
            let signed =
                signed_distance_maps_with_spacing(&mask, 1, h, w, classes, spacing).unwrap();
            let unsigned = boundary_distance_maps(&mask, 1, h, w, classes, spacing).unwrap();
            let (want_signed, want_unsigned) = brute_force(&mask, h, w, classes, spacing);
            let ctx = format!("trial {trial} spacing {spacing:?} mask {mask:?}");
            assert_close(&signed, &want_signed, 1e-5, &format!("signed, {ctx}"));
            assert_close(&unsigned, &want_unsigned, 1e-5, &format!("unsigned, {ctx}"));
        }
        // A batch is its images' maps side by side.
        let a: Vec<u8> = (0..h * w).map(|_| rng.random_range(0..3)).collect();
        let b: Vec<u8> = (0..h * w).map(|_| rng.random_range(0..2)).collect();
        let both = [a.clone(), b.clone()].concat();
        let batch = signed_distance_maps(&both, 2, h, w, classes).unwrap();
        let single = [
            signed_distance_maps(&a, 1, h, w, classes).unwrap(),
            signed_distance_maps(&b, 1, h, w, classes).unwrap(),
        ]
        .concat();
        assert_eq!(batch, single);
    }

    #[test]
    fn prediction_maps_threshold_each_class_at_one_half() {
        // Class 1's probability is 0.9 on the corner block, 0.5 (not above: outside) on
        // pixel (4, 4), 0.2 elsewhere; class 0 gets 1 - p.
        let block = corner_block();
        let p1: Vec<f32> = (0..25)
            .map(|i| match (block[i], i) {
                (1, _) => 0.9,
                (_, 24) => 0.5,
                _ => 0.2,
            })
            .collect();
        let probs: Vec<f32> = p1
            .iter()
            .map(|p| 1.0 - p)
            .chain(p1.iter().copied())
            .collect();
        let maps = prediction_distance_maps(&probs, 1, 2, 5, 5, (1.0, 1.0));
        assert_close(
            &maps[25..],
            &corner_block_surface_distance(),
            1e-6,
            "class 1",
        );
        let truth = boundary_distance_maps(&block, 1, 5, 5, 2, (1.0, 1.0)).unwrap();
        // Class 0: 1 - 0.5 is not above 0.5 either, so (4, 4) is in neither class.
        let mut without_corner = block.clone();
        without_corner[24] = 1;
        let expected = boundary_distance_maps(&without_corner, 1, 5, 5, 2, (1.0, 1.0)).unwrap();
        assert_close(&maps[..25], &expected[..25], 1e-6, "class 0");
        assert_ne!(&maps[..25], &truth[..25]);
    }
}
