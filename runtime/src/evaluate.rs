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

/// How a quality gate sorted a split's images, against their own foreground Dice.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct GateScore {
    pub images: usize,
    /// Images whose foreground Dice is below [`GOOD_DICE`] (or that have a foreground the
    /// model missed entirely), and how many of them the gate flagged.
    pub bad: usize,
    pub bad_flagged: usize,
    /// The others, and how many of them the gate flagged anyway.
    pub good: usize,
    pub good_flagged: usize,
}

/// Below this foreground Dice an answer counts as bad (the line for "do not trust").
pub const GOOD_DICE: f64 = 0.5;

impl GateScore {
    /// "flags 99 of 99 (100%) answers with foreground Dice < 0.5 and 1 of 1 (100%) good ones".
    pub fn describe(&self) -> String {
        let share = |n: usize, of: usize| match of {
            0 => "-".to_string(),
            _ => format!("{n} of {of} ({:.0}%)", 100.0 * n as f64 / of as f64),
        };
        format!(
            "flags {} answers with foreground Dice < {GOOD_DICE} and {} good ones",
            share(self.bad_flagged, self.bad),
            share(self.good_flagged, self.good)
        )
    }
}

/// Runs `seg` on every sample and asks `gate` about each (give `seg` its gate turned off, or
/// each image pays for it twice), scoring the answers against the
/// masks: which bad answers it caught, which good ones it rejected. Images where neither the
/// truth nor the answer has any foreground count as good.
pub fn score_gate(
    samples: &[Sample],
    classes: &[String],
    seg: &crate::Segmenter,
    gate: &crate::quality::QualityGate,
) -> Result<GateScore, RuntimeError> {
    let mut score = GateScore {
        images: 0,
        bad: 0,
        bad_flagged: 0,
        good: 0,
        good_flagged: 0,
    };
    for sample in samples {
        let img = load_image(&sample.image)?;
        let truth = load_mask(&sample.mask, classes.len())?;
        check_same_size(&img, &truth, sample)?;
        let (segmentation, logits) = seg.segment_with_logits(&img)?;
        let pred = segmentation.prediction.mask;
        let verdict = gate.judge(seg.signals(&seg.model_input(&img)?, &logits)?);
        let (mut both, mut sizes) = (0usize, 0usize);
        for (t, p) in truth.data.iter().zip(&pred.data) {
            both += usize::from(*t > 0 && *p > 0);
            sizes += usize::from(*t > 0) + usize::from(*p > 0);
        }
        let dice = if sizes == 0 {
            1.0
        } else {
            2.0 * both as f64 / sizes as f64
        };
        score.images += 1;
        let flagged = usize::from(!verdict.reliable);
        if dice < GOOD_DICE {
            score.bad += 1;
            score.bad_flagged += flagged;
        } else {
            score.good += 1;
            score.good_flagged += flagged;
        }
    }
    Ok(score)
}
