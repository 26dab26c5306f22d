//! The `--loss` grammar: a `+`-separated weighted sum of terms, each `[WEIGHT[*]]NAME[(K=V,...)]`,
//! e.g. `0.5ce+0.5dice`, `focal(gamma=2,alpha=0.25)`, `dice(background=include)`,
//! `tversky(alpha=0.3,beta=0.7)`, `dice+0.01boundary`, `dice+0.1hd_dt(alpha=2)`. Parameters left
//! out take the defaults of each loss.

use std::fmt;
use std::str::FromStr;

/// One loss with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    Ce,
    Dice {
        smooth: f64,
        background: bool,
    },
    Iou {
        smooth: f64,
        background: bool,
    },
    Focal {
        gamma: f64,
        alpha: Option<f64>,
    },
    Tversky {
        alpha: f64,
        beta: f64,
        smooth: f64,
    },
    /// Kervadec et al.'s boundary loss (signed distance maps of the target).
    Boundary,
    /// Karimi & Salcudean's distance-transform Hausdorff loss, distances to the power `alpha`.
    HausdorffDt {
        alpha: f64,
    },
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::Dice { .. } => "dice",
            Self::Iou { .. } => "iou",
            Self::Focal { .. } => "focal",
            Self::Tversky { .. } => "tversky",
            Self::Boundary => "boundary",
            Self::HausdorffDt { .. } => "hd_dt",
        }
    }

    /// Whether the loss needs distance maps of the target (computed on the host per batch).
    pub fn is_shape_aware(self) -> bool {
        matches!(self, Self::Boundary | Self::HausdorffDt { .. })
    }

    /// The loss with its default parameters.
    fn by_name(name: &str) -> Option<Self> {
        Some(match name {
            "ce" | "crossentropy" => Self::Ce,
            "dice" => Self::Dice {
                smooth: 1.0,
                background: false,
            },
            "iou" | "jaccard" => Self::Iou {
                smooth: 1.0,
                background: false,
            },
            "focal" => Self::Focal {
                gamma: 2.0,
                alpha: None,
            },
            "tversky" => Self::Tversky {
                alpha: 0.3,
                beta: 0.7,
                smooth: 1.0,
            },
            "boundary" => Self::Boundary,
            "hd_dt" | "hausdorff_dt" => Self::HausdorffDt { alpha: 2.0 },
            _ => return None,
        })
    }

    /// Sets parameter `key` to `value`, or says which keys this loss takes.
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let num = || -> Result<f64, String> {
            let v: f64 = value
                .parse()
                .map_err(|_| format!("{key}={value}: not a number"))?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(format!("{key}={value}: must be a number >= 0"))
            }
        };
        let unit = || -> Result<f64, String> {
            let v = num()?;
            if v <= 1.0 {
                Ok(v)
            } else {
                Err(format!("{key}={value}: must be in [0, 1]"))
            }
        };
        let name = self.name();
        match (self, key) {
            (Self::Dice { smooth, .. } | Self::Iou { smooth, .. }, "smooth")
            | (Self::Tversky { smooth, .. }, "smooth") => *smooth = num()?,
            (Self::Dice { background, .. } | Self::Iou { background, .. }, "background") => {
                *background = match value {
                    "include" | "true" | "1" => true,
                    "exclude" | "false" | "0" => false,
                    _ => return Err(format!("background={value}: expected include or exclude")),
                }
            }
            (Self::Focal { gamma, .. }, "gamma") => *gamma = num()?,
            (Self::Focal { alpha, .. }, "alpha") => *alpha = Some(unit()?),
            (Self::Tversky { alpha, .. }, "alpha") => *alpha = num()?,
            (Self::Tversky { beta, .. }, "beta") => *beta = num()?,
            (Self::HausdorffDt { alpha }, "alpha") => *alpha = num()?,
            (kind, _) => {
                let keys = match kind {
                    Self::Ce => "none (class weights come from --class-weights / --pos-weight)",
                    Self::Dice { .. } | Self::Iou { .. } => "smooth, background",
                    Self::Focal { .. } => "gamma, alpha",
                    Self::Tversky { .. } => "alpha, beta, smooth",
                    Self::Boundary => "none",
                    Self::HausdorffDt { .. } => "alpha",
                };
                return Err(format!("{name} has no parameter '{key}'; it takes {keys}"));
            }
        }
        Ok(())
    }

    /// Parameters that differ from the defaults, as `k=v` (for names in logs and cards).
    fn non_default_params(self) -> Vec<String> {
        let Some(default) = Self::by_name(self.name()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut diff = |key: &str, a: f64, b: f64| {
            if a != b {
                out.push(format!("{key}={a}"));
            }
        };
        match (self, default) {
            (
                Self::Dice { smooth, background } | Self::Iou { smooth, background },
                Self::Dice { smooth: ds, .. } | Self::Iou { smooth: ds, .. },
            ) => {
                diff("smooth", smooth, ds);
                if background {
                    out.push("background=include".into());
                }
            }
            (Self::Focal { gamma, alpha }, Self::Focal { gamma: dg, .. }) => {
                diff("gamma", gamma, dg);
                if let Some(a) = alpha {
                    out.push(format!("alpha={a}"));
                }
            }
            (
                Self::Tversky {
                    alpha,
                    beta,
                    smooth,
                },
                Self::Tversky {
                    alpha: da,
                    beta: db,
                    smooth: ds,
                },
            ) => {
                diff("alpha", alpha, da);
                diff("beta", beta, db);
                diff("smooth", smooth, ds);
            }
            (Self::HausdorffDt { alpha }, Self::HausdorffDt { alpha: da }) => {
                diff("alpha", alpha, da)
            }
            _ => {}
        }
        out
    }
}

/// A weighted sum of loss terms, e.g. `0.5ce+0.5dice`.
#[derive(Debug, Clone, PartialEq)]
pub struct LossSpec {
    pub terms: Vec<(f32, LossKind)>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid loss '{spec}': {reason} (expected terms like 'ce', 'dice', '0.5ce+0.5dice', \
     'focal(gamma=2,alpha=0.25)', 'dice(background=include)', 'tversky(alpha=0.3,beta=0.7)', \
     'dice+0.01boundary', 'dice+0.1hd_dt(alpha=2)')"
)]
pub struct LossSpecError {
    spec: String,
    reason: String,
}

impl FromStr for LossSpec {
    type Err = LossSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| LossSpecError {
            spec: s.to_string(),
            reason,
        };
        let mut terms = Vec::new();
        for term in s.split('+').map(str::trim) {
            let split = term
                .find(|c: char| c.is_ascii_alphabetic())
                .ok_or_else(|| err(format!("term '{term}' names no loss")))?;
            let (weight, rest) = term.split_at(split);
            let weight = match weight.trim().trim_end_matches('*').trim() {
                "" => 1.0,
                w => w
                    .parse::<f32>()
                    .map_err(|_| err(format!("weight '{w}' is not a number")))?,
            };
            if !(weight.is_finite() && weight > 0.0) {
                return Err(err(format!("weight {weight} must be positive")));
            }
            let (name, params) = match rest.split_once('(') {
                Some((name, params)) => {
                    let params = params
                        .strip_suffix(')')
                        .ok_or_else(|| err(format!("term '{term}' has no closing ')'")))?;
                    (name.trim(), Some(params))
                }
                None => (rest.trim(), None),
            };
            let mut kind = LossKind::by_name(&name.to_ascii_lowercase())
                .ok_or_else(|| err(format!("unknown loss '{name}'")))?;
            for pair in params.into_iter().flat_map(|p| p.split(',')).map(str::trim) {
                if pair.is_empty() {
                    continue;
                }
                let (k, v) = pair
                    .split_once('=')
                    .ok_or_else(|| err(format!("parameter '{pair}' is not KEY=VALUE")))?;
                kind.set(k.trim(), v.trim()).map_err(err)?;
            }
            terms.push((weight, kind));
        }
        Ok(Self { terms })
    }
}

impl fmt::Display for LossSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|(w, k)| {
                let params = k.non_default_params();
                let weight = if *w == 1.0 && self.terms.len() == 1 {
                    String::new()
                } else {
                    w.to_string()
                };
                if params.is_empty() {
                    format!("{weight}{}", k.name())
                } else {
                    format!("{weight}{}({})", k.name(), params.join(","))
                }
            })
            .collect();
        write!(f, "{}", parts.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dice() -> LossKind {
        LossKind::by_name("dice").unwrap()
    }

    #[test]
    fn parses_weighted_sums() {
        let s: LossSpec = "0.5ce+0.5dice".parse().unwrap();
        assert_eq!(s.terms, vec![(0.5, LossKind::Ce), (0.5, dice())]);
        let s: LossSpec = "dice".parse().unwrap();
        assert_eq!(s.terms, vec![(1.0, dice())]);
        assert_eq!(s.to_string(), "dice");
        let s: LossSpec = "0.8ce+0.2iou".parse().unwrap();
        assert_eq!(s.to_string(), "0.8ce+0.2iou");
        let err = "0.5hinge".parse::<LossSpec>().unwrap_err().to_string();
        assert!(err.contains("hinge"), "{err}");
        assert!("-1ce".parse::<LossSpec>().is_err());
        assert!("xce".parse::<LossSpec>().is_err());
    }

    #[test]
    fn parses_parameters_and_prints_the_non_default_ones() {
        let s: LossSpec = "0.5focal(gamma=1.5, alpha=0.25)+0.5dice(background=include)"
            .parse()
            .unwrap();
        assert_eq!(
            s.terms,
            vec![
                (
                    0.5,
                    LossKind::Focal {
                        gamma: 1.5,
                        alpha: Some(0.25)
                    }
                ),
                (
                    0.5,
                    LossKind::Dice {
                        smooth: 1.0,
                        background: true
                    }
                ),
            ]
        );
        assert_eq!(
            s.to_string(),
            "0.5focal(gamma=1.5,alpha=0.25)+0.5dice(background=include)"
        );
        let t: LossSpec = "tversky(alpha=0.7,beta=0.3)".parse().unwrap();
        assert_eq!(
            t.terms[0].1,
            LossKind::Tversky {
                alpha: 0.7,
                beta: 0.3,
                smooth: 1.0
            }
        );
        // What it prints parses back to the same thing.
        assert_eq!(t.to_string().parse::<LossSpec>().unwrap(), t);
        let shape: LossSpec = "dice+0.01boundary+0.1hd_dt(alpha=1)".parse().unwrap();
        assert_eq!(
            shape.terms[1..],
            [
                (0.01, LossKind::Boundary),
                (0.1, LossKind::HausdorffDt { alpha: 1.0 })
            ]
        );
        assert_eq!(shape.to_string(), "1dice+0.01boundary+0.1hd_dt(alpha=1)");
        assert!(shape.terms[1].1.is_shape_aware() && !shape.terms[0].1.is_shape_aware());
    }

    #[test]
    fn bad_parameters_say_what_the_loss_takes() {
        let e = "focal(beta=1)".parse::<LossSpec>().unwrap_err().to_string();
        assert!(e.contains("gamma, alpha"), "{e}");
        let e = "focal(alpha=3)"
            .parse::<LossSpec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("[0, 1]"), "{e}");
        let e = "dice(background=maybe)"
            .parse::<LossSpec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("include or exclude"), "{e}");
        assert!("dice(smooth=1".parse::<LossSpec>().is_err());
        assert!("ce(x=1)".parse::<LossSpec>().is_err());
        assert!("dice(smooth)".parse::<LossSpec>().is_err());
        let e = "boundary(alpha=1)"
            .parse::<LossSpec>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("takes none"), "{e}");
    }
}
