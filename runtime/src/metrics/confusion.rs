//! Confusion matrix over class-index masks and the overlap metrics derived from it.

use super::MetricsError;

/// Which of the two masks a label came from (used in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskKind {
    Truth,
    Prediction,
}

impl std::fmt::Display for MaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaskKind::Truth => "ground truth",
            MaskKind::Prediction => "prediction",
        })
    }
}

/// `n_classes x n_classes` pixel counts; rows are the true class, columns the predicted class.
///
/// Per-class metrics use `TP = m[c][c]`, `FP = column sum - TP`, `FN = row sum - TP`, and return
/// `None` when their denominator is zero:
///
/// | metric    | formula              | `None` when                         |
/// |-----------|----------------------|-------------------------------------|
/// | dice      | 2TP / (2TP + FP + FN) | class absent in truth and prediction |
/// | iou       | TP / (TP + FP + FN)   | class absent in truth and prediction |
/// | precision | TP / (TP + FP)        | class never predicted               |
/// | recall    | TP / (TP + FN)        | class absent in truth               |
///
/// So a class that is absent in the truth but predicted scores dice = iou = 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfusionMatrix {
    n_classes: usize,
    /// Row-major, `counts[truth * n_classes + pred]`.
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(n_classes: usize) -> Self {
        Self {
            n_classes,
            counts: vec![0; n_classes * n_classes],
        }
    }

    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// Pixels with true class `truth` predicted as `pred`.
    pub fn count(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.n_classes + pred]
    }

    /// Total number of pixels counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Pixels whose true class is `class` (row sum).
    pub fn truth_count(&self, class: usize) -> u64 {
        self.row(class).iter().sum()
    }

    /// Pixels predicted as `class` (column sum).
    pub fn pred_count(&self, class: usize) -> u64 {
        (0..self.n_classes).map(|t| self.count(t, class)).sum()
    }

    fn row(&self, class: usize) -> &[u64] {
        &self.counts[class * self.n_classes..(class + 1) * self.n_classes]
    }

    /// Adds one pair of class-index masks (same length, same pixel order).
    ///
    /// On error nothing is counted. Errors: [`MetricsError::LengthMismatch`], or
    /// [`MetricsError::LabelOutOfRange`] naming the first offending value, its mask and index.
    pub fn add(&mut self, truth: &[u8], pred: &[u8]) -> Result<(), MetricsError> {
        if truth.len() != pred.len() {
            return Err(MetricsError::LengthMismatch {
                truth: truth.len(),
                pred: pred.len(),
            });
        }
        check_labels(truth, MaskKind::Truth, self.n_classes)?;
        check_labels(pred, MaskKind::Prediction, self.n_classes)?;
        let n = self.n_classes;
        for (&t, &p) in truth.iter().zip(pred) {
            self.counts[t as usize * n + p as usize] += 1;
        }
        Ok(())
    }

    /// Adds another matrix's counts.
    ///
    /// # Panics
    /// If the class counts differ.
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(
            self.n_classes, other.n_classes,
            "cannot merge confusion matrices with different class counts"
        );
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// `(tp, fp, fn)` for `class`.
    pub fn tp_fp_fn(&self, class: usize) -> (u64, u64, u64) {
        let tp = self.count(class, class);
        (
            tp,
            self.pred_count(class) - tp,
            self.truth_count(class) - tp,
        )
    }

    /// Dice = 2TP / (2TP + FP + FN); `None` when the class is absent in truth and prediction.
    pub fn dice(&self, class: usize) -> Option<f64> {
        let (tp, fp, fn_) = self.tp_fp_fn(class);
        ratio(2 * tp, 2 * tp + fp + fn_)
    }

    /// IoU (Jaccard) = TP / (TP + FP + FN); `None` when the class is absent in truth and prediction.
    pub fn iou(&self, class: usize) -> Option<f64> {
        let (tp, fp, fn_) = self.tp_fp_fn(class);
        ratio(tp, tp + fp + fn_)
    }

    /// Precision = TP / (TP + FP); `None` when the class is never predicted.
    pub fn precision(&self, class: usize) -> Option<f64> {
        let (tp, fp, _) = self.tp_fp_fn(class);
        ratio(tp, tp + fp)
    }

    /// Recall (sensitivity) = TP / (TP + FN); `None` when the class is absent in the truth.
    pub fn recall(&self, class: usize) -> Option<f64> {
        let (tp, _, fn_) = self.tp_fp_fn(class);
        ratio(tp, tp + fn_)
    }

    /// Pixel accuracy = trace / total; `NaN` if nothing has been counted.
    pub fn accuracy(&self) -> f64 {
        let trace: u64 = (0..self.n_classes).map(|c| self.count(c, c)).sum();
        ratio(trace, self.total()).unwrap_or(f64::NAN)
    }

    /// Mean IoU over the classes whose IoU is defined (present in truth or prediction), background
    /// included (JMedSeg's mIoU). `NaN` if no class is defined (nothing counted).
    pub fn mean_iou(&self) -> f64 {
        let defined: Vec<f64> = (0..self.n_classes).filter_map(|c| self.iou(c)).collect();
        if defined.is_empty() {
            f64::NAN
        } else {
            defined.iter().sum::<f64>() / defined.len() as f64
        }
    }

    /// Frequency-weighted IoU: `sum_c (truth_count(c) / total) * iou(c)` (Long et al., FCN).
    /// Classes absent from the truth weigh 0. `NaN` if nothing has been counted.
    pub fn fw_iou(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return f64::NAN;
        }
        (0..self.n_classes)
            .filter_map(|c| {
                let freq = self.truth_count(c) as f64 / total as f64;
                self.iou(c).map(|iou| freq * iou)
            })
            .sum()
    }
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den != 0).then(|| num as f64 / den as f64)
}

pub(crate) fn check_labels(
    mask: &[u8],
    kind: MaskKind,
    n_classes: usize,
) -> Result<(), MetricsError> {
    // Fast path: one max over the slice; locate the offender only on failure.
    let max = mask.iter().copied().max().unwrap_or(0);
    if mask.is_empty() || (max as usize) < n_classes {
        return Ok(());
    }
    let index = mask.iter().position(|&v| v as usize >= n_classes).unwrap();
    Err(MetricsError::LabelOutOfRange {
        mask: kind,
        index,
        value: mask[index],
        n_classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    //  truth        pred
    //  0 0 1 1      0 1 1 1
    //  0 0 1 1      0 0 1 0
    //  2 2 0 0      2 0 0 0
    //  2 2 0 0      2 2 2 0
    const TRUTH: [u8; 16] = [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 0, 0, 2, 2, 0, 0];
    const PRED: [u8; 16] = [0, 1, 1, 1, 0, 0, 1, 0, 2, 0, 0, 0, 2, 2, 2, 0];

    fn cm() -> ConfusionMatrix {
        let mut m = ConfusionMatrix::new(3);
        m.add(&TRUTH, &PRED).unwrap();
        m
    }

    #[test]
    fn counts_by_hand() {
        let m = cm();
        // truth 0 (8 px): pred 0 x6, 1 x1, 2 x1
        // truth 1 (4 px): pred 1 x3, 0 x1
        // truth 2 (4 px): pred 2 x3, 0 x1
        let want = [[6, 1, 1], [1, 3, 0], [1, 0, 3]];
        for (t, row) in want.iter().enumerate() {
            for (p, &v) in row.iter().enumerate() {
                assert_eq!(m.count(t, p), v, "m[{t}][{p}]");
            }
        }
        assert_eq!(m.total(), 16);
        assert_eq!(m.tp_fp_fn(0), (6, 2, 2));
        assert_eq!(m.tp_fp_fn(1), (3, 1, 1));
        assert_eq!(m.tp_fp_fn(2), (3, 1, 1));
    }

    #[test]
    fn overlap_metrics_by_hand() {
        let m = cm();
        // class 0: TP 6 FP 2 FN 2
        assert!(close(m.dice(0).unwrap(), 12.0 / 16.0));
        assert!(close(m.iou(0).unwrap(), 6.0 / 10.0));
        assert!(close(m.precision(0).unwrap(), 6.0 / 8.0));
        assert!(close(m.recall(0).unwrap(), 6.0 / 8.0));
        // class 1: TP 3 FP 1 FN 1
        assert!(close(m.dice(1).unwrap(), 6.0 / 8.0));
        assert!(close(m.iou(1).unwrap(), 3.0 / 5.0));
        assert!(close(m.precision(1).unwrap(), 0.75));
        assert!(close(m.recall(1).unwrap(), 0.75));
        assert!(close(m.accuracy(), 12.0 / 16.0));
        assert!(close(m.mean_iou(), 0.6));
        // fw: 8/16*0.6 + 4/16*0.6 + 4/16*0.6
        assert!(close(m.fw_iou(), 0.6));
    }

    #[test]
    fn asymmetric_precision_recall_and_fw_iou() {
        // truth: class 1 is 2 px; pred: class 1 is 4 px covering both.
        let truth = [0, 0, 0, 0, 1, 1, 0, 0];
        let pred = [0, 0, 1, 1, 1, 1, 0, 0];
        let mut m = ConfusionMatrix::new(2);
        m.add(&truth, &pred).unwrap();
        // class 1: TP 2 FP 2 FN 0; class 0: TP 4 FP 0 FN 2
        assert!(close(m.precision(1).unwrap(), 0.5));
        assert!(close(m.recall(1).unwrap(), 1.0));
        assert!(close(m.dice(1).unwrap(), 4.0 / 6.0));
        assert!(close(m.iou(1).unwrap(), 0.5));
        assert!(close(m.precision(0).unwrap(), 1.0));
        assert!(close(m.recall(0).unwrap(), 4.0 / 6.0));
        assert!(close(m.iou(0).unwrap(), 4.0 / 6.0));
        assert!(close(m.mean_iou(), (0.5 + 4.0 / 6.0) / 2.0));
        assert!(close(m.fw_iou(), 6.0 / 8.0 * (4.0 / 6.0) + 2.0 / 8.0 * 0.5));
        assert!(close(m.accuracy(), 6.0 / 8.0));
    }

    #[test]
    fn undefined_and_zero_cases() {
        let mut m = ConfusionMatrix::new(3);
        // class 2 absent everywhere; class 1 predicted but absent in truth.
        m.add(&[0, 0, 0, 0], &[0, 1, 0, 0]).unwrap();
        assert_eq!(m.dice(2), None);
        assert_eq!(m.iou(2), None);
        assert_eq!(m.precision(2), None);
        assert_eq!(m.recall(2), None);
        assert_eq!(m.dice(1), Some(0.0));
        assert_eq!(m.iou(1), Some(0.0));
        assert_eq!(m.precision(1), Some(0.0));
        assert_eq!(m.recall(1), None);
        // mIoU over classes 0 and 1 only: (3/4 + 0) / 2
        assert!(close(m.mean_iou(), 0.375));
        // fw: only class 0 has truth pixels.
        assert!(close(m.fw_iou(), 0.75));

        let empty = ConfusionMatrix::new(2);
        assert!(empty.accuracy().is_nan());
        assert!(empty.mean_iou().is_nan());
        assert!(empty.fw_iou().is_nan());
        assert_eq!(empty.dice(0), None);
    }

    #[test]
    fn merge_equals_adding_both() {
        let mut a = ConfusionMatrix::new(3);
        a.add(&TRUTH[..8], &PRED[..8]).unwrap();
        let mut b = ConfusionMatrix::new(3);
        b.add(&TRUTH[8..], &PRED[8..]).unwrap();
        a.merge(&b);
        assert_eq!(a, cm());
    }

    #[test]
    fn errors_name_the_problem_and_count_nothing() {
        let mut m = ConfusionMatrix::new(3);
        let e = m.add(&[0, 1], &[0]).unwrap_err();
        assert_eq!(e, MetricsError::LengthMismatch { truth: 2, pred: 1 });
        assert!(e.to_string().contains('2') && e.to_string().contains('1'));

        let e = m.add(&[0, 1, 2], &[0, 7, 1]).unwrap_err();
        assert_eq!(
            e,
            MetricsError::LabelOutOfRange {
                mask: MaskKind::Prediction,
                index: 1,
                value: 7,
                n_classes: 3
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("7") && msg.contains("prediction"), "{msg}");

        let e = m.add(&[3, 0, 0], &[0, 0, 0]).unwrap_err();
        assert!(matches!(
            e,
            MetricsError::LabelOutOfRange {
                mask: MaskKind::Truth,
                value: 3,
                ..
            }
        ));
        assert_eq!(m.total(), 0, "failed adds must not count anything");
    }

    #[test]
    #[should_panic(expected = "different class counts")]
    fn merge_rejects_other_class_count() {
        ConfusionMatrix::new(2).merge(&ConfusionMatrix::new(3));
    }
}
