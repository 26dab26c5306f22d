//! `zoo-bench --timings-only`: every architecture's training speed, peak training memory and
//! tract latency, each measured in two short epochs (the second timed), with the rows kept
//! under --out/timing so an interrupted pass resumes. Report: docs/MODEL_ZOO_TIMING.md.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use medseg_trainer::backend;
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::{bare_card, build_onnx};
use medseg_trainer::peak_memory;
use medseg_trainer::train::RunDir;
use medseg_trainer::zoo_bench::median_latency_ms;
use medseg_trainer::zoo_bench::report::gib;
use medseg_trainer::zoo_bench::timing::{TimingContext, TimingRow, read_row, render, write_row};

use crate::cmd_bench_losses::{machine_description, write_markdown};
use crate::cmd_train;
use crate::cmd_zoo_bench::{Args, graph_cost, paper_options, refuse_failures};

pub(crate) fn run(
    args: &Args,
    dataset: &str,
    names: &[String],
    root: &Path,
    started: Instant,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.timing_steps > 0,
        "--timing-steps 0: at least one step must be timed"
    );
    let root = root.join("timing");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let (command, machine, report) = (crate::typed_command(), machine_description(), args.report());
    let mut rows = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match time_one(args, name, &root) {
            Ok(row) => {
                println!(
                    "== {name}: {:.1} img/s, peak RSS {} GiB, tract {:.1} ms",
                    row.train_images_per_second,
                    gib(row.peak_rss_bytes),
                    row.latency_ms
                );
                rows.push(row);
            }
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("== {name}: FAILED: {why}");
                failed.push((name.clone(), why));
            }
        }
        let md = render(
            &TimingContext {
                command: &command,
                dataset,
                machine: &machine,
                latency_runs: args.latency_runs,
                wall_seconds: started.elapsed().as_secs_f64(),
                pending: &names[i + 1..],
                failed: &failed,
            },
            &rows,
        );
        write_markdown(&report, &md)?;
    }
    println!("wrote {}", report.display());
    refuse_failures(&failed, "timed")
}

/// Times one architecture, or reuses its row from an earlier pass with the same settings.
fn time_one(args: &Args, name: &str, root: &Path) -> anyhow::Result<TimingRow> {
    let t = &args.train;
    let width_scale = t.width_scale.unwrap_or(1.0);
    let row_path = root.join(format!("{name}.json"));
    if row_path.exists() {
        let row: TimingRow = read_row(&row_path)?;
        let had = (
            row.width_scale,
            row.batch_size,
            row.crop_size,
            row.timed_steps,
        );
        let asked = (width_scale, t.batch_size, t.crop_size, args.timing_steps);
        anyhow::ensure!(
            had == asked,
            "{} was timed with (width scale, batch, crop, steps) = {had:?}, not {asked:?}; use \
             another --out",
            row_path.display()
        );
        println!("== {name}: reusing {}", row_path.display());
        return Ok(row);
    }
    // A half-timed run is started again: resuming would time a different first step.
    let out = root.join(name);
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    let mut train = t.clone();
    train.model = name.to_string();
    train.model_opts = paper_options(name);
    train.out = out.clone();
    train.resume = false;
    train.epochs = Some(2);
    train.max_steps_per_epoch = Some(args.timing_steps);
    // Validation is not timed; one batch keeps it short.
    train.max_val_images = t.batch_size;
    println!("== {name}: timing ({})", out.display());
    let measured = peak_memory::reset_peak();
    cmd_train::run(train)?;
    let peak_rss_bytes = peak_memory::peak_bytes().filter(|_| measured);
    let dir = RunDir::new(&out);
    let state = dir.state()?;
    let cfg = dir.config()?;
    let timed = state.log.last().context("the timing run logged no epoch")?;
    // Latency depends on the graph, not on how well its weights agree with Burn's: the
    // timing pass loads the f32 graph in tract without export's parity gate, which a barely
    // trained network can fail (segnet: its unpooling follows exact ties, which f32 programs
    // break differently; docs/MODEL_ZOO.md). The bench's own rows are exported with the gate.
    let model = dir.load_model::<backend::Inner>("best", &backend::device())?;
    let graph = model.export(cfg.input.batch_of_one());
    let mut card = bare_card(&cfg.architecture, cfg.input.clone(), cfg.classes.clone())?;
    let (_, tract) = build_onnx(&graph, &mut card, WeightFormat::F32, name)?;
    let latency_ms = median_latency_ms(&tract, args.latency_runs)?;
    let (parameters, gflops) = graph_cost(&cfg)?;
    let row = TimingRow {
        name: name.to_string(),
        family: cfg.architecture.entry().family.to_string(),
        parameters,
        gflops,
        width_scale,
        batch_size: t.batch_size,
        crop_size: t.crop_size,
        timed_steps: args.timing_steps,
        train_images_per_second: timed.images_per_second,
        peak_rss_bytes,
        latency_ms,
        latency_side: cfg.input.width,
    };
    write_row(&row, &row_path)?;
    // The checkpoints of barely trained weights are not needed again.
    let _ = std::fs::remove_dir_all(&out);
    Ok(row)
}
