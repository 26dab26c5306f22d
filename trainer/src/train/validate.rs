//! Scoring a Burn model on a loaded split with the runtime's post-processing and metrics:
//! the numbers are directly comparable with `medseg eval` on the exported model.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use medseg_models::SegModel;
use medseg_runtime::InputSpec;
use medseg_runtime::evaluate::UNIT_SPACING;
use medseg_runtime::metrics::{SplitReport, SplitSummary};
use medseg_runtime::postprocess::logits_to_prediction;

use crate::data::LoadedSplit;

/// Runs the model (inference mode: call on `model.valid()`) over the split in batches.
pub fn score_split<B: Backend>(
    model: &SegModel<B>,
    split: &LoadedSplit,
    spec: &InputSpec,
    classes: &[String],
    batch_size: usize,
    device: &B::Device,
) -> anyhow::Result<SplitSummary> {
    anyhow::ensure!(
        split.originals.len() == split.len(),
        "split was loaded without its original masks"
    );
    let mut report = SplitReport::new(classes.len());
    let plane = spec.width * spec.height;
    let per_image = classes.len() * plane;
    for start in (0..split.len()).step_by(batch_size) {
        let end = (start + batch_size).min(split.len());
        let logits = forward_batch(model, &split.inputs[start..end], spec, device);
        for (i, chunk) in logits.chunks_exact(per_image).enumerate() {
            let truth = &split.originals[start + i];
            let pred = logits_to_prediction(
                chunk,
                classes.len(),
                (spec.width, spec.height),
                (truth.width, truth.height),
            );
            report.add(
                &split.patients[start + i],
                &truth.data,
                &pred.mask.data,
                truth.width,
                truth.height,
                split.spacings[start + i].unwrap_or(UNIT_SPACING),
            )?;
        }
    }
    Ok(report.summary(classes))
}

/// Logits of a batch of prepared inputs, flattened `[N, C, H, W]`.
pub fn forward_batch<B: Backend>(
    model: &SegModel<B>,
    inputs: &[Vec<f32>],
    spec: &InputSpec,
    device: &B::Device,
) -> Vec<f32> {
    let data: Vec<f32> = inputs.iter().flatten().copied().collect();
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(data, [inputs.len(), spec.channels, spec.height, spec.width]),
        device,
    );
    model
        .forward(x)
        .into_data()
        .to_vec::<f32>()
        .expect("logits are f32")
}
