use std::path::PathBuf;

use anyhow::Context;

use medseg_trainer::import::{LayoutWriter, SplitRule, slices};

/// Bring a data set in another format into the folder layout (images/, masks/, splits.json by
/// patient, slices.csv with pixel spacing) that `train` and `medseg eval` read.
///
/// Example (2D slices with a manifest):
///   medseg-train import --from slices --images DIR/images --masks DIR/masks
///     --manifest DIR/slices.csv --split train=myo01-myo38 --split val=myo39-myo46
///     --split test=myo47-myo54 --classes background,vertebral_body --out data/vb
#[derive(clap::Args)]
pub struct Args {
    /// Source format.
    #[arg(long, value_enum)]
    from: Format,
    /// New (or empty) folder to write the data set into.
    #[arg(long)]
    out: PathBuf,
    /// Class names, background first, comma-separated; mask value i is class i.
    #[arg(long, value_delimiter = ',', default_value = "background,foreground")]
    classes: Vec<String>,
    /// Patients of a split: SPLIT=FIRST-LAST (same prefix, numbered) or SPLIT=P1,P2; repeat
    /// per split.
    #[arg(long = "split", conflicts_with = "split_fractions")]
    splits: Vec<String>,
    /// Random split by patient when the source gives none, e.g. train=0.7,val=0.1,test=0.2.
    #[arg(long)]
    split_fractions: Option<String>,
    /// Seed for --split-fractions.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Domain name in splits.json (scanner, site, acquisition).
    #[arg(long, default_value = "default")]
    domain: String,
    /// Data set name (default: the output folder's name).
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    slices: slices::SlicesArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    /// 2D images + masks folders, patients from a manifest CSV or a file-name pattern.
    Slices,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rule = match (&args.split_fractions, args.splits.is_empty()) {
        (Some(f), _) => SplitRule::fractions(f, args.seed)?,
        (None, false) => SplitRule::named(&args.splits)?,
        (None, true) => anyhow::bail!(
            "say how patients are split: --split train=P01-P38 ... or --split-fractions train=0.7,val=0.1,test=0.2"
        ),
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--out has no folder name; give --name")?,
    };
    let mut writer = LayoutWriter::create(&args.out, &name, args.classes.clone(), &args.domain)?;
    let left_out = match args.from {
        Format::Slices => slices::import(&args.slices, &rule, &mut writer)?,
    };
    if !left_out.is_empty() {
        eprintln!(
            "left out {} patients that no --split names: {}",
            left_out.len(),
            left_out.join(", ")
        );
    }
    let summary = writer.finish()?;
    println!("{summary}");
    Ok(())
}
