//! `medseg eval`: Dice, IoU, precision, recall and surface distance of a model on a split.

use std::path::PathBuf;

use anyhow::{Context, bail};
use indicatif::ProgressBar;

use medseg_runtime::Segmenter;
use medseg_runtime::dataset::Dataset;
use medseg_runtime::dataset::Sample;
use medseg_runtime::evaluate::{check_same_size, evaluate_split, score_gate};
use medseg_runtime::image_io::{load_image, load_mask};
use medseg_runtime::review::{overlay_with_truth, strip};

use crate::cleanup_args::{CleanupArgs, describe};
use crate::model_arg::ModelArg;

/// Score a model on a data set split (folder or JMedSeg layout).
///
/// Example: medseg eval --model unet.onnx --data phantom/ --split test --domain xh
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Data set folder (splits.json layout, or JMedSeg *_label.json layout).
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Domain (e.g. xh, zs-big, zs-small); default: the data set's first.
    #[arg(long)]
    domain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Write review pictures here: prediction overlay with the ground truth outlined in white,
    /// for --overlay-count slices evenly spaced over the split, and strip.png of them all.
    #[arg(long)]
    overlays: Option<PathBuf>,
    #[arg(long, default_value_t = 6)]
    overlay_count: usize,
    /// Test-time augmentation: average with the left-right mirrored image (2x inference time).
    #[arg(long)]
    flip_tta: bool,
    #[command(flatten)]
    cleanup: CleanupArgs,
    /// Also print each patient's Dice (the patient's slices pooled); --json always has it.
    #[arg(long)]
    per_patient: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let seg = args
        .cleanup
        .configure(args.model.load()?.with_flip_tta(args.flip_tta));
    // The gate is scored in a pass of its own (below), against each image's Dice.
    let gate = seg
        .card
        .quality_gate
        .clone()
        .filter(|_| !args.model.no_quality_gate);
    let seg = seg.with_quality_gate(false);
    let ds = Dataset::open(&args.data)?;
    if ds.classes.len() != seg.card.classes.len() {
        bail!(
            "model {} predicts {} classes ({}) but data set {} has {} ({})",
            args.model.describe(),
            seg.card.classes.len(),
            seg.card.classes.join(", "),
            args.data.display(),
            ds.classes.len(),
            ds.classes.join(", ")
        );
    }
    ds.check_model_input(&seg.card.input, &format!("model {}", args.model.describe()))?;
    let samples = ds.split(args.domain.as_deref(), &args.split)?;
    let bar = ProgressBar::new(samples.len() as u64);
    let summary = evaluate_split(
        samples,
        &ds.classes,
        |img| Ok(seg.segment(img)?.prediction.mask),
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    if let Some(dir) = &args.overlays {
        write_overlays(&seg, samples, ds.classes.len(), dir, args.overlay_count)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let domain = args
            .domain
            .as_deref()
            .unwrap_or_else(|| ds.default_domain());
        println!(
            "{} / {domain} / {}: {} images ({})",
            ds.name,
            args.split,
            samples.len(),
            describe(seg.cleanup())
        );
        println!("{summary}");
        if let Some(gate) = &gate {
            let g = score_gate(samples, &ds.classes, &seg, gate)?;
            println!("quality gate: {}", g.describe());
        }
        if args.per_patient {
            println!(
                "Dice per patient (slices pooled):\n{}",
                summary.patient_table()
            );
        }
    }
    Ok(())
}

/// Review pictures of `count` slices spread evenly over the split.
fn write_overlays(
    seg: &Segmenter,
    samples: &[Sample],
    num_classes: usize,
    dir: &std::path::Path,
    count: usize,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let count = count.clamp(1, samples.len());
    let mut pictures = Vec::new();
    for i in 0..count {
        let sample = &samples[i * samples.len() / count];
        let img = load_image(&sample.image)?;
        let truth = load_mask(&sample.mask, num_classes)?;
        check_same_size(&img, &truth, sample)?;
        let pred = seg.segment(&img)?.prediction.mask;
        let picture = overlay_with_truth(&seg.card.input.displayed(&img), &pred, &truth);
        let path = dir.join(format!("{}.png", sample.name));
        picture
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        pictures.push(picture);
    }
    let path = dir.join("strip.png");
    strip(&pictures, 224)
        .save(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {count} review pictures and strip.png to {}",
        dir.display()
    );
    Ok(())
}
