//! `medseg segment`: masks, overlays and reports for image files or folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use image::DynamicImage;
use medseg_runtime::card::InputSpec;
use medseg_runtime::dataset::IMAGE_EXTS;
use medseg_runtime::image_io::load_image;

use medseg_runtime::outputs::write_outputs;

use crate::cleanup_args::{CleanupArgs, describe};
use crate::model_arg::ModelArg;

/// Segment images (PNG/JPEG, any size, gray or RGB; EXIF orientation applied).
///
/// Example: medseg segment --model unet.onnx slice.png photos/ --out results/
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Image files or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created if missing).
    #[arg(long, default_value = "medseg-out")]
    out: PathBuf,
    /// Test-time augmentation: average with the left-right mirrored image (2x inference time).
    #[arg(long)]
    flip_tta: bool,
    #[command(flatten)]
    cleanup: CleanupArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let seg = args
        .cleanup
        .configure(args.model.load()?.with_flip_tta(args.flip_tta));
    let files = collect_inputs(&args.inputs)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let bar = ProgressBar::new(files.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let mut failed = 0;
    for (stem, path) in &files {
        bar.set_message(stem.clone());
        // One bad file must not stop the batch: report it and go on.
        let result = load_image(path)
            .map_err(anyhow::Error::from)
            .map(|img| gray_for_gray_models(img, &seg.card.input))
            .and_then(|img| {
                let s = seg
                    .segment(&img)
                    .with_context(|| format!("image {}", path.display()))?;
                Ok(write_outputs(
                    &args.out,
                    stem,
                    path,
                    &seg.card.input.displayed(&img),
                    &s,
                    &seg.card.classes,
                )?)
            });
        match result {
            // Not bar.println: indicatif drops those lines when stderr is not a terminal
            // (scripts, CI logs), which lost the per-file errors that the summary points to.
            Ok(report) => bar.suspend(|| {
                println!(
                    "{}: {}",
                    path.display(),
                    report
                        .classes
                        .iter()
                        .map(|c| format!("{} {} px", c.class, c.area_pixels))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("error: {e:#}"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "wrote {} result(s) to {} ({})",
        files.len() - failed,
        args.out.display(),
        describe(seg.cleanup())
    );
    if failed > 0 {
        bail!("{failed} of {} input(s) failed (see above)", files.len());
    }
    Ok(())
}

/// A one-channel model reads the image's luma and the overlay is drawn in gray, so a colour
/// photo is kept as gray from the start: 24 MB instead of 72 for a 24 MP photo.
pub(crate) fn gray_for_gray_models(img: DynamicImage, spec: &InputSpec) -> DynamicImage {
    if spec.channels == 1 && img.as_luma8().is_none() {
        DynamicImage::ImageLuma8(img.into_luma8())
    } else {
        img
    }
}

/// Expands folders (non-recursively) to their images; output stems must be unique.
fn collect_inputs(inputs: &[PathBuf]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .with_context(|| format!("reading folder {}", input.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| has_image_ext(p))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("folder {} holds no .png/.jpg/.jpeg images", input.display());
            }
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("input {} does not exist", input.display());
        }
    }
    let mut by_stem = BTreeMap::new();
    for f in files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(prev) = by_stem.insert(stem.clone(), f.clone()) {
            bail!(
                "inputs {} and {} would write the same outputs '{stem}_*'; rename one",
                prev.display(),
                f.display()
            );
        }
    }
    Ok(by_stem)
}

fn has_image_ext(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}
