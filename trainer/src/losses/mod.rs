//! Segmentation losses as plug-ins: each implements [`SegLoss`]; a [`LossSpec`] parsed from the
//! CLI (`ce`, `dice`, `iou`, `focal`, `tversky`, `0.5ce+0.5dice`) builds their weighted sum.

mod ce;
mod dice;
mod focal;
mod iou;
#[cfg(test)]
mod tests_gradient;
mod tversky;

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use ce::CrossEntropy;
pub use dice::SoftDice;
pub use focal::Focal;
pub use iou::SoftIou;
pub use tversky::Tversky;

/// A loss on logits `[B, C, H, W]` against one-hot targets of the same shape; returns a scalar.
pub trait SegLoss<B: Backend>: Send {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossKind {
    Ce,
    Dice,
    Iou,
    Focal,
    Tversky,
}

impl LossKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ce => "ce",
            Self::Dice => "dice",
            Self::Iou => "iou",
            Self::Focal => "focal",
            Self::Tversky => "tversky",
        }
    }
}

/// Per foreground class sums over batch and pixels: (Σ p·g, Σ p, Σ g), each `[C-1]`.
/// The batch is treated as one volume, as is usual for region losses on small structures.
pub(crate) fn foreground_sums<B: Backend>(
    probs: Tensor<B, 4>,
    one_hot: Tensor<B, 4>,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let [_, classes, _, _] = probs.dims();
    let p = probs.narrow(1, 1, classes - 1);
    let g = one_hot.narrow(1, 1, classes - 1);
    let sum = |t: Tensor<B, 4>| t.sum_dim(0).sum_dim(2).sum_dim(3).flatten::<1>(0, 3);
    (sum(p.clone().mul(g.clone())), sum(p), sum(g))
}

/// A weighted sum of loss terms, e.g. `0.5ce+0.5dice`.
#[derive(Debug, Clone, PartialEq)]
pub struct LossSpec {
    pub terms: Vec<(f32, LossKind)>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid loss '{spec}': {reason} (expected terms like 'ce', 'dice', '0.5ce+0.5dice')")]
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
            let (weight, name) = term.split_at(split);
            let weight = match weight.trim().trim_end_matches('*') {
                "" => 1.0,
                w => w
                    .parse::<f32>()
                    .map_err(|_| err(format!("weight '{w}' is not a number")))?,
            };
            if !(weight.is_finite() && weight > 0.0) {
                return Err(err(format!("weight {weight} must be positive")));
            }
            let kind = match name.to_ascii_lowercase().as_str() {
                "ce" | "crossentropy" => LossKind::Ce,
                "dice" => LossKind::Dice,
                "iou" | "jaccard" => LossKind::Iou,
                "focal" => LossKind::Focal,
                "tversky" => LossKind::Tversky,
                other => return Err(err(format!("unknown loss '{other}'"))),
            };
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
            .map(|(w, k)| format!("{w}{}", k.name()))
            .collect();
        write!(f, "{}", parts.join("+"))
    }
}

/// The weighted sum of configured losses.
pub struct CompoundLoss<B: Backend> {
    terms: Vec<(f32, Box<dyn SegLoss<B>>)>,
}

impl<B: Backend> CompoundLoss<B> {
    /// `class_weights` (one per class) weight the cross-entropy's pixels.
    pub fn new(spec: &LossSpec, class_weights: Option<Vec<f32>>, device: &B::Device) -> Self {
        let terms = spec
            .terms
            .iter()
            .map(|&(w, kind)| {
                let loss: Box<dyn SegLoss<B>> = match kind {
                    LossKind::Ce => Box::new(CrossEntropy::new(class_weights.clone(), device)),
                    LossKind::Dice => Box::new(SoftDice::default()),
                    LossKind::Iou => Box::new(SoftIou::default()),
                    LossKind::Focal => Box::new(Focal::default()),
                    LossKind::Tversky => Box::new(Tversky::default()),
                };
                (w, loss)
            })
            .collect();
        Self { terms }
    }
}

impl<B: Backend> SegLoss<B> for CompoundLoss<B> {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1> {
        self.terms
            .iter()
            .map(|(w, loss)| loss.forward(logits.clone(), one_hot.clone()).mul_scalar(*w))
            .reduce(|a, b| a + b)
            .expect("a loss spec has at least one term")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_weighted_sums() {
        let s: LossSpec = "0.5ce+0.5dice".parse().unwrap();
        assert_eq!(s.terms, vec![(0.5, LossKind::Ce), (0.5, LossKind::Dice)]);
        let s: LossSpec = "dice".parse().unwrap();
        assert_eq!(s.terms, vec![(1.0, LossKind::Dice)]);
        let s: LossSpec = "0.8ce+0.2iou".parse().unwrap();
        assert_eq!(s.terms, vec![(0.8, LossKind::Ce), (0.2, LossKind::Iou)]);
        assert_eq!(s.to_string(), "0.8ce+0.2iou");
        let err = "0.5hinge".parse::<LossSpec>().unwrap_err().to_string();
        assert!(err.contains("hinge"), "{err}");
        assert!("-1ce".parse::<LossSpec>().is_err());
        assert!("xce".parse::<LossSpec>().is_err());
    }
}
