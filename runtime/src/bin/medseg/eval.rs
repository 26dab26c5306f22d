//! `medseg eval`: Dice, IoU, precision, recall and surface distance of a model on a split.

use std::path::PathBuf;

use anyhow::bail;
use indicatif::ProgressBar;

use medseg_runtime::Segmenter;
use medseg_runtime::dataset::Dataset;
use medseg_runtime::evaluate::evaluate_split;

/// Score a model on a data set split (folder or JMedSeg layout).
///
/// Example: medseg eval --model unet.onnx --data phantom/ --split test --domain xh
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    model: PathBuf,
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
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let seg = Segmenter::from_file(&args.model)?;
    let ds = Dataset::open(&args.data)?;
    if ds.classes.len() != seg.card.classes.len() {
        bail!(
            "model {} predicts {} classes ({}) but data set {} has {} ({})",
            args.model.display(),
            seg.card.classes.len(),
            seg.card.classes.join(", "),
            args.data.display(),
            ds.classes.len(),
            ds.classes.join(", ")
        );
    }
    let samples = ds.split(args.domain.as_deref(), &args.split)?;
    let bar = ProgressBar::new(samples.len() as u64);
    let summary = evaluate_split(
        samples,
        &ds.classes,
        |img| Ok(seg.segment(img)?.prediction.mask),
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let domain = args
            .domain
            .as_deref()
            .unwrap_or_else(|| ds.default_domain());
        println!(
            "{} / {domain} / {}: {} images",
            ds.name,
            args.split,
            samples.len()
        );
        println!("{summary}");
    }
    Ok(())
}
