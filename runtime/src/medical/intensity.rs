//! Intensity to 8 bits: a CT window (level/width in HU, after the source's rescale) or
//! percentiles of the whole volume (MRI, whose values have no fixed scale).

use anyhow::{Context, ensure};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Intensity {
    Window {
        level: f64,
        width: f64,
    },
    /// Percentiles (0..=100) of the volume mapped to 0 and 255.
    Percentiles {
        lo: f64,
        hi: f64,
    },
}

/// Used when neither the user nor the file gives a window.
pub const DEFAULT_PERCENTILES: Intensity = Intensity::Percentiles { lo: 0.5, hi: 99.5 };

impl Intensity {
    pub fn window(level: f64, width: f64) -> anyhow::Result<Self> {
        ensure!(
            width.is_finite() && width > 0.0 && level.is_finite(),
            "window width must be positive (got level {level}, width {width})"
        );
        Ok(Self::Window { level, width })
    }

    pub fn percentiles(lo: f64, hi: f64) -> anyhow::Result<Self> {
        ensure!(
            (0.0..=100.0).contains(&lo) && (0.0..=100.0).contains(&hi) && lo < hi,
            "percentiles must satisfy 0 <= LO < HI <= 100 (got {lo},{hi})"
        );
        Ok(Self::Percentiles { lo, hi })
    }

    /// The values mapped to 0 and 255 for this volume.
    pub fn range(&self, volume: &[f32]) -> anyhow::Result<(f32, f32)> {
        match *self {
            Self::Window { level, width } => {
                Ok(((level - width / 2.0) as f32, (level + width / 2.0) as f32))
            }
            Self::Percentiles { lo, hi } => {
                let mut finite: Vec<f32> =
                    volume.iter().copied().filter(|v| v.is_finite()).collect();
                ensure!(!finite.is_empty(), "the volume holds no finite values");
                let mut pick = |p: f64| {
                    let n = ((p / 100.0) * (finite.len() - 1) as f64).round() as usize;
                    *finite.select_nth_unstable_by(n, f32::total_cmp).1
                };
                Ok((pick(lo), pick(hi)))
            }
        }
    }
}

/// Parses `A,B` (two numbers), as `--window` and `--percentiles` take them.
pub fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}': expected two numbers A,B"))?;
    let num = |t: &str| -> Result<f64, String> {
        t.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("'{t}' is not a number"))
    };
    Ok((num(a)?, num(b)?))
}

/// The mapping the user's flags and the file give: the user's `--window` or `--percentiles`,
/// else the window stored in the file (DICOM), else [`DEFAULT_PERCENTILES`]. The importers and
/// the runtime choose alike, so a scan reaches a model as its training slices did.
pub fn choose(
    window: Option<(f64, f64)>,
    percentiles: Option<(f64, f64)>,
    from_file: Option<(f64, f64)>,
) -> anyhow::Result<Intensity> {
    match (window, percentiles, from_file) {
        (Some((l, w)), _, _) => Intensity::window(l, w).context("--window"),
        (None, Some((lo, hi)), _) => Intensity::percentiles(lo, hi).context("--percentiles"),
        (None, None, Some((l, w))) => Intensity::window(l, w),
        (None, None, None) => Ok(DEFAULT_PERCENTILES),
    }
}

/// Maps `v` linearly from `[lo, hi]` to `0..=255`, clamping outside. A flat range (constant
/// volume) maps to 0 below or at `lo` and 255 above.
pub fn to_u8(v: f32, (lo, hi): (f32, f32)) -> u8 {
    if !v.is_finite() {
        return 0;
    }
    if hi > lo {
        ((v - lo) / (hi - lo) * 255.0).round().clamp(0.0, 255.0) as u8
    } else if v > lo {
        255
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_maps_level_to_mid_grey_and_clamps() {
        let w = Intensity::window(40.0, 400.0).unwrap();
        let r = w.range(&[]).unwrap();
        assert_eq!(r, (-160.0, 240.0));
        assert_eq!(to_u8(-1000.0, r), 0);
        assert_eq!(to_u8(40.0, r), 128);
        assert_eq!(to_u8(240.0, r), 255);
        assert_eq!(to_u8(3000.0, r), 255);
        assert!(Intensity::window(40.0, 0.0).is_err());
    }

    #[test]
    fn percentiles_ignore_outliers_and_nans() {
        let mut v: Vec<f32> = (0..=100).map(|x| x as f32).collect();
        v.push(f32::NAN);
        v.push(1.0e6);
        let p = Intensity::percentiles(1.0, 99.0).unwrap();
        let r = p.range(&v).unwrap();
        assert_eq!(r, (1.0, 100.0));
        assert_eq!(to_u8(1.0e6, r), 255);
        assert!(Intensity::percentiles(50.0, 10.0).is_err());
    }

    #[test]
    fn flat_range_does_not_divide_by_zero() {
        assert_eq!(to_u8(5.0, (5.0, 5.0)), 0);
        assert_eq!(to_u8(6.0, (5.0, 5.0)), 255);
    }
}
