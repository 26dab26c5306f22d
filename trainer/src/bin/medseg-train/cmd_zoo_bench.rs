use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use medseg_models::Architecture;
use medseg_runtime::Segmenter;
use medseg_runtime::dataset::Dataset;
use medseg_trainer::backend;
use medseg_trainer::export::{ExportOptions, Precision, export, test_scores};
use medseg_trainer::peak_memory;
use medseg_trainer::train::{RunConfig, RunDir};
use medseg_trainer::zoo_bench::report::{ReportContext, render};
use medseg_trainer::zoo_bench::{Budget, ZooRow, figure, median, median_latency_ms};

use crate::cmd_bench_losses::{machine_description, write_markdown};
use crate::cmd_train;

/// The model-zoo benchmark: trains every architecture (or those of --models) on one data set
/// with one equal budget (the same training images, every channel width scaled by
/// --width-scale), exports each to ONNX, scores it in tract on every domain's test split,
/// measures training speed, peak memory and tract latency, and writes docs/MODEL_ZOO.md with
/// a figure of Dice against GFLOPs and latency. Runs go to --out/<model>; finished models are
/// reused and interrupted ones resumed, so the command can be run again after a stop.
///
/// Example: medseg-train zoo-bench --data phantom/
///   (same as --out runs/zoo --width-scale 0.25 --epochs 2 --max-steps-per-epoch 60)
#[derive(clap::Args)]
pub struct Args {
    /// Architectures to train, comma separated [default: every registered one].
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Markdown report to write (the figure goes beside it) [default: docs/MODEL_ZOO.md, or
    /// docs/MODEL_ZOO_TIMING.md with --timings-only].
    #[arg(long)]
    report: Option<PathBuf>,
    /// Score at most this many test images per domain, evenly spaced (0 = all).
    #[arg(long, default_value_t = 100)]
    max_test_images: usize,
    /// Tract runs per model for the median latency.
    #[arg(long, default_value_t = 20)]
    pub(crate) latency_runs: usize,
    /// Measure only each model's training speed, peak training memory and tract latency, in
    /// a few steps (no Dice), on a machine left alone: the rows under --out/timing.
    #[arg(long)]
    pub(crate) timings_only: bool,
    /// Training steps timed per model with --timings-only, after as many that warm up.
    #[arg(long, default_value_t = 6, requires = "timings_only")]
    pub(crate) timing_steps: usize,
    /// A member's own learning rate where the shared one makes it diverge (the cure for a
    /// collapsed row, e.g. `setr=2e-4`); its row is marked with it. Comma separated.
    #[arg(long = "lr-for", value_delimiter = ',', value_name = "MODEL=LR")]
    lr_for: Vec<String>,
    /// Training settings shared by every model (--out is the folder of the runs; --model and
    /// --model-opt are set per model).
    #[command(flatten)]
    pub(crate) train: cmd_train::Args,
}

impl Args {
    pub(crate) fn report(&self) -> PathBuf {
        self.report.clone().unwrap_or_else(|| {
            if self.timings_only {
                "docs/MODEL_ZOO_TIMING.md".into()
            } else {
                "docs/MODEL_ZOO.md".into()
            }
        })
    }
}

/// The bench's own defaults for flags it shares with `train`. The budget: 960 training
/// images (2 epochs of 60 steps of 8 crops, what bench-generalization gives each run) per
/// model at a quarter of each paper's widths. Measured here (AMD EPYC, AVX2, 2 threads, 4-step
/// runs): from 33 img/s (simple) down to ~0.9 img/s (unet3p, unetpp-big) at that width, about
/// 9 s per image for the whole zoo, so 960 images each is ~2.5 h of training plus ~30 min of
/// export, scoring and timing: the issue's ~3 hours. Typed flags still win.
pub(crate) const BENCH_DEFAULTS: [(&str, &str); 5] = [
    ("epochs", "2"),
    ("max_steps_per_epoch", "60"),
    ("max_val_images", "50"),
    ("width_scale", "0.25"),
    ("out", "runs/zoo"),
];

/// `train` flags that the bench sets per model, refused when typed.
pub(crate) const SET_PER_MODEL: &[&str] = &[
    "model",
    "model_opts",
    "base_width",
    "depth",
    "upsampling",
    "resume",
    "init_from",
    "init_modules",
    "freeze",
];

/// Options a member trains with in the bench instead of its registry default, so that every
/// member starts from its paper's widths before --width-scale: `unet`'s registry default
/// (base width 16) is medseg's own CPU-sized choice; JMedSeg's is 64 with a halved bottleneck.
const PAPER_OPTIONS: &[(&str, &[&str])] = &[("unet", &["base_width=64", "layout=jmedseg"])];

/// `--model-opt`s the bench trains `name` with.
pub(crate) fn paper_options(name: &str) -> Vec<String> {
    PAPER_OPTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(Vec::new(), |(_, opts)| {
            opts.iter().map(|o| o.to_string()).collect()
        })
}

/// Parameters and GFLOPs (2 x multiply-accumulates) of a run's architecture, counted from
/// its export graph at the run's input size.
pub(crate) fn graph_cost(cfg: &RunConfig) -> anyhow::Result<(usize, f64)> {
    let spec = &cfg.input;
    let graph = cfg
        .architecture
        .init::<backend::Inner>(&backend::device())?
        .export([1, 1, spec.height, spec.width]);
    Ok((
        graph.parameter_count(),
        2.0 * graph.multiply_accumulates() as f64 / 1e9,
    ))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = args.train.data.clone().context("zoo-bench needs --data")?;
    let ds = Dataset::open(&data)?;
    let source_domain = args
        .train
        .domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    let names: Vec<String> = match &args.models {
        Some(m) => m.clone(),
        None => Architecture::names()
            .iter()
            .map(|n| n.to_string())
            .collect(),
    };
    anyhow::ensure!(!names.is_empty(), "--models is empty");
    lr_overrides(&args.lr_for)?;
    for name in &names {
        // Refused before hours of training, not when its turn comes.
        Architecture::by_name(name, 1, 2).with_context(|| format!("--models {name}"))?;
    }
    let root = args.train.out.clone();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    if args.timings_only {
        return crate::cmd_zoo_timing::run(&args, &ds.name, &names, &root, started);
    }
    let mut rows: Vec<ZooRow> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        // One model that cannot be measured (an export refused for parity, say) must not
        // cost the hours of the others: it is reported, and the next invocation retries it.
        let row = match run_one(&args, name, &root) {
            Ok(row) => row,
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("== {name}: FAILED: {why}");
                failed.push((name.clone(), why));
                continue;
            }
        };
        println!(
            "== {name}: {} params, {:.2} GFLOPs, {:.1} img/s, {:.1} ms, {}",
            row.parameters,
            row.gflops,
            row.train_images_per_second,
            row.latency_ms,
            row.scores
                .iter()
                .map(|s| format!("{} {:.4}", s.domain, s.dice))
                .collect::<Vec<_>>()
                .join("  ")
        );
        rows.push(row);
        // Rewritten after each model, so an interrupted bench still leaves a table.
        write_report(
            &args,
            &ds.name,
            &source_domain,
            &rows,
            &names[i + 1..],
            &failed,
            None,
            started,
        )?;
    }
    let report = args.report();
    let figure_name = figure_file_name(&report);
    let figure_path = report.with_file_name(&figure_name);
    figure::draw(&rows, &source_domain, &figure_path)?;
    println!("wrote {}", figure_path.display());
    write_report(
        &args,
        &ds.name,
        &source_domain,
        &rows,
        &[],
        &failed,
        Some(&figure_name),
        started,
    )?;
    println!("wrote {}", report.display());
    refuse_failures(&failed, "measured")
}

/// Ends a bench that wrote its report with an error naming the models (name, why) it could
/// not do (`verb`: "measured", "timed").
pub(crate) fn refuse_failures(failed: &[(String, String)], verb: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        failed.is_empty(),
        "{} model(s) could not be {verb}: {}; the report lists why, and running the same \
         command again retries them",
        failed.len(),
        failed
            .iter()
            .map(|f| f.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `--lr-for` as (member, learning rate), refused unless every member is registered and every
/// rate a positive number.
fn lr_overrides(specs: &[String]) -> anyhow::Result<Vec<(String, f64)>> {
    specs
        .iter()
        .map(|spec| {
            let (name, lr) = spec
                .split_once('=')
                .with_context(|| format!("--lr-for {spec}: expected MODEL=LR"))?;
            Architecture::by_name(name, 1, 2).with_context(|| format!("--lr-for {spec}"))?;
            let lr: f64 = lr
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .with_context(|| format!("--lr-for {spec}: '{lr}' is not a positive number"))?;
            Ok((name.to_string(), lr))
        })
        .collect()
}

fn budget(t: &cmd_train::Args) -> Budget {
    Budget {
        epochs: t.epochs.unwrap_or(cmd_train::DEFAULT_EPOCHS),
        max_steps_per_epoch: t.step_limit(),
        batch_size: t.batch_size,
        image_size: t.image_size,
        crop_size: t.crop_size,
        width_scale: t.width_scale.unwrap_or(1.0),
        lr: t.lr,
        loss: t.loss.clone(),
        seed: t.seed,
    }
}

/// Trains (or resumes, or reuses) one architecture, exports, scores and times it.
fn run_one(args: &Args, name: &str, root: &Path) -> anyhow::Result<ZooRow> {
    let out = root.join(name);
    let onnx = root.join(format!("{name}.onnx"));
    let row_path = root.join(format!("{name}.json"));
    let mut train = args.train.clone();
    if let Some((_, lr)) = lr_overrides(&args.lr_for)?
        .into_iter()
        .find(|(n, _)| n == name)
    {
        train.lr = lr;
    }
    let wanted = budget(&train);
    if row_path.exists() {
        let row = ZooRow::read(&row_path)?;
        anyhow::ensure!(
            row.budget == wanted,
            "{} was measured with budget {:?}, not {wanted:?}; use another --out for a new budget",
            row_path.display(),
            row.budget
        );
        println!("== {name}: reusing {}", row_path.display());
        return Ok(row);
    }
    train.model = name.to_string();
    train.model_opts = paper_options(name);
    train.out = out.clone();
    let dir = RunDir::new(&out);
    let done = dir.state().map(|s| s.epochs_done).unwrap_or(0);
    let mut peak_rss_bytes = None;
    if done < wanted.epochs {
        train.resume = dir.has_progress();
        println!("== {name}: training ({})", out.display());
        let measured = peak_memory::reset_peak();
        cmd_train::run(train)?;
        peak_rss_bytes = peak_memory::peak_bytes().filter(|_| measured);
        // A stale export of an earlier, shorter run must not be reused.
        let _ = std::fs::remove_file(&onnx);
    }
    let cfg = dir.config()?;
    let had = (cfg.epochs, cfg.max_steps_per_epoch, cfg.batch_size, cfg.lr);
    let asked = (
        wanted.epochs,
        wanted.max_steps_per_epoch,
        wanted.batch_size,
        wanted.lr,
    );
    anyhow::ensure!(
        had == asked,
        "{} was trained with (epochs, max steps, batch, lr) = {had:?}, not {asked:?}; use \
         another --out for a new budget",
        out.display()
    );
    if !onnx.exists() {
        let opts = ExportOptions {
            checkpoint: "best".into(),
            target: Default::default(),
            gate_images: 0,
            gate_margin: 0.0,
            precision: Precision::F32,
            int8: Default::default(),
            evaluate: true,
            compare_burn: false,
            cleanup: Default::default(),
            max_test_images: args.max_test_images,
        };
        export::<backend::Inner>(&out, &onnx, &opts, &backend::device())
            .with_context(|| format!("exporting {}", out.display()))?;
    }
    let scores = test_scores::from_card(&onnx)?;
    let model = Segmenter::from_file(&onnx)?;
    let latency_ms = median_latency_ms(&model, args.latency_runs)?;
    let state = dir.state()?;
    let (parameters, gflops) = graph_cost(&cfg)?;
    let row = ZooRow {
        name: name.to_string(),
        family: cfg.architecture.entry().family.to_string(),
        options: cfg.architecture.options().into_iter().collect(),
        budget: wanted,
        parameters,
        gflops,
        train_images: state.log.iter().map(|e| e.train_images).sum(),
        train_images_per_second: median(
            &mut state
                .log
                .iter()
                .map(|e| e.images_per_second)
                .collect::<Vec<_>>(),
        ),
        train_seconds: state.log.iter().map(|e| e.seconds).sum(),
        peak_rss_bytes,
        latency_ms,
        latency_side: cfg.input.width,
        best_val_dice: state.best_dice,
        scores,
        onnx: onnx.display().to_string(),
    };
    row.write(&row_path)?;
    Ok(row)
}

fn figure_file_name(report: &Path) -> String {
    report
        .with_extension("png")
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "model_zoo.png".into())
}

#[allow(clippy::too_many_arguments)] // the report's inputs, each used once
fn write_report(
    args: &Args,
    dataset: &str,
    source_domain: &str,
    rows: &[ZooRow],
    pending: &[String],
    failed: &[(String, String)],
    figure: Option<&str>,
    started: Instant,
) -> anyhow::Result<()> {
    let b = budget(&args.train);
    let images = rows.first().map_or(0, |r| r.train_images);
    let budget = format!(
        "{} training images per model ({} epoch(s){}, batch {}), {} px crops of {} px images, \
         every width x {}, {} lr {} (poly {}), loss {}, `train`'s default augmentation, seed {}",
        images,
        b.epochs,
        b.max_steps_per_epoch
            .map_or(String::new(), |m| format!(" of at most {m} steps")),
        b.batch_size,
        b.crop_size,
        b.image_size,
        b.width_scale,
        format!("{:?}", args.train.optimizer).to_lowercase(),
        b.lr,
        args.train.poly,
        b.loss,
        b.seed,
    );
    let command = crate::typed_command();
    let machine = machine_description();
    let md = render(
        &ReportContext {
            command: &command,
            dataset,
            source_domain,
            budget: &budget,
            lr: b.lr,
            machine: &machine,
            figure,
            wall_seconds: started.elapsed().as_secs_f64(),
            pending,
            failed,
            latency_runs: args.latency_runs,
        },
        rows,
    );
    let path = args.report();
    let mut md = md;
    if let Some(notes) = std::fs::read_to_string(&path)
        .ok()
        .as_deref()
        .and_then(hand_written_tail)
    {
        // A rerun replaces the generated part and keeps what readers wrote under it.
        while !md.ends_with("\n\n") {
            md.push('\n');
        }
        md.push_str(notes);
    }
    write_markdown(&path, &md)
}

/// The heading under which readers of a report write their notes by hand.
const HAND_WRITTEN: &str = "## Reading these numbers";

/// The part of an earlier report from its hand-written heading (at a line start) on.
fn hand_written_tail(old: &str) -> Option<&str> {
    old.match_indices(HAND_WRITTEN)
        .map(|(i, _)| i)
        .find(|&i| i == 0 || old[..i].ends_with('\n'))
        .map(|i| &old[i..])
}

#[cfg(test)]
mod tests {
    use super::hand_written_tail;

    #[test]
    fn a_rerun_keeps_the_notes_written_under_the_report() {
        let old = "# Zoo\n\n| a |\n\n## Reading these numbers (by hand)\n\n- unext: why.\n";
        assert_eq!(
            hand_written_tail(old),
            Some("## Reading these numbers (by hand)\n\n- unext: why.\n")
        );
        assert_eq!(
            hand_written_tail("# Zoo\n\nsee ## Reading these numbers\n"),
            None
        );
        assert_eq!(hand_written_tail("# Zoo\n"), None);
    }
}
