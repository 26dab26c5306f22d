//! Scoring a Burn model on a loaded split with the runtime's post-processing and metrics:
//! the numbers are directly comparable with `medseg eval` on the exported model.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use medseg_models::SegModel;
use medseg_runtime::Cleanup;
use medseg_runtime::InputSpec;
use medseg_runtime::evaluate::UNIT_SPACING;
use medseg_runtime::metrics::{SplitReport, SplitSummary};
use medseg_runtime::postprocess::logits_to_prediction;

use crate::data::LoadedSplit;

/// Runs the model (inference mode: call on `model.valid()`) over the split in batches;
/// `pad_last` pads the last batch to `batch_size` (one tensor shape for every batch).
pub fn score_split<B: Backend>(
    model: &SegModel<B>,
    split: &LoadedSplit,
    spec: &InputSpec,
    classes: &[String],
    batch_size: usize,
    pad_last: bool,
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
        let rows = if pad_last { batch_size } else { end - start };
        let logits = forward_batch(model, &split.inputs[start..end], rows, spec, device);
        for (i, chunk) in logits.chunks_exact(per_image).enumerate() {
            let truth = &split.originals[start + i];
            let pred = logits_to_prediction(
                chunk,
                classes.len(),
                (spec.width, spec.height),
                (truth.width, truth.height),
                &Cleanup::default(), // validation scores the network, not the clean-up
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

/// Logits of a batch of prepared inputs, flattened `[N, C, H, W]`. The batch is run as `rows`
/// images (zero images after the inputs, when `rows` is larger); only the inputs' logits
/// come back. Inference mode keeps the images independent, so padding changes nothing.
pub fn forward_batch<B: Backend>(
    model: &SegModel<B>,
    inputs: &[Vec<f32>],
    rows: usize,
    spec: &InputSpec,
    device: &B::Device,
) -> Vec<f32> {
    let rows = rows.max(inputs.len());
    let per_input = spec.channels * spec.height * spec.width;
    let mut data: Vec<f32> = inputs.iter().flatten().copied().collect();
    data.resize(rows * per_input, 0.0);
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(data, [rows, spec.channels, spec.height, spec.width]),
        device,
    );
    let mut logits = model
        .forward(x)
        .into_data()
        .to_vec::<f32>()
        .expect("logits are f32");
    logits.truncate(logits.len() / rows * inputs.len());
    logits
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::AutodiffModule;

    use medseg_models::Architecture;

    use super::*;

    #[test]
    fn padding_a_batch_leaves_the_real_images_logits_unchanged() {
        let device = Default::default();
        let mut arch = Architecture::by_name("unet", 1, 2).unwrap();
        arch.set_option("base_width", "4").unwrap();
        arch.set_option("depth", "2").unwrap();
        let model = arch
            .init::<burn::backend::Autodiff<Flex>>(&device)
            .unwrap()
            .valid();
        let spec = InputSpec {
            channels: 1,
            height: 16,
            width: 16,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours: false,
        };
        let inputs: Vec<Vec<f32>> = (0..3)
            .map(|i| {
                (0..256)
                    .map(|p| ((p * (i + 3)) % 17) as f32 / 17.0)
                    .collect()
            })
            .collect();
        let plain = forward_batch(&model, &inputs, 3, &spec, &device);
        let padded = forward_batch(&model, &inputs, 8, &spec, &device);
        assert_eq!(plain.len(), 3 * 2 * 256);
        assert_eq!(padded.len(), plain.len());
        for (a, b) in plain.iter().zip(&padded) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
