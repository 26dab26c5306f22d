//! The embedded demo model still scores what its card says, on freshly generated phantom
//! test slices (the same seed as its training data, so the same held-out patients).

use medseg_runtime::Segmenter;
use medseg_runtime::dataset::Dataset;
use medseg_runtime::demo::MODEL;
use medseg_runtime::evaluate::evaluate_split;
use medseg_trainer::synth::{SynthConfig, generate};

#[test]
fn embedded_model_scores_what_its_card_says() {
    let seg = Segmenter::from_bytes(MODEL, "embedded demo model").unwrap();
    let bytes = MODEL.len();
    assert!(
        bytes <= 2_000_000,
        "demo model is {bytes} bytes; the limit is 2 MB"
    );
    let card_dice = seg.card.metrics["xh/test"]["dice_cancellous_bone"];

    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        scale: 0.1,
        seed: seg.card.training.seed,
    };
    generate(dir.path(), &cfg, &mut |_, _| {}).unwrap();
    let ds = Dataset::open(dir.path()).unwrap();
    let samples = ds.split(Some("xh"), "test").unwrap();
    let summary = evaluate_split(
        samples,
        &ds.classes,
        |img| Ok(seg.segment(img)?.prediction.mask),
        || {},
    )
    .unwrap();
    let dice = summary.per_class[1].dice_split.unwrap();
    // A subset of the card's test patients: allow sampling spread, catch real regressions.
    assert!(
        (dice - card_dice).abs() < 0.03,
        "Dice {dice:.4} on {} fresh slices, card says {card_dice:.4}",
        samples.len()
    );
}
