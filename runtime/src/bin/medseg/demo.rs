//! `medseg demo`: segments the embedded sample slices with the embedded model; no files needed.

use std::path::PathBuf;

use anyhow::Context;

use medseg_runtime::Segmenter;
use medseg_runtime::demo::{MODEL, SAMPLES};
use medseg_runtime::evaluate::UNIT_SPACING;
use medseg_runtime::image_io::Mask;
use medseg_runtime::metrics::SplitReport;
use medseg_runtime::outputs::{Source, write_outputs};

/// Run the embedded model on embedded phantom slices; writes overlays and prints metrics.
///
/// Example: medseg demo --out medseg-demo
#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = "medseg-demo")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let seg = Segmenter::from_bytes(MODEL, "embedded demo model")?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let classes = &seg.card.classes;
    println!(
        "model: {} ({} parameters, weights {}), input {}x{}, trained on {} ({} epochs)",
        seg.card.architecture["name"].as_str().unwrap_or("?"),
        seg.card.parameters,
        seg.card.quantization,
        seg.card.input.width,
        seg.card.input.height,
        seg.card.training.dataset,
        seg.card.training.epochs,
    );
    let mut report = SplitReport::new(classes.len());
    println!(
        "{:<26} {:>8} {:>8} {:>9} {:>8}",
        "slice", "Dice", "area px", "conf", "ms"
    );
    for sample in SAMPLES {
        let img = image::load_from_memory(sample.image).context("decoding an embedded sample")?;
        let truth = Mask::from_gray(image::load_from_memory(sample.mask)?.into_luma8());
        let s = seg.segment(&img)?;
        let name = format!("{}.png", sample.name);
        let source = Source {
            name: &name,
            spacing_mm: None,
        };
        let r = write_outputs(&args.out, sample.name, &source, &img, &s, classes)?;
        let scores = medseg_runtime::metrics::score_image(
            &truth.data,
            &s.prediction.mask.data,
            truth.width,
            truth.height,
            classes.len(),
            UNIT_SPACING,
        )?;
        // The embedded slices carry no patient id: each counts as its own.
        report.add(
            sample.name,
            &truth.data,
            &s.prediction.mask.data,
            truth.width,
            truth.height,
            UNIT_SPACING,
        )?;
        let dice = scores.per_class[1]
            .dice
            .map_or("-".into(), |d| format!("{d:.4}"));
        println!(
            "{:<26} {:>8} {:>8} {:>9.3} {:>8.1}",
            sample.name,
            dice,
            r.classes[0].area_pixels,
            r.classes[0].mean_confidence.unwrap_or(0.0),
            s.inference_ms
        );
    }
    println!("\n{}", report.summary(classes));
    if let Some(m) = seg.card.metrics.get("xh/test") {
        let key = format!("dice_{}", classes[1]);
        if let Some(d) = m.get(&key) {
            println!("model card: Dice {d:.4} on the full phantom xh test split");
        }
    }
    println!(
        "overlays, masks and reports written to {}/",
        args.out.display()
    );
    Ok(())
}
