//! Training objectives: what one step minimizes. An objective sees the whole batch (the input,
//! the target if the data source has one, the host masks) and every output of the model
//! (logits and auxiliary outputs), so deep supervision, shape-aware losses, spatial
//! transformers and self-supervised pre-training all plug in here without touching the loop.

use anyhow::{Context, ensure};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use medseg_models::{AuxKind, SegOutput};

use crate::losses::CompoundLoss;

/// The target of a labelled batch.
pub struct Target<B: Backend> {
    /// `[N, classes, H, W]`.
    pub one_hot: Tensor<B, 4>,
    /// The same target as class indices on the host, `N * H * W` row-major (for distance maps
    /// and other targets computed outside the graph).
    pub masks: Vec<u8>,
}

/// One training batch as its data source made it.
pub struct Batch<B: Backend> {
    /// `[N, channels, H, W]`, normalized as the model card says.
    pub images: Tensor<B, 4>,
    /// `None` for sources without masks (self-supervised pre-training).
    pub target: Option<Target<B>>,
    /// Further views of the same images, each augmented on its own (contrastive sources);
    /// empty for segmentation.
    pub views: Vec<Tensor<B, 4>>,
}

impl<B: Backend> Batch<B> {
    pub fn target(&self) -> anyhow::Result<&Target<B>> {
        self.target
            .as_ref()
            .context("this objective needs masks, and the data source gives none")
    }
}

/// What a training step minimizes.
pub trait Objective<B: Backend> {
    fn loss(&self, batch: &Batch<B>, out: &SegOutput<Tensor<B, 4>>)
    -> anyhow::Result<Tensor<B, 1>>;
}

/// Supervised segmentation: the configured loss on the logits, plus the same loss on every
/// side output (deep supervision, UNet++), each weighted `aux_weight` and up-sampled to the
/// target's size (bilinear) when smaller. Other auxiliary outputs are not this objective's.
/// Distance maps for shape-aware terms are computed once per batch from the host masks and
/// shared by the logits and every side output.
pub struct Supervised<B: Backend> {
    pub loss: CompoundLoss<B>,
    pub aux_weight: f32,
    /// Weight of `mean((theta - identity)^2)` for each transform output (spatial
    /// transformers); 0 leaves the transform free.
    pub transform_penalty: f32,
}

impl<B: Backend> Objective<B> for Supervised<B> {
    fn loss(
        &self,
        batch: &Batch<B>,
        out: &SegOutput<Tensor<B, 4>>,
    ) -> anyhow::Result<Tensor<B, 1>> {
        let target = batch.target()?;
        let [_, _, h, w] = target.one_hot.dims();
        let loss_target = self.loss.target(target.one_hot.clone(), &target.masks)?;
        let mut total = self.loss.forward(out.logits.clone(), &loss_target)?;
        for aux in out.aux.iter().filter(|a| a.kind == AuxKind::SideLogits) {
            let [_, _, ah, aw] = aux.value.dims();
            ensure!(
                h % ah == 0 && w % aw == 0,
                "side output {} is {ah}x{aw}, which does not divide the {h}x{w} target",
                aux.name
            );
            let logits = if (ah, aw) == (h, w) {
                aux.value.clone()
            } else {
                let options = InterpolateOptions::new(InterpolateMode::Bilinear);
                interpolate(aux.value.clone(), [h, w], options.with_align_corners(false))
            };
            let term = self.loss.forward(logits, &loss_target)?;
            total = total + term.mul_scalar(self.aux_weight);
        }
        if self.transform_penalty > 0.0 {
            for aux in out.aux.iter().filter(|a| a.kind == AuxKind::Transform) {
                let [n, _, _, _] = aux.value.dims();
                let identity = Tensor::<B, 1>::from_floats(
                    [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                    &aux.value.device(),
                )
                .reshape([1, 1, 2, 3])
                .repeat_dim(0, n);
                let penalty = (aux.value.clone() - identity).square().mean();
                total = total + penalty.mul_scalar(self.transform_penalty);
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, TensorData};

    use medseg_models::Aux;

    use super::*;
    use crate::losses::LossSpec;

    type B = Flex;

    fn batch(with_target: bool) -> Batch<B> {
        let dev = Default::default();
        let masks: Vec<u8> = (0..16).map(|p| u8::from(p % 5 == 0)).collect();
        let mut oh = vec![0f32; 32];
        for (p, &c) in masks.iter().enumerate() {
            oh[c as usize * 16 + p] = 1.0;
        }
        Batch {
            images: Tensor::zeros([1, 1, 4, 4], &dev),
            target: with_target.then(|| Target {
                one_hot: Tensor::from_data(TensorData::new(oh, [1, 2, 4, 4]), &dev),
                masks,
            }),
            views: Vec::new(),
        }
    }

    #[test]
    fn side_outputs_add_their_weighted_loss_and_a_batch_without_masks_is_refused() {
        let dev = Default::default();
        let spec: LossSpec = "ce".parse().unwrap();
        let objective = Supervised::<B> {
            loss: CompoundLoss::new(&spec, None, &dev),
            aux_weight: 0.5,
            transform_penalty: 0.0,
        };
        let logits = Tensor::<B, 4>::random([1, 2, 4, 4], Distribution::Default, &dev);
        let side = Tensor::<B, 4>::random([1, 2, 4, 4], Distribution::Default, &dev);
        let plain = SegOutput::logits(logits.clone());
        let b = batch(true);
        let main: f32 = objective.loss(&b, &plain).unwrap().into_scalar();
        let mut with_side = SegOutput::logits(logits);
        with_side.aux.push(Aux {
            name: "ds1".into(),
            kind: AuxKind::SideLogits,
            value: side.clone(),
        });
        let side_alone: f32 = objective
            .loss(&b, &SegOutput::logits(side))
            .unwrap()
            .into_scalar();
        let total: f32 = objective.loss(&b, &with_side).unwrap().into_scalar();
        assert!(
            (total - (main + 0.5 * side_alone)).abs() < 1e-5,
            "{total} {main} {side_alone}"
        );
        let err = objective.loss(&batch(false), &plain).unwrap_err();
        assert!(err.to_string().contains("needs masks"), "{err}");
    }
}
