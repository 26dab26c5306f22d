use std::path::PathBuf;

use anyhow::{Context, bail};

use medseg_runtime::InputSpec;
use medseg_runtime::dataset::Dataset;
use medseg_trainer::augment::Pipeline;
use medseg_trainer::augment::preview;
use medseg_trainer::data::{evenly_spaced, load_split};
use medseg_trainer::panels::write_grid;

/// Write a grid PNG of augmented samples with their mask outlines: one row per sample, the
/// sample as the model sees it first, then augmented versions of it.
///
/// Examples:
///   medseg-train augment-preview --data phantom/ --augment sas --out preview.png
///   medseg-train augment-preview --data phantom/ --augment my-pipeline.toml --samples 6
#[derive(clap::Args)]
pub struct Args {
    /// Data set folder (splits.json or JMedSeg layout).
    #[arg(long)]
    data: PathBuf,
    /// Domain to draw samples from (default: the data set's first with a train split).
    #[arg(long)]
    domain: Option<String>,
    #[arg(long, default_value = "train")]
    split: String,
    /// Augmentation preset or TOML pipeline file, as `train --augment` takes it
    /// (docs/AUGMENTATION.md).
    #[arg(long, default_value = "basic")]
    augment: String,
    /// Samples (rows), spread evenly over the split.
    #[arg(long, default_value_t = 4)]
    samples: usize,
    /// Augmented versions of each sample (columns after the first).
    #[arg(long, default_value_t = 5)]
    variants: usize,
    /// Side of the model input the images are resized to, as `train --image-size`.
    #[arg(long, default_value_t = 256)]
    image_size: usize,
    /// Show the random training patches of this side (train's default is 128); 0 shows whole
    /// augmented images, where the geometry is easier to see.
    #[arg(long, default_value_t = 0)]
    crop_size: usize,
    /// Input channels as `train --channels` (default: 3 for stacked slices, else 1).
    #[arg(long)]
    channels: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The PNG to write.
    #[arg(long, default_value = "augment-preview.png")]
    out: PathBuf,
    /// Also write the pipeline as a TOML file with every key filled in (a preset's, or a
    /// file's with its defaults): a starting point for `train --augment FILE.toml`.
    #[arg(long, value_name = "FILE")]
    toml: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.samples == 0 || args.variants == 0 {
        bail!("--samples and --variants must be at least 1");
    }
    if args.image_size < 8 {
        bail!(
            "--image-size {}: expected at least 8 pixels",
            args.image_size
        );
    }
    let pipeline = Pipeline::from_arg(&args.augment)?;
    pipeline.validate()?;
    if let Some(path) = &args.toml {
        std::fs::write(path, pipeline.to_toml())
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "wrote {} (the pipeline --augment {})",
            path.display(),
            args.augment
        );
    }
    let ds = Dataset::open(&args.data)?;
    let domain = args
        .domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    let channels = args
        .channels
        .unwrap_or(if ds.stacked_neighbours { 3 } else { 1 });
    if ![1, 3].contains(&channels) {
        bail!("--channels {channels}: expected 1 (gray) or 3 (RGB)");
    }
    let spec = InputSpec::square(channels, args.image_size, ds.stacked_neighbours);
    let samples = evenly_spaced(ds.split(Some(&domain), &args.split)?, args.samples);
    let label = format!("{domain}/{}", args.split);
    let split = load_split(&samples, ds.classes.len(), &spec, false, &label)?;
    let mut panels = Vec::with_capacity(samples.len() * (args.variants + 1));
    for (i, sample) in samples.iter().enumerate() {
        let (input, mask) = (&split.inputs[i], &split.targets[i]);
        panels.push((
            sample.name.clone(),
            preview::panel(input, mask, &spec, spec.width),
        ));
        let seed = args.seed.wrapping_add(i as u64);
        let variants = preview::variants(
            &pipeline,
            input,
            mask,
            &spec,
            args.crop_size,
            args.variants,
            seed,
        );
        panels.extend(
            variants
                .into_iter()
                .enumerate()
                .map(|(v, img)| (format!("{} #{}", args.augment_label(), v + 1), img)),
        );
    }
    write_grid(&panels, args.variants + 1, &args.out)
        .with_context(|| format!("augment-preview of {}", args.data.display()))?;
    println!(
        "wrote {} ({} samples of {label}, {} augmented versions each, --augment {})",
        args.out.display(),
        samples.len(),
        args.variants,
        args.augment
    );
    Ok(())
}

impl Args {
    /// The pipeline's name for panel labels: the preset, or the TOML file's stem.
    fn augment_label(&self) -> String {
        PathBuf::from(&self.augment)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.augment.clone())
    }
}
