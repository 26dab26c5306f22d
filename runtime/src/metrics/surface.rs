//! Surface (boundary) distances between two binary masks: ASSD, HD, HD95 and normalized surface
//! dice (NSD), in millimetres.
//!
//! # Conventions (matching MONAI's `HausdorffDistanceMetric`, `SurfaceDistanceMetric` and
//! `SurfaceDiceMetric` with `use_subvoxels=False`)
//!
//! * **Surface** of a mask: its foreground pixels that have at least one 4-connected background
//!   neighbour, where pixels outside the image count as background (so foreground on the image
//!   border is surface). This is `mask XOR binary_erosion(mask)` with scipy's default cross
//!   structuring element and `border_value=0`, which is what MONAI's `get_mask_edges` and medpy's
//!   `__surface_distances` compute. See [`surface_mask`].
//! * **Directed distances** A→B: for each surface pixel of A, the Euclidean distance (mm, using
//!   `spacing = (row mm, col mm)`) to the nearest surface pixel of B, read from an exact EDT of
//!   B's surface ([`super::edt`]). Only the bounding box of `A ∪ B` is transformed; this is exact
//!   because every surface pixel of either mask lies inside it.
//! * **ASSD**: mean of the pooled distances of both directions (MONAI
//!   `compute_average_surface_distance(symmetric=True)`: concatenate, then mean; medpy >= 0.5
//!   `assd` does the same). The older "mean of the two directed means" differs when the
//!   surfaces have different sizes.
//! * **HD**: maximum over both directions.
//! * **HD95**: MONAI's definition, `max(P95(A→B), P95(B→A))`: the larger of the two *directed*
//!   95th percentiles, each with numpy's default linear interpolation (`np.percentile`). This is
//!   what MONAI's `compute_hausdorff_distance(percentile=95, directed=False)` returns. medpy's
//!   `hd95` instead takes the 95th percentile of the pooled distances, which is never larger.
//!   We follow MONAI because it is the reference for most published medical-segmentation numbers
//!   and it is symmetric in a "worst direction" sense like HD itself.
//! * **Empty masks**: both empty → `None` (undefined; excluded from means). Exactly one empty →
//!   `Some` with `assd = hd = hd95 = f64::INFINITY` (MONAI returns `inf` here too); callers
//!   skip and count such cases. For NSD: both empty → `None`, one empty → `Some(0.0)` (MONAI).
//! * **NSD** (Nikolov et al.; MONAI non-subvoxel variant): fraction of surface pixels of both
//!   masks whose distance to the other surface is `<= tolerance_mm`.

use super::edt::{assert_valid_spacing, squared_edt};

/// Symmetric surface-distance summary of one pair of masks, in mm. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SurfaceDistances {
    /// Average symmetric surface distance (mean of the pooled distances both ways).
    pub assd: f64,
    /// Hausdorff distance (max both ways).
    pub hd: f64,
    /// MONAI HD95: `max(P95(truth→pred), P95(pred→truth))`, linear interpolation.
    pub hd95: f64,
}

impl SurfaceDistances {
    /// `true` when exactly one of the masks was empty (all fields infinite).
    pub fn is_one_side_empty(&self) -> bool {
        self.hd.is_infinite()
    }
}

/// The raw directed distances (mm) behind [`SurfaceDistances`], one per surface pixel, in
/// row-major order of the pixels. When one mask is empty its partner's distances are all
/// `f64::INFINITY` and its own list is empty.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceDistanceSamples {
    pub truth_to_pred: Vec<f64>,
    pub pred_to_truth: Vec<f64>,
}

impl SurfaceDistanceSamples {
    /// ASSD / HD / HD95 from the samples; `None` if there are no samples at all.
    pub fn distances(&self) -> Option<SurfaceDistances> {
        let n = self.truth_to_pred.len() + self.pred_to_truth.len();
        if n == 0 {
            return None;
        }
        let all = || self.truth_to_pred.iter().chain(&self.pred_to_truth);
        let assd = all().sum::<f64>() / n as f64;
        let hd = all().copied().fold(f64::NEG_INFINITY, f64::max);
        let p = |v: &[f64]| {
            let mut v = v.to_vec();
            percentile(&mut v, 95.0).unwrap_or(f64::NEG_INFINITY)
        };
        let hd95 = p(&self.truth_to_pred).max(p(&self.pred_to_truth));
        Some(SurfaceDistances { assd, hd, hd95 })
    }

    /// Normalized surface dice at `tolerance_mm` (`<=`); `None` if there are no samples.
    pub fn nsd(&self, tolerance_mm: f64) -> Option<f64> {
        let n = self.truth_to_pred.len() + self.pred_to_truth.len();
        if n == 0 {
            return None;
        }
        // Grid distances often equal the tolerance exactly (e.g. sqrt(0.9² + 1.2²) = 1.5), and
        // the squared-distance sum can round one ulp above it; rounding must not decide.
        let limit = tolerance_mm * (1.0 + 1e-9);
        let ok = self
            .truth_to_pred
            .iter()
            .chain(&self.pred_to_truth)
            .filter(|&&d| d <= limit)
            .count();
        Some(ok as f64 / n as f64)
    }
}

/// Symmetric surface distances between two binary masks (row-major, `width * height`), in mm.
/// `None` if both are empty; all-infinite if exactly one is. See the module docs for the exact
/// conventions (surface definition, MONAI-style HD95).
///
/// # Panics
/// If a mask length differs from `width * height`, or a spacing component is not finite and > 0.
pub fn surface_distances(
    truth: &[bool],
    pred: &[bool],
    width: usize,
    height: usize,
    spacing: (f64, f64),
) -> Option<SurfaceDistances> {
    surface_distance_samples(truth, pred, width, height, spacing)?.distances()
}

/// Normalized surface dice: share of both surfaces lying within `tolerance_mm` (inclusive) of the
/// other surface. `None` if both masks are empty, `Some(0.0)` if exactly one is.
///
/// # Panics
/// As [`surface_distances`].
pub fn normalized_surface_dice(
    truth: &[bool],
    pred: &[bool],
    width: usize,
    height: usize,
    spacing: (f64, f64),
    tolerance_mm: f64,
) -> Option<f64> {
    surface_distance_samples(truth, pred, width, height, spacing)?.nsd(tolerance_mm)
}

/// The per-pixel directed distances; `None` if both masks are empty.
///
/// # Panics
/// As [`surface_distances`].
pub fn surface_distance_samples(
    truth: &[bool],
    pred: &[bool],
    width: usize,
    height: usize,
    spacing: (f64, f64),
) -> Option<SurfaceDistanceSamples> {
    let n = width * height;
    assert!(
        truth.len() == n && pred.len() == n,
        "surface distances: masks have {} and {} pixels, expected {width}x{height}",
        truth.len(),
        pred.len()
    );
    samples_with(|i| truth[i], |i| pred[i], width, height, spacing)
}

/// Core of the surface metrics over predicate-defined masks (lets `score_image` test
/// `label == class` without materialising full-size boolean masks).
pub(crate) fn samples_with(
    truth: impl Fn(usize) -> bool,
    pred: impl Fn(usize) -> bool,
    width: usize,
    height: usize,
    spacing: (f64, f64),
) -> Option<SurfaceDistanceSamples> {
    assert_valid_spacing(spacing);
    // Bounding box of the union.
    let (mut x0, mut x1, mut y0, mut y1) = (usize::MAX, 0, usize::MAX, 0);
    for y in 0..height {
        let row = y * width;
        let first = (0..width).find(|&x| truth(row + x) || pred(row + x));
        if let Some(first) = first {
            let last = (first..width)
                .rev()
                .find(|&x| truth(row + x) || pred(row + x))
                .unwrap();
            x0 = x0.min(first);
            x1 = x1.max(last);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 == usize::MAX {
        return None;
    }
    let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
    let crop = |f: &dyn Fn(usize) -> bool| -> Vec<bool> {
        let mut m = Vec::with_capacity(cw * ch);
        for y in y0..=y1 {
            m.extend((x0..=x1).map(|x| f(y * width + x)));
        }
        m
    };
    // Outside the union's bounding box both masks are background, so surfaces computed on the
    // crop (crop edge = background) equal those computed on the full image.
    let st = surface_mask(&crop(&truth), cw, ch);
    let sp = surface_mask(&crop(&pred), cw, ch);
    let has_t = st.contains(&true);
    let has_p = sp.contains(&true);

    let directed = |from: &[bool], to_sq_edt: Option<&[f64]>| -> Vec<f64> {
        from.iter()
            .enumerate()
            .filter(|&(_, &s)| s)
            .map(|(i, _)| to_sq_edt.map_or(f64::INFINITY, |d| d[i].sqrt()))
            .collect()
    };
    if has_t && has_p {
        let dt = squared_edt(&st, cw, ch, spacing);
        let dp = squared_edt(&sp, cw, ch, spacing);
        Some(SurfaceDistanceSamples {
            truth_to_pred: directed(&st, Some(&dp)),
            pred_to_truth: directed(&sp, Some(&dt)),
        })
    } else {
        Some(SurfaceDistanceSamples {
            truth_to_pred: directed(&st, None),
            pred_to_truth: directed(&sp, None),
        })
    }
}

/// Surface pixels of `mask`: foreground with a 4-connected background neighbour or on the image
/// border (pixels outside the image count as background).
///
/// # Panics
/// If `mask.len() != width * height`.
pub fn surface_mask(mask: &[bool], width: usize, height: usize) -> Vec<bool> {
    assert_eq!(
        mask.len(),
        width * height,
        "surface_mask: mask is not {width}x{height}"
    );
    let mut out = vec![false; mask.len()];
    for y in 0..height {
        let cur = &mask[y * width..(y + 1) * width];
        let out_row = &mut out[y * width..(y + 1) * width];
        if y == 0 || y + 1 == height || width <= 2 {
            // Every foreground pixel touches the image border.
            out_row.copy_from_slice(cur);
            continue;
        }
        let up = &mask[(y - 1) * width..y * width];
        let down = &mask[(y + 1) * width..(y + 2) * width];
        out_row[0] = cur[0];
        out_row[width - 1] = cur[width - 1];
        for x in 1..width - 1 {
            out_row[x] = cur[x] && !(up[x] && down[x] && cur[x - 1] && cur[x + 1]);
        }
    }
    out
}

/// `p`-th percentile (0..=100) with linear interpolation between closest ranks, i.e. numpy's
/// default `np.percentile(v, p)` / `torch.quantile(v, p / 100)`. Reorders `values`. `None` if
/// empty.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable_by(f64::total_cmp);
    let rank = (p / 100.0).clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let (a, b) = (values[lo], values[hi]);
    Some(if lo == hi || a == b {
        a
    } else {
        a + (b - a) * (rank - lo as f64)
    })
}

#[cfg(test)]
mod tests {
    use super::super::edt::tests::XorShift;
    use super::*;

    fn rect(w: usize, h: usize, (x0, y0, x1, y1): (usize, usize, usize, usize)) -> Vec<bool> {
        (0..w * h)
            .map(|i| (x0..x1).contains(&(i % w)) && (y0..y1).contains(&(i / w)))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + b.abs())
    }

    #[test]
    fn surface_definition() {
        // 3x3 block inside a 5x5 image: ring of 8, centre is interior.
        let m = rect(5, 5, (1, 1, 4, 4));
        let s = surface_mask(&m, 5, 5);
        assert_eq!(s.iter().filter(|&&b| b).count(), 8);
        assert!(!s[2 * 5 + 2]);
        // Full image: only the image border is surface.
        let s = surface_mask(&[true; 20], 5, 4);
        assert_eq!(s.iter().filter(|&&b| b).count(), 5 + 5 + 2 + 2);
        // 4-connectivity: around an interior hole only its 4 direct neighbours become surface,
        // the diagonal ones stay interior.
        let mut m = vec![true; 49];
        m[3 * 7 + 3] = false;
        let s = surface_mask(&m, 7, 7);
        assert_eq!(s.iter().filter(|&&b| b).count(), 24 + 4);
        for (x, y) in [(2, 3), (4, 3), (3, 2), (3, 4)] {
            assert!(s[y * 7 + x], "({x},{y}) touches the hole");
        }
        for (x, y) in [(2, 2), (4, 2), (2, 4), (4, 4)] {
            assert!(!s[y * 7 + x], "({x},{y}) only touches the hole diagonally");
        }
        // Single pixel is its own surface.
        assert_eq!(
            surface_mask(&[false, true, false], 3, 1),
            vec![false, true, false]
        );
    }

    #[test]
    fn percentile_matches_numpy() {
        assert_eq!(percentile(&mut [], 95.0), None);
        assert_eq!(percentile(&mut [7.0], 95.0), Some(7.0));
        // np.percentile([1,2,3,4], 95) == 3.85
        assert!(close(
            percentile(&mut [4.0, 1.0, 3.0, 2.0], 95.0).unwrap(),
            3.85
        ));
        // np.percentile(range(21), 95) == 19.0 exactly
        let mut v: Vec<f64> = (0..21).map(f64::from).collect();
        assert!(close(percentile(&mut v, 95.0).unwrap(), 19.0));
        assert_eq!(
            percentile(&mut [1.0, f64::INFINITY], 95.0),
            Some(f64::INFINITY)
        );
        assert_eq!(percentile(&mut [3.0, 1.0], 100.0), Some(3.0));
        assert_eq!(percentile(&mut [3.0, 1.0], 0.0), Some(1.0));
    }

    #[test]
    fn identical_masks_are_zero() {
        let m = rect(16, 12, (3, 2, 11, 9));
        let d = surface_distances(&m, &m, 16, 12, (0.7, 1.3)).unwrap();
        assert_eq!(
            d,
            SurfaceDistances {
                assd: 0.0,
                hd: 0.0,
                hd95: 0.0
            }
        );
        assert_eq!(
            normalized_surface_dice(&m, &m, 16, 12, (0.7, 1.3), 0.0),
            Some(1.0)
        );
    }

    #[test]
    fn squares_offset_by_k_pixels_give_hd_k() {
        let (w, h) = (40, 30);
        for k in 1..6 {
            let a = rect(w, h, (5, 5, 17, 17));
            // Horizontal shift: HD = k * col spacing.
            let b = rect(w, h, (5 + k, 5, 17 + k, 17));
            let d = surface_distances(&a, &b, w, h, (1.0, 1.0)).unwrap();
            assert!(close(d.hd, k as f64), "k={k}: {d:?}");
            assert!(d.hd95 <= d.hd && d.assd <= d.hd && d.assd > 0.0);
            let d = surface_distances(&a, &b, w, h, (2.0, 0.5)).unwrap();
            assert!(close(d.hd, k as f64 * 0.5), "k={k}: {d:?}");
            // Vertical shift: HD = k * row spacing.
            let b = rect(w, h, (5, 5 + k, 17, 17 + k));
            let d = surface_distances(&a, &b, w, h, (2.0, 0.5)).unwrap();
            assert!(close(d.hd, k as f64 * 2.0), "k={k}: {d:?}");
        }
    }

    #[test]
    fn single_pixels_3_4_5() {
        let (w, h) = (10, 10);
        let mut a = vec![false; w * h];
        let mut b = vec![false; w * h];
        a[w + 2] = true;
        b[5 * w + 5] = true; // dy = 4, dx = 3
        let d = surface_distances(&a, &b, w, h, (1.0, 1.0)).unwrap();
        assert_eq!(
            d,
            SurfaceDistances {
                assd: 5.0,
                hd: 5.0,
                hd95: 5.0
            }
        );
        let d = surface_distances(&a, &b, w, h, (2.0, 1.0)).unwrap();
        assert!(close(d.hd, (64.0f64 + 9.0).sqrt()));
        assert_eq!(
            normalized_surface_dice(&a, &b, w, h, (1.0, 1.0), 4.99),
            Some(0.0)
        );
        assert_eq!(
            normalized_surface_dice(&a, &b, w, h, (1.0, 1.0), 5.0),
            Some(1.0)
        );
    }

    #[test]
    fn assd_and_hd95_by_hand() {
        // Row image 1x12. truth = single pixel at x=0. pred = pixels x=2 and x=10 (two separate
        // 1-pixel blobs, each its own surface).
        // truth->pred: [2]                 pred->truth: [2, 10]
        // pooled mean = (2 + 2 + 10) / 3; HD = 10
        // HD95 (MONAI) = max(P95([2]), P95([2,10])) = max(2, 2 + 0.95*8) = 9.6
        // (medpy's pooled P95 of [2,2,10] would be 2 + 0.9*8 = 9.2)
        let mut t = vec![false; 12];
        let mut p = vec![false; 12];
        t[0] = true;
        p[2] = true;
        p[10] = true;
        let d = surface_distances(&t, &p, 12, 1, (1.0, 1.0)).unwrap();
        assert!(close(d.assd, 14.0 / 3.0), "{d:?}");
        assert!(close(d.hd, 10.0));
        assert!(close(d.hd95, 9.6), "{d:?}");
        // Symmetric in the arguments.
        let e = surface_distances(&p, &t, 12, 1, (1.0, 1.0)).unwrap();
        assert!(close(e.assd, d.assd) && close(e.hd, d.hd) && close(e.hd95, d.hd95));
        // NSD with tolerance 2: 2 of 3 surface pixels within.
        assert!(close(
            normalized_surface_dice(&t, &p, 12, 1, (1.0, 1.0), 2.0).unwrap(),
            2.0 / 3.0
        ));
    }

    #[test]
    fn empty_cases() {
        let e = vec![false; 25];
        let m = rect(5, 5, (1, 1, 3, 3));
        assert_eq!(surface_distances(&e, &e, 5, 5, (1.0, 1.0)), None);
        assert_eq!(normalized_surface_dice(&e, &e, 5, 5, (1.0, 1.0), 1.0), None);
        for (t, p) in [(&e, &m), (&m, &e)] {
            let d = surface_distances(t, p, 5, 5, (1.0, 1.0)).unwrap();
            assert!(d.assd.is_infinite() && d.hd.is_infinite() && d.hd95.is_infinite());
            assert!(d.is_one_side_empty());
            assert_eq!(
                normalized_surface_dice(t, p, 5, 5, (1.0, 1.0), 100.0),
                Some(0.0)
            );
        }
        // Zero-sized image.
        assert_eq!(surface_distances(&[], &[], 0, 0, (1.0, 1.0)), None);
    }

    /// Everything recomputed by brute force over explicit surface point lists.
    #[test]
    fn matches_brute_force_on_random_masks() {
        let mut rng = XorShift::new(0x5EED);
        for trial in 0..150 {
            let w = 1 + rng.below(30) as usize;
            let h = 1 + rng.below(30) as usize;
            let spacing = [(1.0, 1.0), (0.5, 1.5), (2.5, 0.8)][trial % 3];
            let dens = [0.05, 0.3, 0.6, 0.9][trial % 4];
            let t: Vec<bool> = (0..w * h).map(|_| rng.chance(dens)).collect();
            let p: Vec<bool> = (0..w * h).map(|_| rng.chance(dens)).collect();
            let pts = |m: &[bool]| -> Vec<(f64, f64)> {
                let s = surface_mask(m, w, h);
                (0..w * h)
                    .filter(|&i| s[i])
                    .map(|i| ((i / w) as f64 * spacing.0, (i % w) as f64 * spacing.1))
                    .collect()
            };
            let (pt, pp) = (pts(&t), pts(&p));
            let got = surface_distances(&t, &p, w, h, spacing);
            if pt.is_empty() || pp.is_empty() {
                match (pt.is_empty(), pp.is_empty()) {
                    (true, true) => assert_eq!(got, None),
                    _ => assert!(got.unwrap().is_one_side_empty()),
                }
                continue;
            }
            let dir = |a: &[(f64, f64)], b: &[(f64, f64)]| -> Vec<f64> {
                a.iter()
                    .map(|&(ay, ax)| {
                        b.iter()
                            .map(|&(by, bx)| ((ay - by).powi(2) + (ax - bx).powi(2)).sqrt())
                            .fold(f64::INFINITY, f64::min)
                    })
                    .collect()
            };
            let (mut d1, mut d2) = (dir(&pt, &pp), dir(&pp, &pt));
            let n = (d1.len() + d2.len()) as f64;
            let assd = (d1.iter().sum::<f64>() + d2.iter().sum::<f64>()) / n;
            let hd = d1.iter().chain(&d2).copied().fold(0.0, f64::max);
            let hd95 = percentile(&mut d1, 95.0)
                .unwrap()
                .max(percentile(&mut d2, 95.0).unwrap());
            let got = got.unwrap();
            let ctx = format!("trial {trial} {w}x{h}: {got:?} vs {assd} {hd} {hd95}");
            assert!(
                close(got.assd, assd) && close(got.hd, hd) && close(got.hd95, hd95),
                "{ctx}"
            );
            let tol = 1.5;
            let within = d1.iter().chain(&d2).filter(|&&d| d <= tol).count() as f64 / n;
            let nsd = normalized_surface_dice(&t, &p, w, h, spacing, tol).unwrap();
            assert!(close(nsd, within), "{ctx}: nsd {nsd} vs {within}");
        }
    }

    #[test]
    fn perf_512_discs() {
        let (w, h) = (512, 512);
        let disc = |cx: f64, cy: f64, r: f64| -> Vec<bool> {
            (0..w * h)
                .map(|i| {
                    let (x, y) = ((i % w) as f64, (i / w) as f64);
                    (x - cx).powi(2) + (y - cy).powi(2) <= r * r
                })
                .collect()
        };
        let a = disc(250.0, 256.0, 200.0);
        let b = disc(262.0, 250.0, 190.0);
        let start = std::time::Instant::now();
        let reps = 10;
        let mut d = None;
        for _ in 0..reps {
            d = surface_distances(&a, &b, w, h, (0.8, 0.8));
        }
        let per = start.elapsed() / reps;
        let d = d.unwrap();
        eprintln!("512x512 disc surface distances: {per:?} per call ({d:?})");
        assert!(d.hd > 0.0 && d.hd.is_finite());
        // Generous bound so unoptimised (debug) test builds pass too.
        assert!(per.as_millis() < 1000, "too slow: {per:?}");
    }
}
