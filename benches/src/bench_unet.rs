//! Times the default UNet in medseg: Burn training steps (CPU backend of the build) and tract
//! inference through the bedside `Segmenter`, and writes the exported ONNX so that
//! `compare_unet.py` can run the very same weights in onnxruntime. Prints one JSON object.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor};
use clap::Parser;
use medseg_models::{Architecture, SegModel};
use medseg_runtime::InputSpec;
use medseg_trainer::backend::{self, Train};
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::{bare_card, build_onnx};
use medseg_trainer::losses::{CompoundLoss, LossTarget};

#[derive(Parser)]
struct Args {
    /// Where to write the exported f32 ONNX model.
    #[arg(long)]
    onnx: PathBuf,
    #[arg(long, default_value_t = 256)]
    size: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed training steps per input size (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    train_steps: usize,
    /// Timed inferences (after two warm-up runs).
    #[arg(long, default_value_t = 20)]
    infer_runs: usize,
    /// Leave glibc's malloc at its defaults (to measure what medseg-malloc-tuning gives).
    #[arg(long)]
    malloc_defaults: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds per training step (Adam, 0.5CE+0.5Dice) on `batch` x 1 x `side` x `side`.
fn time_training(arch: &Architecture, side: usize, batch: usize, steps: usize) -> f64 {
    let dev = backend::device();
    let mut model: SegModel<Train> = arch.init(&dev).expect("valid architecture");
    let mut optim = AdamConfig::new().init::<Train, SegModel<Train>>();
    let loss =
        CompoundLoss::<Train>::new(&"0.5ce+0.5dice".parse().expect("valid loss"), None, &dev);
    let mut times = Vec::new();
    for step in 0..=steps {
        let x = Tensor::<Train, 4>::random([batch, 1, side, side], Distribution::Default, &dev);
        let y = Tensor::<Train, 4>::random([batch, 2, side, side], Distribution::Default, &dev);
        let start = Instant::now();
        let l = loss
            .forward(model.forward(x), &LossTarget::one_hot(y))
            .expect("region losses need no maps");
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(1e-3, model, grads);
        if step > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    median(times)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // As medseg-train does, so that the step is timed as training runs it.
    let malloc_tuned = !args.malloc_defaults && medseg_malloc_tuning::keep_freed_memory();
    let arch = Architecture::by_name("unet", 1, 2)?;
    let train_full = time_training(&arch, args.size, args.batch, args.train_steps);
    let train_crop = time_training(&arch, args.size / 2, args.batch, args.train_steps);

    let dev = backend::device();
    let model: SegModel<Train> = arch.init(&dev)?;
    let model = model.valid();
    let graph = model.export([1, 1, args.size, args.size]);
    let input = InputSpec::square(1, args.size, false);
    let mut card = bare_card(&arch, input, vec!["background".into(), "foreground".into()])?;
    card.parameters = graph.parameter_count();
    let (proto, seg) = build_onnx(
        &graph,
        &mut card,
        WeightFormat::F32,
        &args.onnx.display().to_string(),
    )?;
    std::fs::write(&args.onnx, medseg_runtime::onnx::encode(&proto))?;

    // Bedside path: a decoded image of the model's size through preprocessing, tract, argmax.
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(
        args.size as u32,
        args.size as u32,
        |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]),
    ));
    let mut segment = Vec::new();
    let mut tract_only = Vec::new();
    let n = args.size * args.size;
    for run in 0..args.infer_runs + 2 {
        let start = Instant::now();
        seg.segment(&img)?;
        let s = start.elapsed().as_secs_f64();
        let start = Instant::now();
        seg.logits(vec![0.1; n])?;
        let t = start.elapsed().as_secs_f64();
        if run >= 2 {
            segment.push(s);
            tract_only.push(t);
        }
    }
    let segment_s = median(segment);
    let report = serde_json::json!({
        "backend": backend::NAME,
        "malloc_tuned": malloc_tuned,
        "batch": args.batch,
        "size": args.size,
        "parameters": graph.parameter_count(),
        "train_step_s": { "full": train_full, "crop": train_crop },
        "train_images_per_s": { "full": args.batch as f64 / train_full, "crop": args.batch as f64 / train_crop },
        "tract_logits_ms": median(tract_only) * 1e3,
        "segment_ms": segment_s * 1e3,
        "segment_images_per_s": 1.0 / segment_s,
    });
    println!("{report}");
    Ok(())
}
