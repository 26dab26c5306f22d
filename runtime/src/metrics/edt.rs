//! Exact Euclidean distance transform (EDT) of a 2-D site mask, with anisotropic spacing.
//!
//! The transform is separable (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled
//! Functions", 2012):
//!
//! 1. **Along columns** (vertical, spacing `row_mm`): for a binary input the 1-D lower envelope
//!    of parabolas degenerates to "distance to the nearest site in this column", which we compute
//!    exactly with one top-down and one bottom-up sweep over whole rows (cache friendly, integer).
//! 2. **Along rows** (horizontal, spacing `col_mm`): the general 1-D lower envelope of the
//!    parabolas `(x - x_p)^2 + f(p)` over the column results `f`, where `x = col * col_mm`.
//!
//! Both passes are exact, so the result equals brute force `min_s (dy*row_mm)^2 + (dx*col_mm)^2`
//! up to floating-point rounding (the tests check this on random masks).
//!
//! Pixels with no site anywhere in the image get `f64::INFINITY`.

/// Squared Euclidean distance (in mm², i.e. in squared units of `spacing`) from every pixel to the
/// nearest `true` pixel of `sites` (row-major, `width * height`). `spacing = (row_mm, col_mm)`:
/// `row_mm` is the distance between vertically adjacent pixels, `col_mm` between horizontally
/// adjacent ones. Sites get 0; if there are no sites every pixel gets `f64::INFINITY`.
///
/// # Panics
/// If `sites.len() != width * height` or a spacing component is not finite and `> 0`.
pub fn squared_edt(sites: &[bool], width: usize, height: usize, spacing: (f64, f64)) -> Vec<f64> {
    assert_eq!(
        sites.len(),
        width * height,
        "squared_edt: mask has {} pixels, expected {width}x{height}",
        sites.len()
    );
    assert_valid_spacing(spacing);
    let (row_mm, col_mm) = spacing;
    let n = width * height;
    if n == 0 {
        return Vec::new();
    }

    // Pass 1: vertical distance (in rows) to the nearest site in the same column.
    // `u32::MAX` marks "no site in this column (yet)".
    const NONE: u32 = u32::MAX;
    let mut g = vec![NONE; n];
    for x in 0..width {
        g[x] = if sites[x] { 0 } else { NONE };
    }
    // `NONE` saturates under `+ 1`, so "no site yet" propagates without a branch.
    for y in 1..height {
        let (prev, cur) = g.split_at_mut(y * width);
        let prev = &prev[(y - 1) * width..];
        let cur = &mut cur[..width];
        let row = &sites[y * width..(y + 1) * width];
        for ((c, &p), &site) in cur.iter_mut().zip(prev).zip(row) {
            *c = if site { 0 } else { p.saturating_add(1) };
        }
    }
    for y in (0..height.saturating_sub(1)).rev() {
        let (cur, next) = g.split_at_mut((y + 1) * width);
        let cur = &mut cur[y * width..];
        let next = &next[..width];
        for (c, &nx) in cur.iter_mut().zip(next) {
            *c = (*c).min(nx.saturating_add(1));
        }
    }

    // Pass 2: 1-D lower envelope along each row.
    let mut out = vec![0.0_f64; n];
    let mut f = vec![0.0_f64; width];
    let mut env = Envelope::with_capacity(width);
    for y in 0..height {
        let grow = &g[y * width..(y + 1) * width];
        for (fx, &gx) in f.iter_mut().zip(grow) {
            let d = f64::from(gx) * row_mm;
            *fx = if gx == NONE { f64::INFINITY } else { d * d };
        }
        env.transform(&f, col_mm, &mut out[y * width..(y + 1) * width]);
    }
    out
}

/// Euclidean distance (mm) from every pixel to the nearest site; see [`squared_edt`].
pub fn edt(sites: &[bool], width: usize, height: usize, spacing: (f64, f64)) -> Vec<f64> {
    let mut d = squared_edt(sites, width, height, spacing);
    for v in &mut d {
        *v = v.sqrt();
    }
    d
}

pub(crate) fn assert_valid_spacing(spacing: (f64, f64)) {
    assert!(
        spacing.0.is_finite() && spacing.0 > 0.0 && spacing.1.is_finite() && spacing.1 > 0.0,
        "pixel spacing must be finite and > 0, got {spacing:?}"
    );
}

/// Scratch buffers for the Felzenszwalb-Huttenlocher 1-D transform. Entry `k < len` describes the
/// k-th piece of the lower envelope.
struct Envelope {
    /// Grid index of the parabola's apex.
    v: Vec<usize>,
    /// Apex abscissa `v * s` (physical units).
    xv: Vec<f64>,
    /// `f[v] + xv^2`, the parabola's value at x = 0 (used in the intersection formula).
    hv: Vec<f64>,
    /// Left boundary of the piece (physical units); the piece spans `z[k]..z[k+1]`.
    z: Vec<f64>,
}

impl Envelope {
    fn with_capacity(n: usize) -> Self {
        Self {
            v: vec![0; n],
            xv: vec![0.0; n],
            hv: vec![0.0; n],
            z: vec![0.0; n],
        }
    }

    /// `out[q] = min_p ((q - p) * s)^2 + f[p]`. Infinite `f[p]` contribute no parabola; if all are
    /// infinite the output is all infinite.
    fn transform(&mut self, f: &[f64], s: f64, out: &mut [f64]) {
        let n = f.len();
        if self.v.len() < n {
            *self = Self::with_capacity(n);
        }
        let (v, xv, hv, z) = (
            &mut self.v[..n],
            &mut self.xv[..n],
            &mut self.hv[..n],
            &mut self.z[..n],
        );
        let mut len = 0usize;
        for (q, &fq) in f.iter().enumerate() {
            if fq == f64::INFINITY {
                continue;
            }
            let xq = q as f64 * s;
            let hq = fq + xq * xq;
            let mut start = f64::NEG_INFINITY;
            while len > 0 {
                let top = len - 1;
                // Abscissa from which parabola q undercuts the top parabola (xq > xv[top]).
                let cross = (hq - hv[top]) / (2.0 * (xq - xv[top]));
                if cross <= z[top] {
                    // The top parabola is never the minimum: drop it.
                    len -= 1;
                } else {
                    start = cross;
                    break;
                }
            }
            v[len] = q;
            xv[len] = xq;
            hv[len] = hq;
            z[len] = start;
            len += 1;
        }
        if len == 0 {
            out.fill(f64::INFINITY);
            return;
        }
        let mut k = 0;
        for (q, o) in out.iter_mut().enumerate() {
            let xq = q as f64 * s;
            while k + 1 < len && z[k + 1] < xq {
                k += 1;
            }
            let dx = xq - xv[k];
            *o = dx * dx + f[v[k]];
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tiny xorshift64* so the tests need no `rand`.
    pub(crate) struct XorShift(u64);
    impl XorShift {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in `0..n`.
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
        /// `true` with probability `p`.
        pub(crate) fn chance(&mut self, p: f64) -> bool {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
        }
    }

    fn brute_force(sites: &[bool], w: usize, h: usize, (sy, sx): (f64, f64)) -> Vec<f64> {
        let pts: Vec<(usize, usize)> = (0..w * h)
            .filter(|&i| sites[i])
            .map(|i| (i / w, i % w))
            .collect();
        (0..w * h)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                pts.iter()
                    .map(|&(py, px)| {
                        let dy = (y as f64 - py as f64) * sy;
                        let dx = (x as f64 - px as f64) * sx;
                        dy * dy + dx * dx
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    fn assert_close(a: &[f64], b: &[f64], ctx: &str) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x.is_infinite() || y.is_infinite() {
                assert_eq!(x, y, "{ctx}: pixel {i}");
            } else {
                assert!(
                    (x - y).abs() <= 1e-9 * (1.0 + y.abs()),
                    "{ctx}: pixel {i}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn matches_brute_force_on_random_masks() {
        let mut rng = XorShift::new(0xED7);
        let spacings = [
            (1.0, 1.0),
            (0.5, 2.0),
            (3.0, 0.7),
            (1.25, 1.25),
            (0.1, 10.0),
        ];
        for trial in 0..200 {
            let w = 1 + rng.below(40) as usize;
            let h = 1 + rng.below(40) as usize;
            let density = [0.0, 0.002, 0.02, 0.1, 0.5, 0.95, 1.0][trial % 7];
            let sites: Vec<bool> = (0..w * h).map(|_| rng.chance(density)).collect();
            let spacing = spacings[trial % spacings.len()];
            let got = squared_edt(&sites, w, h, spacing);
            let want = brute_force(&sites, w, h, spacing);
            assert_close(&got, &want, &format!("trial {trial} {w}x{h} {spacing:?}"));
        }
    }

    #[test]
    fn empty_and_full_and_degenerate() {
        assert!(squared_edt(&[], 0, 0, (1.0, 1.0)).is_empty());
        assert!(
            squared_edt(&[false; 6], 3, 2, (1.0, 1.0))
                .iter()
                .all(|v| v.is_infinite())
        );
        assert!(
            squared_edt(&[true; 6], 3, 2, (1.0, 1.0))
                .iter()
                .all(|&v| v == 0.0)
        );
        // Single row and single column, anisotropic.
        let d = edt(&[false, false, true, false, false], 5, 1, (7.0, 2.0));
        assert_eq!(d, vec![4.0, 2.0, 0.0, 2.0, 4.0]);
        let d = edt(&[false, false, true, false, false], 1, 5, (7.0, 2.0));
        assert_eq!(d, vec![14.0, 7.0, 0.0, 7.0, 14.0]);
    }

    #[test]
    fn single_site_is_exact_3_4_5() {
        let (w, h) = (8, 9);
        let mut s = vec![false; w * h];
        s[0] = true;
        let d = edt(&s, w, h, (1.0, 1.0));
        assert_eq!(d[4 * w + 3], 5.0);
        let d = edt(&s, w, h, (2.0, 1.0));
        assert_eq!(d[2 * w + 3], 5.0); // dy = 2 rows * 2 mm = 4, dx = 3
    }

    #[test]
    #[should_panic(expected = "spacing")]
    fn rejects_bad_spacing() {
        squared_edt(&[true], 1, 1, (0.0, 1.0));
    }
}
