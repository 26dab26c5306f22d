//! How far a trained spatial transformer moves its input (`medseg-train stn-report`): the
//! affine transform it predicts for each test slice, summarised per domain as scale, rotation,
//! shear, translation, and what the move costs once the logits are warped back: the share of
//! the image, and of its labelled foreground, that falls outside the transformed frame (those
//! pixels get zero logits, so background).
//!
//! `theta = [A | t]` maps the warped frame's normalised coordinates `q` to the input's:
//! `p = A q + t` (PyTorch's `affine_grid`). The frame covers the input pixel `p` when
//! `A^-1 (p - t)` lies in `[-1, 1]^2`.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use serde::Serialize;

use medseg_models::SegModel;
use medseg_models::burn_ops::BurnOps;

/// One slice's transform, decomposed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TransformSize {
    /// `sqrt(|det A|)`: below 1 the network zooms in (the frame shows a smaller part of the
    /// input), above 1 it zooms out.
    pub scale: f64,
    /// Rotation of `A`'s polar part, degrees.
    pub rotation_deg: f64,
    /// Ratio of `A`'s singular values (1: no shear or stretch).
    pub anisotropy: f64,
    /// `|t|` in half-widths of the image (1 = half the image).
    pub translation: f64,
    /// Frobenius norm of `theta - identity`.
    pub distance: f64,
    /// Share of the input's pixels the frame covers.
    pub coverage: f64,
    /// Share of the labelled foreground pixels outside the frame (lost to background).
    pub foreground_lost: Option<f64>,
}

/// `theta` given row-major as `[a, b, tx, c, d, ty]`, the mask (any non-zero value is
/// foreground) at `size` = (height, width) when there is one.
pub fn measure(theta: [f64; 6], mask: Option<(&[u8], [usize; 2])>) -> TransformSize {
    let [a, b, tx, c, d, ty] = theta;
    let det = a * d - b * c;
    // Polar decomposition of a 2x2 matrix: the rotation is atan2(c - b, a + d) and the
    // singular values come from the sum and difference of the rotation and reflection parts.
    let rotation_deg = (c - b).atan2(a + d).to_degrees();
    let (p, q) = (
        ((a + d).powi(2) + (c - b).powi(2)).sqrt() / 2.0,
        ((a - d).powi(2) + (c + b).powi(2)).sqrt() / 2.0,
    );
    let (s1, s2) = (p + q, (p - q).abs());
    let anisotropy = if s2 > 0.0 { s1 / s2 } else { f64::INFINITY };
    let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    let distance = theta
        .iter()
        .zip(identity)
        .map(|(v, i)| (v - i).powi(2))
        .sum::<f64>()
        .sqrt();
    let inside = |y: f64, x: f64| -> bool {
        if det.abs() < 1e-12 {
            return false;
        }
        let (px, py) = (x - tx, y - ty);
        let qx = (d * px - b * py) / det;
        let qy = (-c * px + a * py) / det;
        qx.abs() <= 1.0 && qy.abs() <= 1.0
    };
    // Pixel centres in normalised coordinates (align_corners = false).
    let norm = |i: usize, n: usize| (2.0 * i as f64 + 1.0) / n as f64 - 1.0;
    let grid = 64;
    let mut covered = 0usize;
    for i in 0..grid {
        for j in 0..grid {
            covered += usize::from(inside(norm(i, grid), norm(j, grid)));
        }
    }
    let foreground_lost = mask.and_then(|(m, [h, w])| {
        let mut total = 0usize;
        let mut lost = 0usize;
        for (k, _) in m.iter().enumerate().filter(|(_, v)| **v > 0) {
            total += 1;
            lost += usize::from(!inside(norm(k / w, h), norm(k % w, w)));
        }
        (total > 0).then(|| lost as f64 / total as f64)
    });
    TransformSize {
        scale: det.abs().sqrt(),
        rotation_deg,
        anisotropy,
        translation: (tx * tx + ty * ty).sqrt(),
        distance,
        coverage: covered as f64 / (grid * grid) as f64,
        foreground_lost,
    }
}

/// The transforms the model's localisation net predicts for `inputs` (each `[C, H, W]` of
/// `shape`), in batches; `None` when the model has no transformer.
pub fn predict<B: Backend>(
    model: &SegModel<B>,
    inputs: &[Vec<f32>],
    shape: [usize; 3],
    device: &B::Device,
) -> Option<Vec<[f64; 6]>> {
    let stn = model.stn.as_ref()?;
    let [c, h, w] = shape;
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(8) {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(chunk.concat(), [chunk.len(), c, h, w]),
            device,
        );
        let mut ops = BurnOps::for_input(&x);
        let theta = stn.theta(&mut ops, x);
        let values: Vec<f32> = theta
            .into_data()
            .convert::<f32>()
            .to_vec()
            .unwrap_or_default();
        out.extend(values.chunks_exact(6).map(|v| {
            let mut t = [0.0; 6];
            for (dst, src) in t.iter_mut().zip(v) {
                *dst = f64::from(*src);
            }
            t
        }));
    }
    Some(out)
}

/// Quantiles of one measure over a domain's slices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub max: f64,
}

impl Quantiles {
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some(Self {
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
            max: v[v.len() - 1],
        })
    }
}

/// A domain's transforms, summarised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainTransforms {
    pub domain: String,
    pub images: usize,
    pub scale: Option<Quantiles>,
    pub rotation_deg: Option<Quantiles>,
    pub anisotropy: Option<Quantiles>,
    pub translation: Option<Quantiles>,
    pub distance: Option<Quantiles>,
    pub coverage: Option<Quantiles>,
    /// Mean over the slices with foreground of the share of it lost outside the frame.
    pub mean_foreground_lost: Option<f64>,
}

impl DomainTransforms {
    pub fn of(domain: &str, sizes: &[TransformSize]) -> Self {
        let q =
            |f: fn(&TransformSize) -> f64| Quantiles::of(&sizes.iter().map(f).collect::<Vec<_>>());
        let lost: Vec<f64> = sizes.iter().filter_map(|s| s.foreground_lost).collect();
        Self {
            domain: domain.to_string(),
            images: sizes.len(),
            scale: q(|s| s.scale),
            rotation_deg: q(|s| s.rotation_deg),
            anisotropy: q(|s| s.anisotropy),
            translation: q(|s| s.translation),
            distance: q(|s| s.distance),
            coverage: q(|s| s.coverage),
            mean_foreground_lost: (!lost.is_empty())
                .then(|| lost.iter().sum::<f64>() / lost.len() as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_moves_nothing_and_covers_everything() {
        let mask = vec![1u8; 16];
        let s = measure([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], Some((&mask, [4, 4])));
        assert_eq!(s.scale, 1.0);
        assert_eq!(s.rotation_deg, 0.0);
        assert_eq!(s.anisotropy, 1.0);
        assert_eq!(s.distance, 0.0);
        assert_eq!(s.coverage, 1.0);
        assert_eq!(s.foreground_lost, Some(0.0));
    }

    #[test]
    fn zoom_in_keeps_the_centre_and_loses_the_border() {
        // A = 0.5 I: the frame shows the central half of the input in each direction.
        let mut mask = vec![0u8; 64];
        mask[0] = 1; // top-left corner: outside the frame
        mask[4 * 8 + 4] = 1; // centre: inside
        let s = measure([0.5, 0.0, 0.0, 0.0, 0.5, 0.0], Some((&mask, [8, 8])));
        assert!((s.scale - 0.5).abs() < 1e-12);
        assert!((s.coverage - 0.25).abs() < 1e-12, "{}", s.coverage);
        assert_eq!(s.foreground_lost, Some(0.5));
    }

    #[test]
    fn rotation_and_shear_are_told_apart() {
        let r = 30f64.to_radians();
        let rot = measure([r.cos(), -r.sin(), 0.0, r.sin(), r.cos(), 0.0], None);
        assert!((rot.rotation_deg - 30.0).abs() < 1e-9);
        assert!((rot.anisotropy - 1.0).abs() < 1e-9);
        assert!((rot.scale - 1.0).abs() < 1e-9);
        let stretch = measure([2.0, 0.0, 0.0, 0.0, 1.0, 0.3], None);
        assert!((stretch.anisotropy - 2.0).abs() < 1e-9);
        assert!((stretch.translation - 0.3).abs() < 1e-12);
        assert!(stretch.rotation_deg.abs() < 1e-12);
    }

    #[test]
    fn quantiles_ignore_non_finite_values() {
        let q = Quantiles::of(&[3.0, f64::INFINITY, 1.0, 2.0]).unwrap();
        assert_eq!((q.median, q.max), (2.0, 3.0));
        assert!(Quantiles::of(&[f64::NAN]).is_none());
    }
}
