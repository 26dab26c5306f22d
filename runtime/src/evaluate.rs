//! Scoring a model on a data split. The predictor is a closure so that the trainer (Burn) and
//! the bedside runtime (tract) are scored by exactly the same code.

use image::DynamicImage;

use crate::dataset::Sample;
use crate::error::RuntimeError;
use crate::image_io::{Mask, load_image, load_mask};
use crate::metrics::{SplitReport, SplitSummary};

/// Pixel spacing used when the data set does not give one: distances are in pixels.
pub const UNIT_SPACING: (f64, f64) = (1.0, 1.0);

/// Runs `predict` on every sample and accumulates the metrics against the masks.
/// `on_image` is called after each image (for progress bars).
pub fn evaluate_split(
    samples: &[Sample],
    classes: &[String],
    mut predict: impl FnMut(&DynamicImage) -> Result<Mask, RuntimeError>,
    mut on_image: impl FnMut(),
) -> Result<SplitSummary, RuntimeError> {
    let mut report = SplitReport::new(classes.len());
    for sample in samples {
        let img = load_image(&sample.image)?;
        let truth = load_mask(&sample.mask, classes.len())?;
        check_same_size(&img, &truth, sample)?;
        let pred = predict(&img)?;
        report.add(
            &sample.patient,
            &truth.data,
            &pred.data,
            truth.width,
            truth.height,
            sample.spacing.unwrap_or(UNIT_SPACING),
        )?;
        on_image();
    }
    Ok(report.summary(classes))
}

/// A mask must cover its image pixel for pixel.
pub fn check_same_size(
    img: &DynamicImage,
    mask: &Mask,
    sample: &Sample,
) -> Result<(), RuntimeError> {
    if (img.width() as usize, img.height() as usize) != (mask.width, mask.height) {
        return Err(RuntimeError::BadMask {
            path: sample.mask.clone(),
            reason: format!(
                "mask is {}x{} but its image {} is {}x{}",
                mask.width,
                mask.height,
                sample.image.display(),
                img.width(),
                img.height()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_of_another_size_is_rejected_naming_both_files() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(8, 6));
        let mask = Mask {
            width: 8,
            height: 5,
            data: vec![0; 40],
        };
        let sample = Sample {
            name: "a".into(),
            patient: "p".into(),
            image: "images/a.png".into(),
            mask: "masks/a.png".into(),
            spacing: None,
        };
        let err = check_same_size(&img, &mask, &sample)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("masks/a.png") && err.contains("8x5") && err.contains("8x6"),
            "{err}"
        );
    }
}
