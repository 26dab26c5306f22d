//! The weighted sum a [`LossSpec`] describes, and the target it is computed against.
//!
//! Region losses (CE, Dice, ...) need only the one-hot target. The shape-aware ones need
//! distance maps of the target, computed on the host from the integer masks: [`CompoundLoss::target`]
//! computes the maps its terms need once per batch, so that side outputs (deep supervision)
//! and several terms share them.
//!
//! Distances are in pixels of the training crop: crops and geometric augmentation change the
//! physical pixel size from image to image, and a per-batch spacing would weigh images
//! differently for the same error in pixels.

use anyhow::ensure;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::{
    BoundaryLoss, CrossEntropy, Focal, HausdorffDtLoss, LossKind, LossSpec, SegLoss, SoftDice,
    SoftIou, Tversky, boundary_distance_maps, signed_distance_maps,
};

enum Term<B: Backend> {
    Region(Box<dyn SegLoss<B>>),
    Boundary(BoundaryLoss),
    HausdorffDt(HausdorffDtLoss),
}

/// The target of one batch as the loss terms see it.
pub struct LossTarget<B: Backend> {
    /// `[N, C, H, W]`.
    pub one_hot: Tensor<B, 4>,
    /// φ of the boundary loss, `[N, C, H, W]`, when a term needs it.
    signed_maps: Option<Tensor<B, 4>>,
    /// d_g of the HD_DT loss, `[N, C, H, W]`, when a term needs it.
    surface_maps: Option<Tensor<B, 4>>,
}

impl<B: Backend> LossTarget<B> {
    /// A target with no distance maps: enough for region losses only.
    pub fn one_hot(one_hot: Tensor<B, 4>) -> Self {
        Self {
            one_hot,
            signed_maps: None,
            surface_maps: None,
        }
    }
}

/// The weighted sum of configured losses.
pub struct CompoundLoss<B: Backend> {
    terms: Vec<(f32, Term<B>)>,
}

impl<B: Backend> CompoundLoss<B> {
    /// `class_weights` (one per class) weight the cross-entropy's pixels.
    pub fn new(spec: &LossSpec, class_weights: Option<Vec<f32>>, device: &B::Device) -> Self {
        let terms = spec
            .terms
            .iter()
            .map(|&(w, kind)| {
                let region = |loss: Box<dyn SegLoss<B>>| Term::Region(loss);
                let term = match kind {
                    LossKind::Ce => {
                        region(Box::new(CrossEntropy::new(class_weights.clone(), device)))
                    }
                    LossKind::Dice { smooth, background } => {
                        region(Box::new(SoftDice { smooth, background }))
                    }
                    LossKind::Iou { smooth, background } => {
                        region(Box::new(SoftIou { smooth, background }))
                    }
                    LossKind::Focal { gamma, alpha } => region(Box::new(Focal { gamma, alpha })),
                    LossKind::Tversky {
                        alpha,
                        beta,
                        smooth,
                    } => region(Box::new(Tversky {
                        alpha,
                        beta,
                        smooth,
                    })),
                    LossKind::Boundary => Term::Boundary(BoundaryLoss),
                    LossKind::HausdorffDt { alpha } => Term::HausdorffDt(HausdorffDtLoss {
                        alpha,
                        spacing: (1.0, 1.0),
                    }),
                };
                (w, term)
            })
            .collect();
        Self { terms }
    }

    /// The target for `one_hot` (`[N, C, H, W]`) and the same masks as class indices
    /// (`N * H * W`, row-major), with the distance maps this loss's terms need.
    pub fn target(&self, one_hot: Tensor<B, 4>, masks: &[u8]) -> anyhow::Result<LossTarget<B>> {
        let [n, c, h, w] = one_hot.dims();
        let device = one_hot.device();
        let upload =
            |maps: Vec<f32>| Tensor::from_data(TensorData::new(maps, [n, c, h, w]), &device);
        let wants = |f: fn(&Term<B>) -> bool| self.terms.iter().any(|(_, t)| f(t));
        let needs_shape = wants(|t| !matches!(t, Term::Region(_)));
        if needs_shape {
            ensure!(
                masks.len() == n * h * w,
                "the shape-aware loss terms need {n}x{h}x{w} masks, the batch has {} values",
                masks.len()
            );
        }
        let signed_maps = if wants(|t| matches!(t, Term::Boundary(_))) {
            Some(upload(signed_distance_maps(masks, n, h, w, c)?))
        } else {
            None
        };
        let surface_maps = if wants(|t| matches!(t, Term::HausdorffDt(_))) {
            Some(upload(boundary_distance_maps(
                masks,
                n,
                h,
                w,
                c,
                (1.0, 1.0),
            )?))
        } else {
            None
        };
        Ok(LossTarget {
            one_hot,
            signed_maps,
            surface_maps,
        })
    }

    /// The scalar loss of `logits` (`[N, C, H, W]`) against `target`. Fails if a shape-aware
    /// term finds no maps (a target made with [`LossTarget::one_hot`]).
    pub fn forward(
        &self,
        logits: Tensor<B, 4>,
        target: &LossTarget<B>,
    ) -> anyhow::Result<Tensor<B, 1>> {
        let missing = |name: &str| {
            anyhow::anyhow!(
                "the {name} loss needs distance maps: build the target with CompoundLoss::target"
            )
        };
        let mut total: Option<Tensor<B, 1>> = None;
        for (w, term) in &self.terms {
            let one_hot = target.one_hot.clone();
            let value = match term {
                Term::Region(loss) => loss.forward(logits.clone(), one_hot),
                Term::Boundary(loss) => {
                    let maps = target
                        .signed_maps
                        .clone()
                        .ok_or_else(|| missing("boundary"))?;
                    loss.forward(logits.clone(), one_hot, maps)
                }
                Term::HausdorffDt(loss) => {
                    let maps = target
                        .surface_maps
                        .clone()
                        .ok_or_else(|| missing("hd_dt"))?;
                    loss.forward(logits.clone(), one_hot, maps)
                }
            };
            let value = value.mul_scalar(*w);
            total = Some(match total {
                Some(t) => t + value,
                None => value,
            });
        }
        total.ok_or_else(|| anyhow::anyhow!("a loss spec has at least one term"))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    use super::*;

    type B = Flex;

    /// One 6x6 image, a 3x3 square of class 1.
    fn target_parts() -> (Tensor<B, 4>, Vec<u8>) {
        let masks: Vec<u8> = (0..36)
            .map(|p| u8::from((1..4).contains(&(p / 6)) && (2..5).contains(&(p % 6))))
            .collect();
        let one_hot: Vec<f32> = (0..2)
            .flat_map(|c| masks.iter().map(move |&m| f32::from(usize::from(m) == c)))
            .collect();
        let t = Tensor::from_data(TensorData::new(one_hot, [1, 2, 6, 6]), &Default::default());
        (t, masks)
    }

    #[test]
    fn shape_aware_terms_add_to_the_region_terms_with_their_weights() {
        let dev = Default::default();
        let (one_hot, masks) = target_parts();
        let logits = Tensor::<B, 4>::random([1, 2, 6, 6], Distribution::Default, &dev);
        let value = |spec: &str| -> f32 {
            let loss = CompoundLoss::<B>::new(&spec.parse().unwrap(), None, &dev);
            let target = loss.target(one_hot.clone(), &masks).unwrap();
            loss.forward(logits.clone(), &target).unwrap().into_scalar()
        };
        let (dice, boundary, hd) = (value("dice"), value("boundary"), value("hd_dt"));
        let sum = value("dice+0.5boundary+0.25hd_dt");
        assert!(
            (sum - (dice + 0.5 * boundary + 0.25 * hd)).abs() < 1e-5,
            "{sum}"
        );
        // The boundary term alone matches the struct with maps computed by hand.
        let phi = signed_distance_maps(&masks, 1, 6, 6, 2).unwrap();
        let direct: f32 = BoundaryLoss
            .forward(
                logits.clone(),
                one_hot.clone(),
                Tensor::from_data(TensorData::new(phi, [1, 2, 6, 6]), &dev),
            )
            .into_scalar();
        assert!((boundary - direct).abs() < 1e-6);
    }

    #[test]
    fn a_target_without_maps_or_masks_is_refused_by_shape_aware_terms() {
        let dev = Default::default();
        let (one_hot, _) = target_parts();
        let logits = Tensor::<B, 4>::zeros([1, 2, 6, 6], &dev);
        let loss = CompoundLoss::<B>::new(&"dice+boundary".parse().unwrap(), None, &dev);
        let err = loss
            .forward(logits.clone(), &LossTarget::one_hot(one_hot.clone()))
            .unwrap_err();
        assert!(err.to_string().contains("distance maps"), "{err}");
        let err = loss.target(one_hot.clone(), &[0; 5]).err().unwrap();
        assert!(err.to_string().contains("6x6 masks"), "{err}");
        // Region-only specs need no masks at all.
        let region = CompoundLoss::<B>::new(&"dice".parse().unwrap(), None, &dev);
        assert!(region.target(one_hot, &[]).is_ok());
    }
}
