//! What augmentation costs the training loop: for each pipeline, the same Burn training steps
//! (default UNet, Adam, 0.5CE+0.5Dice, batch 8 of whole 256x256 images by default) fed by the
//! trainer's own prefetch thread and data source, so the augmentation runs off the training
//! thread exactly as in `medseg-train train`. Prints, per pipeline, the time to prepare one
//! batch alone, the median step time with the prefetch thread running, the share of the step
//! the training thread waited for a batch, and the slowdown against `none`.
//!
//! Example: cargo run --release -p medseg-benches --bin bench-augment -- --data phantom/

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use clap::Parser;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use medseg_models::{Architecture, SegModel};
use medseg_runtime::InputSpec;
use medseg_runtime::dataset::Dataset;
use medseg_trainer::augment::Pipeline;
use medseg_trainer::backend::{self, Train};
use medseg_trainer::data::{evenly_spaced, load_split};
use medseg_trainer::losses::{CompoundLoss, LossTarget};
use medseg_trainer::prefetch::Prefetch;
use medseg_trainer::source::{DataSource, Labelled};
use medseg_trainer::train::PREFETCH_BATCHES;

#[derive(Parser)]
struct Args {
    /// Data set whose training split feeds the batches (e.g. the phantom).
    #[arg(long)]
    data: PathBuf,
    /// Pipelines to compare, comma separated (presets or TOML files); `none` is always run
    /// first as the reference.
    #[arg(long, default_value = "basic,strong,sas")]
    augment: String,
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Training patch side (0 = whole images, the 256x256 case).
    #[arg(long, default_value_t = 0)]
    crop: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Timed steps per pipeline (after one warm-up step).
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Training images loaded (batches cycle over them).
    #[arg(long, default_value_t = 64)]
    images: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Measured {
    name: String,
    prepare_s: f64,
    step_s: f64,
    wait_share: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let ds = Dataset::open(&args.data)?;
    let spec = InputSpec::square(1, args.size, false);
    let samples = evenly_spaced(ds.split(None, "train")?, args.images);
    let split = load_split(&samples, ds.classes.len(), &spec, false, "train")?;
    let crop = if args.crop == 0 { args.size } else { args.crop };
    let arch = Architecture::by_name("unet", 1, ds.classes.len())?;
    let loss = CompoundLoss::<Train>::new(&"0.5ce+0.5dice".parse()?, None, &backend::device());

    let mut names = vec!["none".to_string()];
    names.extend(
        args.augment
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "none")
            .map(str::to_string),
    );
    let mut rows = Vec::new();
    for name in names {
        let pipeline = Pipeline::from_arg(&name)?;
        pipeline.validate()?;
        let source = Labelled {
            split: &split,
            spec: &spec,
            crop,
            classes: ds.classes.len(),
            augment: &pipeline,
        };
        let batches: Vec<Vec<usize>> = (0..=args.steps)
            .map(|s| {
                (0..args.batch)
                    .map(|i| (s * args.batch + i) % split.len())
                    .collect()
            })
            .collect();

        // Preparing a batch alone (rayon over the samples, as in training).
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let prepare_s = median(
            batches
                .iter()
                .map(|b| {
                    let t = Instant::now();
                    let _ = DataSource::<Train>::prepare(&source, b, &mut rng);
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );

        // Training steps fed by the prefetch thread.
        let dev = backend::device();
        let mut model: SegModel<Train> = arch.init(&dev)?;
        let mut optim = AdamConfig::new().init::<Train, SegModel<Train>>();
        let (step_times, waited, total) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let mut order = batches.iter();
            let source = &source;
            let mut feed = Prefetch::spawn(scope, PREFETCH_BATCHES, move || {
                Some(DataSource::<Train>::prepare(
                    source,
                    order.next()?,
                    &mut rng,
                ))
            });
            let mut times = Vec::new();
            let mut timed_from = None;
            let mut waited_before = std::time::Duration::ZERO;
            for step in 0..=args.steps {
                if step == 1 {
                    timed_from = Some(Instant::now());
                    waited_before = feed.waited();
                }
                let t = Instant::now();
                let batch = feed
                    .next_item()
                    .context("prefetch ended early")?
                    .upload(&dev);
                let target = LossTarget::one_hot(batch.target()?.one_hot.clone());
                let l = loss
                    .forward(model.forward(batch.images), &target)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let grads = GradientsParams::from_grads(l.backward(), &model);
                model = optim.step(1e-3, model.clone(), grads);
                if step > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            let total = timed_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
            Ok((times, (feed.waited() - waited_before).as_secs_f64(), total))
        })?;
        let row = Measured {
            name,
            prepare_s,
            step_s: median(step_times),
            wait_share: waited / total.max(1e-9),
        };
        eprintln!(
            "{}: prepare {:.0} ms/batch, step {:.2} s, waited {:.1}%",
            row.name,
            row.prepare_s * 1e3,
            row.step_s,
            100.0 * row.wait_share
        );
        rows.push(row);
    }

    let reference = rows[0].step_s;
    println!(
        "augmentation cost: batch {} of {}x{} (patch {crop}), {} timed steps, backend {}, {} threads",
        args.batch,
        args.size,
        args.size,
        args.steps,
        backend::NAME,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "| pipeline | prepare one batch alone (ms) | prepare / step | median step (s) | waited for data | step vs none |"
    );
    println!("| - | - | - | - | - | - |");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.1}% | {:.2} | {:.1}% | {:+.1}% |",
            r.name,
            r.prepare_s * 1e3,
            100.0 * r.prepare_s / r.step_s,
            r.step_s,
            100.0 * r.wait_share,
            100.0 * (r.step_s / reference - 1.0)
        );
    }
    Ok(())
}
