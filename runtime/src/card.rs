//! The model card: everything the runtime needs to use a model, and what a reader needs to
//! trust it. Stored as JSON in ONNX `metadata_props` under [`CARD_KEY`].

use image::{DynamicImage, GrayImage};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::cleanup::Cleanup;

/// The ONNX metadata key that holds the card.
pub const CARD_KEY: &str = "medseg.card";
/// Version of the card schema; bump on incompatible changes.
pub const CARD_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub card_version: u32,
    /// Architecture name and its settings (as the trainer's model registry serializes them).
    pub architecture: serde_json::Value,
    pub input: InputSpec,
    pub classes: Vec<String>,
    /// What the graph outputs: always `logits` `[1, classes, height, width]` for now.
    pub output: String,
    pub training: TrainingInfo,
    /// Metrics per test split, e.g. `"xh/test" -> {"dice_cancellous_bone": 0.93, ...}`.
    #[serde(default)]
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// `"none"` (f32) or the quantization scheme.
    pub quantization: String,
    /// How a statically quantized (int8) model was calibrated; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationInfo>,
    pub parameters: usize,
    /// sha256 of the weights (all initializers in graph order), hex.
    pub weights_sha256: String,
    /// Clean-up of the predicted mask the runtime applies by default (set at export).
    /// Absent in cards written before clean-up existed, and when off.
    #[serde(default, skip_serializing_if = "Cleanup::is_off")]
    pub cleanup: Cleanup,
    /// The runtime the operators were written for: "" (any) or "cuda" (`export --target
    /// cuda`: pooling, transposed convolutions and resizes in forms tract-cuda runs on the
    /// GPU; the same results on the CPU).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// Thresholds from the validation split past which the runtime reports an image as
    /// unreliable (`crate::quality`); absent in models exported without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_gate: Option<crate::quality::QualityGate>,
}

/// The calibration of an int8 model's activation ranges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// minmax, percentile or entropy.
    pub method: String,
    /// Training images the ranges were measured on.
    pub images: usize,
    /// Each passed once through the run's training augmentation first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub augmented: bool,
    /// sha256 of the calibration images' names, one per line in the order used.
    pub images_sha256: String,
    /// Convolutions quantized, of how many.
    pub quantized_convolutions: usize,
    pub convolutions: usize,
    /// Convolutions kept in f32 (by the sensitivity report or by request).
    pub kept_float: Vec<String>,
    /// The f32 model's metrics on the same splits, before quantization.
    pub f32_metrics: BTreeMap<String, BTreeMap<String, f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Pixel value v in 0..=255 becomes (v / 255 - mean) / std.
    pub mean: f32,
    pub std: f32,
    /// The three channels are the previous slice, the slice and the next slice (a data set
    /// imported with `--stack-neighbours`), not the colours of a photo: such a model cannot
    /// segment a single gray slice. Absent in cards written before 2.5D input existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stacked_neighbours: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub dataset: String,
    pub dataset_images: usize,
    /// sha256 of the data set's splits.json (identifies the exact split).
    pub dataset_hash: String,
    pub command: String,
    pub git_commit: String,
    pub epochs: usize,
    pub seed: u64,
}

impl ModelCard {
    /// What the runtime relies on and serde cannot check: a card edited by hand, or written
    /// by another tool, fails here with the field named instead of later as NaN inputs or a
    /// mismatched buffer.
    pub fn check(&self) -> Result<(), String> {
        let i = &self.input;
        if i.channels != 1 && i.channels != 3 {
            return Err(format!("input.channels is {}, expected 1 or 3", i.channels));
        }
        if i.height == 0 || i.width == 0 {
            return Err(format!(
                "input size is {}x{}, expected both > 0",
                i.width, i.height
            ));
        }
        if !i.mean.is_finite() || !i.std.is_finite() || i.std <= 0.0 {
            return Err(format!(
                "input normalization mean {} / std {}: expected finite numbers and std > 0",
                i.mean, i.std
            ));
        }
        if !(2..=256).contains(&self.classes.len()) {
            return Err(format!(
                "{} classes listed, expected 2 to 256 (background first)",
                self.classes.len()
            ));
        }
        Ok(())
    }
}

impl InputSpec {
    /// A square input of `side` pixels with the normalisation every medseg model is trained
    /// with (gray levels 0..1 centred on 0.5, scaled by 4).
    pub fn square(channels: usize, side: usize, stacked_neighbours: bool) -> Self {
        Self {
            channels,
            height: side,
            width: side,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours,
        }
    }

    /// The graph's input shape for one image: `[1, channels, height, width]`.
    pub fn batch_of_one(&self) -> [usize; 4] {
        [1, self.channels, self.height, self.width]
    }

    /// Normalizes an 8-bit value as the model was trained.
    pub fn normalize(&self, v: u8) -> f32 {
        (v as f32 / 255.0 - self.mean) / self.std
    }

    /// What review pictures should show of an input image: for a 2.5D model the slice itself
    /// (the green channel), not a gray blend of it with its neighbours.
    pub fn displayed<'a>(&self, img: &'a DynamicImage) -> Cow<'a, DynamicImage> {
        if !self.stacked_neighbours {
            return Cow::Borrowed(img);
        }
        let rgb = img.to_rgb8();
        let centre = GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
            image::Luma([rgb.get_pixel(x, y).0[1]])
        });
        Cow::Owned(DynamicImage::ImageLuma8(centre))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn spec(stacked_neighbours: bool) -> InputSpec {
        InputSpec {
            channels: 3,
            height: 4,
            width: 4,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours,
        }
    }

    #[test]
    fn a_stacked_image_is_shown_as_its_centre_slice() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(3, 2, image::Rgb([10, 200, 30])));
        let shown = spec(true).displayed(&img).to_luma8();
        assert!(shown.pixels().all(|p| p.0[0] == 200));
        assert!(matches!(spec(false).displayed(&img), Cow::Borrowed(_)));
    }

    #[test]
    fn cards_without_the_flag_read_as_single_slices_and_plain_ones_omit_it() {
        let old = r#"{"channels": 3, "height": 4, "width": 4, "mean": 0.5, "std": 0.25}"#;
        let parsed: InputSpec = serde_json::from_str(old).unwrap();
        assert_eq!(parsed, spec(false));
        assert!(
            !serde_json::to_string(&spec(false))
                .unwrap()
                .contains("stacked")
        );
        let json = serde_json::to_string(&spec(true)).unwrap();
        assert!(json.contains("\"stacked_neighbours\":true"), "{json}");
    }
}
