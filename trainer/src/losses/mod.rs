//! Segmentation losses as plug-ins: each implements [`SegLoss`]; a [`LossSpec`] parsed from the
//! CLI (`ce`, `dice`, `iou`, `focal(gamma=2)`, `tversky(alpha=0.3,beta=0.7)`, `0.5ce+0.5dice`)
//! builds their weighted sum.
//!
//! Two shape-aware losses need more than one-hot targets and are not [`SegLoss`] plug-ins:
//! [`BoundaryLoss`] (Kervadec et al., `boundary`) and [`HausdorffDtLoss`] (Karimi & Salcudean,
//! `hd_dt(alpha=2)`) also take per-image distance maps computed on the host from the integer
//! masks ([`signed_distance_maps`], [`boundary_distance_maps`]). [`CompoundLoss::target`]
//! computes the maps a spec needs once per batch, so `dice+0.01boundary` is a `--loss` like any
//! other.

mod boundary;
mod ce;
mod compound;
mod dice;
mod distance_maps;
mod focal;
mod hausdorff_dt;
mod iou;
mod spec;
#[cfg(test)]
mod tests_gradient;
mod tversky;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

pub use boundary::BoundaryLoss;
pub use ce::CrossEntropy;
pub use compound::{CompoundLoss, LossTarget};
pub use dice::SoftDice;
pub use distance_maps::{
    DistanceMapError, boundary_distance_maps, signed_distance_maps,
    signed_distance_maps_with_spacing,
};
pub use focal::Focal;
pub use hausdorff_dt::HausdorffDtLoss;
pub use iou::SoftIou;
pub use spec::{LossKind, LossSpec, LossSpecError};
pub use tversky::Tversky;

/// A loss on logits `[B, C, H, W]` against one-hot targets of the same shape; returns a scalar.
pub trait SegLoss<B: Backend>: Send {
    fn forward(&self, logits: Tensor<B, 4>, one_hot: Tensor<B, 4>) -> Tensor<B, 1>;
}

/// Per class sums over batch and pixels: (Σ p·g, Σ p, Σ g), each `[C]` with the background
/// or `[C-1]` without it. The batch is treated as one volume, as is usual for region losses on
/// small structures.
pub(crate) fn class_sums<B: Backend>(
    probs: Tensor<B, 4>,
    one_hot: Tensor<B, 4>,
    include_background: bool,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let [_, classes, _, _] = probs.dims();
    let first = usize::from(!include_background);
    let p = probs.narrow(1, first, classes - first);
    let g = one_hot.narrow(1, first, classes - first);
    let sum = |t: Tensor<B, 4>| t.sum_dim(0).sum_dim(2).sum_dim(3).flatten::<1>(0, 3);
    (sum(p.clone().mul(g.clone())), sum(p), sum(g))
}
