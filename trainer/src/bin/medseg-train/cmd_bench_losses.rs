use std::path::PathBuf;

use anyhow::Context;
use burn::module::AutodiffModule;

use medseg_runtime::dataset::Dataset;
use medseg_trainer::backend;
use medseg_trainer::data::{evenly_spaced, load_split};
use medseg_trainer::loss_table::{DomainScore, JMEDSEG_LOSSES, LossResult, TableContext, render};
use medseg_trainer::train::validate::score_split;
use medseg_trainer::train::{RunDir, foreground_means};

use crate::cmd_train;

/// Re-run JMedSeg's loss table: train the same UNet with each loss on an equal budget, score
/// each on every domain's test split, and write a Markdown table next to JMedSeg's numbers.
/// Runs go to --out/<loss>; a finished run is reused, an interrupted one resumed.
///
/// Example: medseg-train bench-losses --data phantom/ --out runs/losses --epochs 1
///   --max-steps-per-epoch 120 --report docs/LOSSES.md
#[derive(clap::Args)]
pub struct Args {
    /// Losses to compare, separated by ';' [default: JMedSeg's eight].
    #[arg(long, value_delimiter = ';')]
    losses: Option<Vec<String>>,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/LOSSES.md")]
    report: PathBuf,
    /// Score at most this many test images per domain, evenly spaced (0 = all).
    #[arg(long, default_value_t = 0)]
    max_test_images: usize,
    /// Training settings shared by every loss (--out is the folder of the runs; --loss is
    /// ignored).
    #[command(flatten)]
    train: cmd_train::Args,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let losses: Vec<String> = args
        .losses
        .clone()
        .unwrap_or_else(|| JMEDSEG_LOSSES.iter().map(|s| s.to_string()).collect());
    anyhow::ensure!(!losses.is_empty(), "--losses is empty");
    let data = args
        .train
        .data
        .as_ref()
        .context("bench-losses needs --data")?;
    let ds = Dataset::open(data)?;
    let root = args.train.out.clone();
    let mut results = Vec::new();
    for loss in &losses {
        let dir_name: String = loss
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '+' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut train = args.train.clone();
        train.loss = loss.clone();
        train.out = root.join(dir_name);
        let dir = RunDir::new(&train.out);
        let epochs = train.epochs.unwrap_or(cmd_train::DEFAULT_EPOCHS);
        let done = dir.state().map(|s| s.epochs_done).unwrap_or(0);
        if done < epochs {
            train.resume = dir.has_progress();
            println!("== {loss}: training ({})", train.out.display());
            cmd_train::run(train.clone())?;
        } else {
            println!(
                "== {loss}: reusing the finished run in {}",
                train.out.display()
            );
        }
        let state = dir.state()?;
        let train_seconds = state.log.iter().map(|e| e.seconds).sum();
        let cfg = dir.config()?;
        // A reused run must have had the same budget, or the table would compare unequal runs.
        let asked = (
            epochs,
            train.step_limit(),
            train.batch_size,
            train.lr,
            train.seed,
        );
        let had = (
            cfg.epochs,
            cfg.max_steps_per_epoch,
            cfg.batch_size,
            cfg.lr,
            cfg.seed,
        );
        anyhow::ensure!(
            asked == had,
            "{} was trained with (epochs, max steps, batch, lr, seed) = {had:?}, not {asked:?}; \
             use another --out for a new budget",
            train.out.display()
        );
        let device = backend::device();
        let model = dir.load_model::<backend::Train>("best", &device)?.valid();
        let mut scores = Vec::new();
        for (domain, splits) in &ds.domains {
            let Some(samples) = splits.get("test").filter(|s| !s.is_empty()) else {
                continue;
            };
            let samples = evenly_spaced(samples, args.max_test_images);
            let loaded = load_split(
                &samples,
                ds.classes.len(),
                &cfg.input,
                true,
                &format!("{domain}/test"),
            )?;
            let summary = score_split(&model, &loaded, &cfg.input, &ds.classes, 8, false, &device)
                .with_context(|| format!("scoring {loss} on {domain}/test"))?;
            let (dice, _) = foreground_means(&summary);
            println!(
                "   {domain}/test: mIoU {:.4}  Dice {dice:.4}  ({} images)",
                summary.mean_iou,
                samples.len()
            );
            scores.push(DomainScore {
                domain: domain.clone(),
                images: samples.len(),
                miou: summary.mean_iou,
                dice,
            });
        }
        results.push(LossResult {
            loss: loss.clone(),
            best_val_dice: state.best_dice,
            best_epoch: state.best_epoch,
            train_seconds,
            scores,
        });
        // Rewrite the report after each loss, so an interrupted bench still leaves a table.
        write_report(&args, &ds.name, &results)?;
    }
    println!("wrote {}", args.report.display());
    Ok(())
}

fn write_report(args: &Args, dataset: &str, results: &[LossResult]) -> anyhow::Result<()> {
    let t = &args.train;
    let budget = format!(
        "{} epoch(s){}, batch {}, {} px crops of {} px images, {} lr {} (poly {}), seed {}",
        t.epochs.unwrap_or(cmd_train::DEFAULT_EPOCHS),
        t.step_limit()
            .map_or(String::new(), |m| format!(" of at most {m} steps")),
        t.batch_size,
        t.crop_size,
        t.image_size,
        format!("{:?}", t.optimizer).to_lowercase(),
        t.lr,
        t.poly,
        t.seed,
    );
    let command = crate::typed_command();
    let machine = machine_description();
    let md = render(
        &TableContext {
            command: &command,
            dataset,
            budget: &budget,
            machine: &machine,
        },
        results,
    );
    write_markdown(&args.report, &md)
}

/// Writes a generated report atomically (temp file + rename), making its folder if needed.
pub(crate) fn write_markdown(path: &std::path::Path, md: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, md).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// CPU model, the vector extensions speed depends on, and core count (Linux); the backend.
pub(crate) fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let cpu = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let flags = field("flags").unwrap_or_default();
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni"]
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    let simd = if simd.is_empty() {
        String::new()
    } else {
        format!(" ({})", simd.join(", "))
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}{simd}, {cores} threads, Burn backend {}",
        backend::NAME
    )
}
