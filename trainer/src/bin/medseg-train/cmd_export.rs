use std::path::{Path, PathBuf};

use anyhow::Context;

use medseg_runtime::Cleanup;
use medseg_runtime::package::{self, Package};
use medseg_trainer::backend;
use medseg_trainer::export::quantize::{Calibration, QuantizeOptions};
use medseg_trainer::export::{
    DEFAULT_SENSITIVITY_LIMIT, ExportOptions, Int8Options, Precision, Target, export,
};

/// Export a trained run to ONNX with its model card, or to a package for a device (the ONNX
/// file, the same graph as a tract NNEF archive, and card.json with the sha256 of each);
/// refuses to write a model whose tract logits differ from Burn's.
///
/// Example: medseg-train export --run runs/unet --out unet.onnx
///          medseg-train export --run runs/unet --package unet-int8/ --precision int8
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["out", "package"])))]
pub struct Args {
    #[arg(long)]
    run: PathBuf,
    /// The ONNX file to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A package folder to write instead of one ONNX file: model.onnx, model.nnef.tar (loads
    /// without ONNX parsing) and card.json (the card, the precision, each file's sha256).
    /// `medseg --model DIR` runs it after checking the checksums.
    #[arg(long, value_name = "DIR")]
    package: Option<PathBuf>,
    /// Replace --out (or the --package folder) when it exists (otherwise an existing model is
    /// never overwritten).
    #[arg(long)]
    force: bool,
    /// Which checkpoint: best (by validation Dice) or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Number format: f32; f16 or int8-weights (weights stored in half precision or int8 per
    /// channel, computed in f32); int8 (static quantization: uint8 activations calibrated on
    /// training images, QDQ form).
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    /// Operator forms: cpu (as the network describes them), or cuda (pooling, transposed
    /// convolutions and resizes rewritten into operators tract-cuda runs on the GPU: same
    /// results, parity-checked; `medseg --device cuda`).
    #[arg(long, value_enum, default_value_t = Target::Cpu)]
    target: Target,
    /// Calibrate the card's quality gate (the runtime's "unreliable" verdict) on this many
    /// validation images, evenly spaced; 0: no gate. With scoring on, the card records how the
    /// gate sorts each test split (bad answers caught, good ones rejected).
    #[arg(long, value_name = "N", default_value_t = 50)]
    gate_images: usize,
    /// How far beyond the validation images' spread the gate's thresholds sit: each is the
    /// 99th percentile of its signal on those images times 1 + this (sharpness: divided).
    #[arg(long, default_value_t = 0.5)]
    gate_margin: f64,
    /// Older spelling of `--precision int8-weights` (`--weights int8`).
    #[arg(long, value_name = "int8", conflicts_with = "precision", value_parser = ["int8", "f32"])]
    weights: Option<String>,
    /// int8: training images to calibrate activation ranges on (evenly spaced).
    #[arg(long, value_name = "N", default_value_t = 32)]
    calibrate: usize,
    /// int8: pass each calibration image once through the run's own training augmentation
    /// (for a model trained on phone-capture augmentation, ranges that cover phone photos).
    #[arg(long)]
    calibrate_augmented: bool,
    /// int8: how a range is chosen from the calibration values.
    #[arg(long, value_enum, default_value_t = Calibration::Percentile)]
    calibration: Calibration,
    /// int8: convolutions (ONNX node names, as the sensitivity report prints them) to keep
    /// in f32, comma separated.
    #[arg(long, value_delimiter = ',')]
    keep_float: Vec<String>,
    /// int8: also keep in f32 every convolution that, quantized alone, changes more than
    /// this share of the calibration images' pixels (0 or less: none).
    #[arg(long, default_value_t = DEFAULT_SENSITIVITY_LIMIT)]
    sensitivity_limit: f64,
    /// Skip scoring on the test splits (the card then has no metrics).
    #[arg(long)]
    no_eval: bool,
    /// Score at most this many test images per domain, evenly spaced over the split so every
    /// patient counts (0 = all); the card records how many were scored.
    #[arg(long, default_value_t = 0)]
    max_test_images: usize,
    /// Also score the Burn model on the test splits and show the Burn-tract difference.
    #[arg(long)]
    compare_burn: bool,
    /// Clean-up for the card: the runtime drops islands of a class smaller than PX pixels of
    /// the model's input grid (try `medseg eval --min-component` first to pick PX).
    #[arg(long, value_name = "PX", default_value_t = 0)]
    min_component: u32,
    /// Clean-up for the card: the runtime fills background that one class encloses.
    #[arg(long)]
    fill_holes: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !matches!(args.checkpoint.as_str(), "best" | "last") {
        anyhow::bail!(
            "--checkpoint must be 'best' or 'last', not '{}'",
            args.checkpoint
        );
    }
    // Checked before the minutes of parity checks and scoring, not after them.
    let destination = args
        .out
        .as_ref()
        .or(args.package.as_ref())
        .context("--out or --package")?;
    if destination.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to replace it, or choose another {}",
            destination.display(),
            if args.out.is_some() {
                "--out"
            } else {
                "--package"
            }
        );
    }
    if let Some(dir) = &args.package
        && dir.exists()
        && !Package::is_package(dir)
    {
        anyhow::bail!(
            "{} exists and is not a medseg package (no {}): --force replaces packages only",
            dir.display(),
            package::MANIFEST_FILE
        );
    }
    let precision = match args.weights.as_deref() {
        Some("int8") => Precision::Int8Weights,
        Some(_) => Precision::F32,
        None => args.precision,
    };
    if precision == Precision::Int8 {
        anyhow::ensure!(args.calibrate > 0, "--calibrate must be at least 1");
    }
    let opts = ExportOptions {
        checkpoint: args.checkpoint.clone(),
        precision,
        target: args.target,
        gate_images: args.gate_images,
        gate_margin: args.gate_margin,
        int8: Int8Options {
            calibration_images: args.calibrate,
            augmented: args.calibrate_augmented,
            quantize: QuantizeOptions {
                calibration: args.calibration,
                keep_float: args.keep_float.clone(),
                sensitivity_limit: (args.sensitivity_limit > 0.0).then_some(args.sensitivity_limit),
            },
        },
        evaluate: !args.no_eval,
        compare_burn: args.compare_burn,
        max_test_images: args.max_test_images,
        cleanup: Cleanup {
            min_component_px: args.min_component,
            fill_holes: args.fill_holes,
        },
    };
    // A package's ONNX file is exported beside it first, then packaged.
    let staging = match &args.package {
        Some(dir) => Some(staging_dir(dir)?),
        None => None,
    };
    let onnx_path = match (&staging, &args.out) {
        (Some(tmp), _) => tmp.path().join(package::ONNX_FILE),
        (None, Some(out)) => out.clone(),
        (None, None) => anyhow::bail!("export needs --out FILE or --package DIR"),
    };
    let report = export::<backend::Inner>(&args.run, &onnx_path, &opts, &backend::device())?;
    // Where rounding sensitivity loosened the f32 limit, the f64 agreement is what vouches
    // for the graph.
    let f64_note = match report.parity.f64_relative {
        Some(d) => format!("; in f64 {d:.1e}"),
        None => String::new(),
    };
    let written = match &args.package {
        Some(dir) => write_package(dir, &onnx_path, precision, args.force)?,
        None => onnx_path.display().to_string(),
    };
    println!(
        "wrote {written} ({:.2} MB); Burn/tract parity {:.2e} of the logit range (max abs {:.2e}; the model's own sensitivity to rounding {:.1e}{f64_note}; {:.3}% of pixels classed differently)",
        report.bytes as f64 / 1e6,
        report.parity.relative,
        report.parity.max_abs_diff,
        report.parity.sensitivity,
        100.0 * report.parity.mask_disagreement
    );
    if !report.sensitivity.is_empty() {
        println!(
            "int8 sensitivity, each convolution quantized alone (pixels classed differently, largest logit change / range):"
        );
        for r in &report.sensitivity {
            println!(
                "  {:<28} {:>7.3}% {:>9.2e}{}",
                r.layer,
                100.0 * r.mask_change,
                r.logit_change,
                if r.kept_float { "  kept in f32" } else { "" }
            );
        }
    }
    if let Some(d) = report.int8_difference {
        println!(
            "int8 against f32 on the calibration images: {:.3}% of pixels classed differently, foreground Dice agreement {:.4}",
            100.0 * d.mask_change,
            d.foreground_agreement
        );
    }
    if let Some(q) = report.quantized_parity {
        println!(
            "{precision:?}: logits within {:.2e} of the logit range of Burn's, {:.3}% of pixels classed differently",
            q.relative,
            100.0 * q.mask_disagreement
        );
    }
    for (split, (tract, burn)) in &report.dice {
        match burn {
            Some(b) => println!(
                "{split}: Dice tract {tract:.4}  Burn {b:.4}  |diff| {:.4}",
                (tract - b).abs()
            ),
            None => println!("{split}: Dice {tract:.4}"),
        }
    }
    if let Some(g) = &report.quality_gate {
        println!(
            "quality gate (the {:.0}th percentile of {} images of {}, margin {}): entropy <= {:.4}, \
             sharpness >= {:.4}, saturated share <= {:.4} (disagreement with the mirrored image, \
             reported only: {:.4})",
            100.0 * g.calibration.quantile,
            g.calibration.images,
            g.calibration.split,
            g.calibration.margin,
            g.entropy_max,
            g.sharpness_min,
            g.saturation_max,
            g.flip_disagreement_max
        );
    }
    for (split, g) in &report.gate_scores {
        println!("{split}: the gate {}", g.describe());
    }
    Ok(())
}

/// A scratch folder beside the package `dir` (same file system, so the final rename is atomic).
fn staging_dir(dir: &Path) -> anyhow::Result<tempfile::TempDir> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    tempfile::Builder::new()
        .prefix(".medseg-export-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a scratch folder in {}", parent.display()))
}

/// Packages the exported `onnx` file into `dir`, replacing an existing package only with
/// `force` and only once the new one is complete. Returns what was written, for the summary.
fn write_package(
    dir: &Path,
    onnx: &Path,
    precision: Precision,
    force: bool,
) -> anyhow::Result<String> {
    use clap::ValueEnum;
    let bytes = std::fs::read(onnx).with_context(|| format!("reading {}", onnx.display()))?;
    let precision = precision
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    let source = dir.join(package::ONNX_FILE).display().to_string();
    // Replacing: the new package is written into a scratch folder (removed when dropped,
    // also on failure), and the old one goes only once the new one is complete.
    let scratch = if force && dir.exists() {
        Some(staging_dir(dir)?)
    } else {
        None
    };
    let target = scratch
        .as_ref()
        .map_or_else(|| dir.to_path_buf(), |s| s.path().join("package"));
    let manifest = package::write(&target, &bytes, &source, &precision)?;
    if scratch.is_some() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the old {}", dir.display()))?;
        std::fs::rename(&target, dir)
            .with_context(|| format!("moving the new package to {}", dir.display()))?;
    }
    let files: Vec<String> = manifest
        .files
        .iter()
        .map(|(name, f)| format!("{name} {:.2} MB", f.bytes as f64 / 1e6))
        .collect();
    Ok(format!(
        "{} ({}, {})",
        dir.display(),
        files.join(", "),
        package::MANIFEST_FILE
    ))
}
