use std::path::PathBuf;

use medseg_runtime::Cleanup;
use medseg_trainer::backend;
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::{ExportOptions, export};

/// Export a trained run to ONNX with its model card; refuses to write a model whose tract
/// logits differ from Burn's.
///
/// Example: medseg-train export --run runs/unet --out unet.onnx
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    run: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// Replace --out when it exists (otherwise an existing model is never overwritten).
    #[arg(long)]
    force: bool,
    /// Which checkpoint: best (by validation Dice) or last.
    #[arg(long, default_value = "best")]
    checkpoint: String,
    /// Weight storage: f32, or int8 per channel (4x smaller; activations stay f32).
    #[arg(long, value_enum, default_value_t = WeightFormat::F32)]
    weights: WeightFormat,
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
    if args.out.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to replace it, or choose another --out",
            args.out.display()
        );
    }
    let opts = ExportOptions {
        checkpoint: args.checkpoint.clone(),
        weights: args.weights,
        evaluate: !args.no_eval,
        compare_burn: args.compare_burn,
        max_test_images: args.max_test_images,
        cleanup: Cleanup {
            min_component_px: args.min_component,
            fill_holes: args.fill_holes,
        },
    };
    let report = export::<backend::Inner>(&args.run, &args.out, &opts, &backend::device())?;
    // Where rounding sensitivity loosened the f32 limit, the f64 agreement is what vouches
    // for the graph.
    let f64_note = match report.parity.f64_relative {
        Some(d) => format!("; in f64 {d:.1e}"),
        None => String::new(),
    };
    println!(
        "wrote {} ({:.2} MB); Burn/tract parity {:.2e} of the logit range (max abs {:.2e}; the model's own sensitivity to rounding {:.1e}{f64_note}; {:.3}% of pixels classed differently)",
        args.out.display(),
        report.bytes as f64 / 1e6,
        report.parity.relative,
        report.parity.max_abs_diff,
        report.parity.sensitivity,
        100.0 * report.parity.mask_disagreement
    );
    if let Some(q) = report.quantized_parity {
        println!(
            "int8 weights: logits within {:.2e} of the logit range of Burn's",
            q.relative
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
    Ok(())
}
