//! Our metrics against MONAI and medpy on the committed fixture that
//! `benches/crosscheck_metrics.py` writes (random shapes, thin structures, speckle, border
//! contact, holes, multi-class, empty cases, anisotropic spacing).
//!
//! Agreement: overlap metrics within 1e-6, distances within 1e-3 mm. Where the conventions
//! differ, the test checks the documented mapping instead of skipping the case:
//! - both masks empty: we say undefined (None, excluded from means); MONAI's Dice with
//!   `ignore_empty=False` says 1.0, its distances and NSD say NaN;
//! - truth empty: MONAI's Dice/IoU with `ignore_empty=True` say NaN, we say 0 (a false alarm);
//! - one mask empty: our distances are infinite; MONAI's HD/HD95 are NaN, its ASSD infinite;
//! - medpy's `hd95` is the 95th percentile of the pooled distances; MONAI (and we) take the
//!   larger of the two directed 95th percentiles. medpy's value is recomputed here from our
//!   distances. (medpy >= 0.5 `assd` pools both directions like MONAI, so it is compared
//!   directly.)

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use medseg_runtime::metrics::{ImageScores, percentile, score_image, surface_distance_samples};

const OVERLAP_TOL: f64 = 1e-6;
const DISTANCE_TOL_MM: f64 = 1e-3;

#[derive(Deserialize)]
struct Fixture {
    monai: String,
    nsd_tolerance_mm: f64,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    height: usize,
    width: usize,
    n_classes: usize,
    spacing: (f64, f64),
    truth: String,
    pred: String,
    monai: Reference,
    medpy: MedpyReference,
}

/// Per class values; `null` = NaN, `"inf"` = infinity.
#[derive(Deserialize)]
struct Reference {
    dice: Vec<Value>,
    dice_ignore_empty_false: Vec<Value>,
    iou: Vec<Value>,
    precision: Vec<Value>,
    recall: Vec<Value>,
    hd: Vec<Value>,
    hd95: Vec<Value>,
    assd: Vec<Value>,
    nsd: Vec<Value>,
}

#[derive(Deserialize)]
struct MedpyReference {
    dice: Vec<Value>,
    iou: Vec<Value>,
    precision: Vec<Value>,
    recall: Vec<Value>,
    hd: Vec<Value>,
    hd95_pooled: Vec<Value>,
    assd: Vec<Value>,
}

/// A reference value: None for NaN, Some(inf) for "inf".
fn reference(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::String(s) if s == "inf" => Some(f64::INFINITY),
        Value::Number(n) => n.as_f64(),
        other => panic!("unexpected fixture value {other}"),
    }
}

impl Case {
    /// The case's masks and our scores of them.
    fn scored(&self) -> (Vec<u8>, Vec<u8>, ImageScores) {
        let (truth, pred) = (decode(&self.truth), decode(&self.pred));
        let scores = score_image(
            &truth,
            &pred,
            self.width,
            self.height,
            self.n_classes,
            self.spacing,
        )
        .expect("fixture masks are consistent");
        (truth, pred, scores)
    }
}

/// Pixels of class `c`.
fn class_mask(labels: &[u8], c: usize) -> Vec<bool> {
    labels.iter().map(|&v| v as usize == c).collect()
}

fn decode(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b - b'0').collect()
}

fn close(what: &str, ours: f64, theirs: f64, tol: f64) {
    assert!(
        (ours - theirs).abs() <= tol || (ours.is_infinite() && ours == theirs),
        "{what}: ours {ours} vs reference {theirs}"
    );
}

fn load() -> Fixture {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics_reference.json");
    let text = std::fs::read_to_string(&path).expect("fixture is committed");
    serde_json::from_str(&text).expect("fixture parses")
}

#[test]
fn overlap_and_surface_metrics_agree_with_monai() {
    let fixture = load();
    assert!(
        fixture.cases.len() >= 15,
        "fixture has {} cases",
        fixture.cases.len()
    );
    let mut compared = 0usize;
    for case in &fixture.cases {
        let (truth, pred, scores) = case.scored();
        let m = &case.monai;
        for (c, ours) in scores.per_class.iter().enumerate() {
            let at = |metric: &str| {
                format!(
                    "{} / class {c} / {metric} (MONAI {})",
                    case.name, fixture.monai
                )
            };
            let in_truth = truth.iter().any(|&v| v as usize == c);
            let in_pred = pred.iter().any(|&v| v as usize == c);

            // Dice and IoU.
            match ours.dice {
                Some(d) => close(
                    &at("dice"),
                    d,
                    reference(&m.dice_ignore_empty_false[c]).unwrap(),
                    OVERLAP_TOL,
                ),
                None => {
                    assert!(
                        !in_truth && !in_pred,
                        "{}",
                        at("dice undefined only when absent from both")
                    );
                    assert_eq!(
                        reference(&m.dice_ignore_empty_false[c]),
                        Some(1.0),
                        "{}",
                        at("dice")
                    );
                }
            }
            if in_truth {
                close(
                    &at("dice"),
                    ours.dice.unwrap(),
                    reference(&m.dice[c]).unwrap(),
                    OVERLAP_TOL,
                );
                close(
                    &at("iou"),
                    ours.iou.unwrap(),
                    reference(&m.iou[c]).unwrap(),
                    OVERLAP_TOL,
                );
            } else {
                assert_eq!(reference(&m.iou[c]), None, "{}", at("iou"));
                assert_eq!(ours.iou, in_pred.then_some(0.0), "{}", at("iou"));
            }

            // Precision and recall: undefined exactly when MONAI says NaN.
            for (name, ours_v, theirs) in [
                ("precision", ours.precision, &m.precision[c]),
                ("recall", ours.recall, &m.recall[c]),
            ] {
                match (ours_v, reference(theirs)) {
                    (Some(a), Some(b)) => close(&at(name), a, b, OVERLAP_TOL),
                    (None, None) => {}
                    (a, b) => panic!("{}: ours {a:?} vs reference {b:?}", at(name)),
                }
            }

            // Surface distances.
            match ours.surface {
                None => {
                    for v in [&m.hd[c], &m.hd95[c], &m.assd[c], &m.nsd[c]] {
                        assert_eq!(reference(v), None, "{}", at("distances undefined"));
                    }
                }
                Some(s) if s.is_one_side_empty() => {
                    assert!(
                        matches!(reference(&m.hd[c]), None | Some(f64::INFINITY)),
                        "{}",
                        at("hd")
                    );
                    assert!(
                        matches!(reference(&m.assd[c]), None | Some(f64::INFINITY)),
                        "{}",
                        at("assd")
                    );
                }
                Some(s) => {
                    close(
                        &at("hd"),
                        s.hd,
                        reference(&m.hd[c]).unwrap(),
                        DISTANCE_TOL_MM,
                    );
                    close(
                        &at("hd95"),
                        s.hd95,
                        reference(&m.hd95[c]).unwrap(),
                        DISTANCE_TOL_MM,
                    );
                    close(
                        &at("assd"),
                        s.assd,
                        reference(&m.assd[c]).unwrap(),
                        DISTANCE_TOL_MM,
                    );
                    compared += 1;
                }
            }

            // Normalized surface Dice.
            let (t, p) = (class_mask(&truth, c), class_mask(&pred, c));
            let samples = surface_distance_samples(&t, &p, case.width, case.height, case.spacing);
            let nsd = samples.and_then(|s| s.nsd(fixture.nsd_tolerance_mm));
            match (nsd, reference(&m.nsd[c])) {
                (Some(a), Some(b)) => close(&at("nsd"), a, b, OVERLAP_TOL),
                (None, None) => {}
                (a, b) => panic!("{}: ours {a:?} vs reference {b:?}", at("nsd")),
            }
        }
    }
    assert!(compared >= 30, "only {compared} finite surface comparisons");
}

#[test]
fn medpy_agrees_and_its_hd95_convention_is_reproduced() {
    let fixture = load();
    let mut compared = 0usize;
    for case in &fixture.cases {
        let (truth, pred, scores) = case.scored();
        let m = &case.medpy;
        for c in 1..case.n_classes {
            let Some(medpy_hd) = reference(&m.hd[c]) else {
                continue; // medpy needs the class in both masks
            };
            let at = |metric: &str| format!("{} / class {c} / medpy {metric}", case.name);
            let ours = &scores.per_class[c];
            for (name, ours_v, theirs) in [
                ("dc", ours.dice, &m.dice[c]),
                ("jc", ours.iou, &m.iou[c]),
                ("precision", ours.precision, &m.precision[c]),
                ("recall", ours.recall, &m.recall[c]),
            ] {
                close(
                    &at(name),
                    ours_v.unwrap(),
                    reference(theirs).unwrap(),
                    OVERLAP_TOL,
                );
            }
            close(
                &at("hd"),
                ours.surface.unwrap().hd,
                medpy_hd,
                DISTANCE_TOL_MM,
            );

            let (t, p) = (class_mask(&truth, c), class_mask(&pred, c));
            let s =
                surface_distance_samples(&t, &p, case.width, case.height, case.spacing).unwrap();
            let mut pooled: Vec<f64> = s
                .truth_to_pred
                .iter()
                .chain(&s.pred_to_truth)
                .copied()
                .collect();
            let pooled_p95 = percentile(&mut pooled, 95.0).unwrap();
            close(
                &at("hd95 (pooled)"),
                pooled_p95,
                reference(&m.hd95_pooled[c]).unwrap(),
                DISTANCE_TOL_MM,
            );
            close(
                &at("assd"),
                ours.surface.unwrap().assd,
                reference(&m.assd[c]).unwrap(),
                DISTANCE_TOL_MM,
            );
            compared += 1;
        }
    }
    assert!(compared >= 12, "only {compared} medpy comparisons");
}
