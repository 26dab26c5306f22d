//! Segmentation metrics shared by the trainer (per-epoch validation) and the bedside runtime
//! (`medseg eval`), so both report identical numbers.
//!
//! Masks are class-index images: `&[u8]`, row-major, `width * height`, values `< n_classes`.
//! Spacing is `(row mm, col mm)`: the physical distance between vertically / horizontally
//! adjacent pixels.
//!
//! * [`ConfusionMatrix`]: pixel counts and the overlap metrics (dice, IoU, precision, recall,
//!   accuracy, mIoU, frequency-weighted IoU).
//! * [`surface_distances`] / [`normalized_surface_dice`]: boundary metrics (ASSD, HD, MONAI-style
//!   HD95, NSD) in mm via an exact Euclidean distance transform ([`edt`]). Conventions are in
//!   the [`surface`] module docs.
//! * [`score_image`]: all of the above per class for one image.
//! * [`SplitReport`] / [`SplitSummary`]: accumulation over a dataset split, both as means over
//!   images and pooled over the split ("split" values come from one confusion matrix summed over
//!   all pixels of the split).
//!
//! Undefined values are `None` (class absent from both truth and prediction); means over images
//! skip `None` and infinite values and the summary reports how many images were skipped.

mod confusion;
pub mod edt;
pub mod surface;

pub use confusion::{ConfusionMatrix, MaskKind};
pub use surface::{
    SurfaceDistanceSamples, SurfaceDistances, normalized_surface_dice, percentile,
    surface_distance_samples, surface_distances, surface_mask,
};

use std::collections::BTreeMap;
use std::fmt;

/// Invalid metric inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("mask length mismatch: ground truth has {truth} pixels, prediction has {pred}")]
    LengthMismatch { truth: usize, pred: usize },
    #[error("mask has {len} pixels but the image is {width}x{height} = {} pixels", .width * .height)]
    DimensionMismatch {
        len: usize,
        width: usize,
        height: usize,
    },
    #[error(
        "{mask} label {value} at pixel {index} is out of range: expected < {n_classes} classes"
    )]
    LabelOutOfRange {
        mask: MaskKind,
        index: usize,
        value: u8,
        n_classes: usize,
    },
    #[error("pixel spacing must be finite and > 0 mm, got (row {row}, col {col})")]
    InvalidSpacing { row: f64, col: f64 },
}

/// Scores of one class in one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassScores {
    /// `None` if the class is absent from truth and prediction; `Some(0.0)` if only one has it.
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    /// `None` if the class is not predicted.
    pub precision: Option<f64>,
    /// `None` if the class is absent from the truth.
    pub recall: Option<f64>,
    /// `None` if the class is absent from both; all fields infinite if absent from exactly one.
    pub surface: Option<SurfaceDistances>,
}

/// Per-class scores of one image, indexed by class (background included).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageScores {
    pub per_class: Vec<ClassScores>,
}

/// Scores every class `0..n_classes` of one image. Surface metrics are computed for class 0 too;
/// they are rarely meaningful for background (whose surface includes the image border), so
/// reports conventionally ignore them, as MONAI's `include_background=False` does.
pub fn score_image(
    truth: &[u8],
    pred: &[u8],
    width: usize,
    height: usize,
    n_classes: usize,
    spacing: (f64, f64),
) -> Result<ImageScores, MetricsError> {
    score_image_with_matrix(truth, pred, width, height, n_classes, spacing).map(|(s, _)| s)
}

fn score_image_with_matrix(
    truth: &[u8],
    pred: &[u8],
    width: usize,
    height: usize,
    n_classes: usize,
    spacing: (f64, f64),
) -> Result<(ImageScores, ConfusionMatrix), MetricsError> {
    if truth.len() != pred.len() {
        return Err(MetricsError::LengthMismatch {
            truth: truth.len(),
            pred: pred.len(),
        });
    }
    if truth.len() != width * height {
        return Err(MetricsError::DimensionMismatch {
            len: truth.len(),
            width,
            height,
        });
    }
    let (row, col) = spacing;
    if !(row.is_finite() && row > 0.0 && col.is_finite() && col > 0.0) {
        return Err(MetricsError::InvalidSpacing { row, col });
    }
    let mut cm = ConfusionMatrix::new(n_classes);
    cm.add(truth, pred)?;
    let per_class = (0..n_classes)
        .map(|c| {
            let dice = cm.dice(c);
            // Absent from both (dice undefined) <=> surface undefined; skip the work.
            let surface = dice.and_then(|_| {
                let c = c as u8; // present => c < 256
                surface::samples_with(|i| truth[i] == c, |i| pred[i] == c, width, height, spacing)
                    .and_then(|s| s.distances())
            });
            ClassScores {
                dice,
                iou: cm.iou(c),
                precision: cm.precision(c),
                recall: cm.recall(c),
                surface,
            }
        })
        .collect();
    Ok((ImageScores { per_class }, cm))
}

/// Accumulates per-image scores, a split-wide confusion matrix and one per patient (the
/// patient's slices pooled: the volume Dice that the 3D literature reports).
#[derive(Debug, Clone)]
pub struct SplitReport {
    n_classes: usize,
    confusion: ConfusionMatrix,
    /// Each patient's pooled confusion matrix and number of images.
    patients: BTreeMap<String, (ConfusionMatrix, usize)>,
    images: Vec<ImageScores>,
}

impl SplitReport {
    pub fn new(n_classes: usize) -> Self {
        Self {
            n_classes,
            confusion: ConfusionMatrix::new(n_classes),
            patients: BTreeMap::new(),
            images: Vec::new(),
        }
    }

    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Scores one image of `patient` and adds it; on error nothing is added.
    pub fn add(
        &mut self,
        patient: &str,
        truth: &[u8],
        pred: &[u8],
        w: usize,
        h: usize,
        spacing: (f64, f64),
    ) -> Result<(), MetricsError> {
        let (scores, cm) = score_image_with_matrix(truth, pred, w, h, self.n_classes, spacing)?;
        self.confusion.merge(&cm);
        let (pooled, images) = self
            .patients
            .entry(patient.to_string())
            .or_insert_with(|| (ConfusionMatrix::new(self.n_classes), 0));
        pooled.merge(&cm);
        *images += 1;
        self.images.push(scores);
        Ok(())
    }

    /// The split-wide confusion matrix.
    pub fn confusion(&self) -> &ConfusionMatrix {
        &self.confusion
    }

    /// Per-image scores in insertion order.
    pub fn images(&self) -> &[ImageScores] {
        &self.images
    }

    /// Summarises the split. `class_names[c]` names class `c`; missing names become `class{c}`.
    pub fn summary(&self, class_names: &[String]) -> SplitSummary {
        let cm = &self.confusion;
        let per_patient: Vec<PatientSummary> = self
            .patients
            .iter()
            .map(|(patient, (pooled, images))| PatientSummary {
                patient: patient.clone(),
                images: *images,
                dice: (0..self.n_classes).map(|c| pooled.dice(c)).collect(),
            })
            .collect();
        let per_class = (0..self.n_classes)
            .map(|c| {
                let scores = || self.images.iter().map(move |im| &im.per_class[c]);
                let surfaces = || scores().filter_map(|s| s.surface);
                ClassSummary {
                    name: class_names
                        .get(c)
                        .cloned()
                        .unwrap_or_else(|| format!("class{c}")),
                    dice_mean_over_images: finite_mean(scores().filter_map(|s| s.dice)),
                    dice_split: cm.dice(c),
                    dice_mean_over_patients: finite_mean(
                        per_patient.iter().filter_map(|p| p.dice[c]),
                    ),
                    iou_mean_over_images: finite_mean(scores().filter_map(|s| s.iou)),
                    iou_split: cm.iou(c),
                    precision_split: cm.precision(c),
                    recall_split: cm.recall(c),
                    assd_mean_mm: finite_mean(surfaces().map(|s| s.assd)),
                    hd95_mean_mm: finite_mean(surfaces().map(|s| s.hd95)),
                    images_with_undefined_surface: scores().filter(|s| s.surface.is_none()).count(),
                    images_with_one_side_empty: surfaces()
                        .filter(|s| s.is_one_side_empty())
                        .count(),
                }
            })
            .collect();
        SplitSummary {
            images: self.images.len(),
            per_class,
            per_patient,
            mean_iou: cm.mean_iou(),
            accuracy: cm.accuracy(),
            fw_iou: cm.fw_iou(),
        }
    }
}

/// Mean of the finite values; `None` if there are none.
fn finite_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Split-level results. `mean_iou`, `fw_iou` and `accuracy` come from the split-wide confusion
/// matrix (`NaN` for an empty split, serialised by serde_json as `null`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SplitSummary {
    pub images: usize,
    pub per_class: Vec<ClassSummary>,
    /// Each patient's slices pooled, in patient order.
    pub per_patient: Vec<PatientSummary>,
    /// Mean IoU over classes present in the split (truth or prediction), background included.
    pub mean_iou: f64,
    pub accuracy: f64,
    /// Frequency-weighted IoU.
    pub fw_iou: f64,
}

/// One class of a [`SplitSummary`].
///
/// `*_mean_over_images` average the per-image values, skipping images where the class is absent
/// from both masks (undefined; their number is `images_with_undefined_surface`, since dice, IoU
/// and the surface metrics are undefined for exactly the same images). Images where only one
/// mask has the class count as dice = IoU = 0 in the means, but their infinite surface distances
/// are skipped and counted in `images_with_one_side_empty`. `*_split` values come from the
/// split-wide confusion matrix (pixels pooled over all images).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassSummary {
    pub name: String,
    pub dice_mean_over_images: Option<f64>,
    pub dice_split: Option<f64>,
    /// Mean over patients of each patient's pooled Dice (patients without the class in either
    /// mask skipped).
    pub dice_mean_over_patients: Option<f64>,
    pub iou_mean_over_images: Option<f64>,
    pub iou_split: Option<f64>,
    pub precision_split: Option<f64>,
    pub recall_split: Option<f64>,
    pub assd_mean_mm: Option<f64>,
    pub hd95_mean_mm: Option<f64>,
    pub images_with_undefined_surface: usize,
    pub images_with_one_side_empty: usize,
}

/// One patient of a [`SplitSummary`]: Dice of the patient's slices pooled (the volume Dice of
/// the 3D literature), per class; `None` where the class is in neither mask.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PatientSummary {
    pub patient: String,
    pub images: usize,
    pub dice: Vec<Option<f64>>,
}

impl SplitSummary {
    /// The per-patient Dice as a table (foreground classes), one line per patient.
    pub fn patient_table(&self) -> String {
        let pw = column_width(self.per_patient.iter().map(|p| p.patient.as_str()), 7);
        let foreground = self.per_class.get(1..).unwrap_or_default();
        let widths: Vec<usize> = foreground
            .iter()
            .map(|c| c.name.chars().count().max(6))
            .collect();
        let mut out = format!("{:<pw$}  {:>6}", "patient", "images");
        for (c, w) in foreground.iter().zip(&widths) {
            out.push_str(&format!("  {:>w$}", c.name));
        }
        out.push('\n');
        for p in &self.per_patient {
            out.push_str(&format!("{:<pw$}  {:>6}", p.patient, p.images));
            for (dice, w) in p.dice.iter().skip(1).zip(&widths) {
                out.push_str(&format!("  {:>w$}", four_digits(*dice)));
            }
            out.push('\n');
        }
        out
    }
}

/// Width of a text column: its longest entry, at least `min` characters.
fn column_width<'a>(entries: impl Iterator<Item = &'a str>, min: usize) -> usize {
    entries
        .map(|e| e.chars().count())
        .max()
        .unwrap_or(0)
        .max(min)
}

/// A value to four decimals, `-` when undefined.
fn four_digits(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
}

impl fmt::Display for SplitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "images: {}   pixel accuracy: {:.4}   mIoU: {:.4}   fwIoU: {:.4}",
            self.images, self.accuracy, self.mean_iou, self.fw_iou
        )?;
        let nw = column_width(self.per_class.iter().map(|c| c.name.as_str()), 5);
        writeln!(
            f,
            "{:<nw$}  {:>9} {:>11} {:>10} {:>8} {:>10} {:>9} {:>7} {:>8} {:>8} {:>6} {:>10}",
            "class",
            "dice(img)",
            "dice(split)",
            "dice(pat)",
            "iou(img)",
            "iou(split)",
            "precision",
            "recall",
            "assd",
            "hd95",
            "undef",
            "one-empty",
        )?;
        let o = four_digits;
        let mm = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        for c in &self.per_class {
            writeln!(
                f,
                "{:<nw$}  {:>9} {:>11} {:>10} {:>8} {:>10} {:>9} {:>7} {:>8} {:>8} {:>6} {:>10}",
                c.name,
                o(c.dice_mean_over_images),
                o(c.dice_split),
                o(c.dice_mean_over_patients),
                o(c.iou_mean_over_images),
                o(c.iou_split),
                o(c.precision_split),
                o(c.recall_split),
                mm(c.assd_mean_mm),
                mm(c.hd95_mean_mm),
                c.images_with_undefined_surface,
                c.images_with_one_side_empty,
            )?;
        }
        writeln!(
            f,
            "assd/hd95: mean surface distances in mm at the pixel spacing (pixels when none is given)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn names() -> Vec<String> {
        ["background", "liver", "tumour"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn score_image_per_class() {
        // 4x4, class 1 = 2x2 block in truth, shifted right by one in prediction; class 2 absent
        // from truth but predicted at one pixel.
        #[rustfmt::skip]
        let truth = [
            0, 0, 0, 0,
            0, 1, 1, 0,
            0, 1, 1, 0,
            0, 0, 0, 0,
        ];
        #[rustfmt::skip]
        let pred = [
            0, 0, 0, 0,
            0, 0, 1, 1,
            0, 0, 1, 1,
            0, 0, 0, 2,
        ];
        let s = score_image(&truth, &pred, 4, 4, 3, (1.0, 1.0)).unwrap();
        let c1 = &s.per_class[1];
        // TP 2, FP 2, FN 2
        assert!(close(c1.dice.unwrap(), 0.5));
        assert!(close(c1.iou.unwrap(), 1.0 / 3.0));
        assert!(close(c1.precision.unwrap(), 0.5));
        assert!(close(c1.recall.unwrap(), 0.5));
        let sd = c1.surface.unwrap();
        assert!(close(sd.hd, 1.0));
        // Every pixel of both 2x2 blocks is surface; 4 of 8 are at 0 and 4 at 1 => assd 0.5.
        assert!(close(sd.assd, 0.5));
        let c2 = &s.per_class[2];
        assert_eq!(c2.dice, Some(0.0));
        assert_eq!(c2.iou, Some(0.0));
        assert_eq!(c2.recall, None);
        assert_eq!(c2.precision, Some(0.0));
        assert!(c2.surface.unwrap().is_one_side_empty());
        // Empty truth and empty prediction => undefined.
        let s = score_image(&[0; 4], &[0; 4], 2, 2, 2, (1.0, 1.0)).unwrap();
        assert_eq!(s.per_class[1].dice, None);
        assert_eq!(s.per_class[1].surface, None);
        assert_eq!(s.per_class[0].dice, Some(1.0));
    }

    #[test]
    fn score_image_errors() {
        assert_eq!(
            score_image(&[0; 4], &[0; 3], 2, 2, 2, (1.0, 1.0)).unwrap_err(),
            MetricsError::LengthMismatch { truth: 4, pred: 3 }
        );
        let e = score_image(&[0; 4], &[0; 4], 3, 2, 2, (1.0, 1.0)).unwrap_err();
        assert_eq!(
            e,
            MetricsError::DimensionMismatch {
                len: 4,
                width: 3,
                height: 2
            }
        );
        assert!(e.to_string().contains("3x2 = 6"), "{e}");
        let e = score_image(&[0, 0, 9, 0], &[0; 4], 2, 2, 2, (1.0, 1.0)).unwrap_err();
        assert!(e.to_string().contains("label 9 at pixel 2"), "{e}");
        assert!(matches!(
            score_image(&[0; 4], &[0; 4], 2, 2, 2, (0.0, 1.0)),
            Err(MetricsError::InvalidSpacing { .. })
        ));
        assert!(matches!(
            score_image(&[0; 4], &[0; 4], 2, 2, 2, (1.0, f64::NAN)),
            Err(MetricsError::InvalidSpacing { .. })
        ));
    }

    #[test]
    fn split_report_means_and_counts() {
        let mut r = SplitReport::new(3);
        // Image A (2x2): class 1 perfect, class 2 absent from both.
        r.add("p1", &[0, 1, 1, 0], &[0, 1, 1, 0], 2, 2, (1.0, 1.0))
            .unwrap();
        // Image B (2x2): class 1 in truth, missing from prediction; class 2 perfect.
        r.add("p1", &[1, 0, 0, 2], &[0, 0, 0, 2], 2, 2, (1.0, 1.0))
            .unwrap();
        // Image C (1x4), another patient: class 1 shifted by 2 px with col spacing 0.5 mm.
        r.add("p2", &[1, 0, 0, 0], &[0, 0, 1, 0], 4, 1, (3.0, 0.5))
            .unwrap();
        // A bad image is rejected and leaves the report unchanged.
        assert!(
            r.add("p3", &[5, 0, 0, 0], &[0; 4], 2, 2, (1.0, 1.0))
                .is_err()
        );
        assert_eq!(r.images().len(), 3);

        let s = r.summary(&names()[..2]); // third name missing on purpose
        assert_eq!(s.images, 3);
        assert_eq!(s.per_class[2].name, "class2");
        let c1 = &s.per_class[1];
        // Per-image dice for class 1: A 1.0, B 0.0, C 0.0 -> mean 1/3.
        assert!(close(c1.dice_mean_over_images.unwrap(), 1.0 / 3.0));
        // Split: TP 2, FN 1 (B) + 1 (C), FP 1 (C) -> dice 4/7, iou 2/5.
        assert!(close(c1.dice_split.unwrap(), 4.0 / 7.0));
        assert!(close(c1.iou_split.unwrap(), 0.4));
        assert!(close(c1.precision_split.unwrap(), 2.0 / 3.0));
        assert!(close(c1.recall_split.unwrap(), 0.5));
        // Patients: p1 pools A and B (TP 2, FN 1 -> 4/5), p2 is C (0); p3 was never added.
        assert!(close(c1.dice_mean_over_patients.unwrap(), 0.4));
        // Surfaces: A = 0, B one side empty (skipped, counted), C = 1 mm.
        assert!(close(c1.assd_mean_mm.unwrap(), 0.5));
        assert!(close(c1.hd95_mean_mm.unwrap(), 0.5));
        assert_eq!(c1.images_with_one_side_empty, 1);
        assert_eq!(c1.images_with_undefined_surface, 0);
        let c2 = &s.per_class[2];
        // Class 2 only in B (perfect); undefined in A and C.
        assert_eq!(c2.dice_mean_over_images, Some(1.0));
        assert_eq!(
            c2.dice_mean_over_patients,
            Some(1.0),
            "p2 has no class 2: skipped"
        );
        assert_eq!(c2.images_with_undefined_surface, 2);
        assert_eq!(c2.assd_mean_mm, Some(0.0));
        // Split mIoU/accuracy from the pooled matrix.
        assert!(close(s.accuracy, r.confusion().accuracy()));
        assert!(close(s.mean_iou, r.confusion().mean_iou()));
        assert_eq!(r.confusion().total(), 12);

        // Per patient: p1 pools A and B, p2 is C; class 2 is in neither of p2's masks.
        let p: Vec<_> = s
            .per_patient
            .iter()
            .map(|p| (p.patient.as_str(), p.images))
            .collect();
        assert_eq!(p, [("p1", 2), ("p2", 1)]);
        assert!(close(s.per_patient[0].dice[1].unwrap(), 0.8));
        assert_eq!(s.per_patient[1].dice[1], Some(0.0));
        assert_eq!(s.per_patient[1].dice[2], None);
        let patients = s.patient_table();
        assert_eq!(patients.lines().count(), 3, "{patients}");
        assert!(
            patients.lines().nth(1).unwrap().starts_with("p1"),
            "{patients}"
        );
        assert!(
            patients.contains("0.8000") && patients.contains('-'),
            "{patients}"
        );

        let table = s.to_string();
        assert!(table.contains("background") && table.contains("class2") && table.contains("hd95"));
        assert_eq!(
            table.lines().count(),
            2 + 3 + 1,
            "header, column names, 3 classes, units"
        );
    }

    #[test]
    fn empty_split_summary() {
        let s = SplitReport::new(2).summary(&names());
        assert_eq!(s.images, 0);
        assert!(s.mean_iou.is_nan() && s.accuracy.is_nan());
        assert_eq!(s.per_class[1].dice_mean_over_images, None);
        assert_eq!(s.per_class[1].dice_split, None);
        let _ = s.to_string();
    }

    #[test]
    fn class_absent_everywhere_gives_undefined_dice_not_zero() {
        let mut r = SplitReport::new(2);
        r.add("p", &[0; 9], &[0; 9], 3, 3, (1.0, 1.0)).unwrap();
        let s = r.summary(&names());
        assert_eq!(s.per_class[1].dice_mean_over_images, None);
        assert_eq!(s.per_class[1].images_with_undefined_surface, 1);
        // mIoU includes only the background here.
        assert_eq!(s.mean_iou, 1.0);
    }
}
