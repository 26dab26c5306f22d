use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use medseg_runtime::Segmenter;
use medseg_runtime::dataset::Dataset;
use medseg_runtime::image_io::load_image;
use medseg_trainer::backend;
use medseg_trainer::derived_domain::{DerivedSpec, write_derived_domain};
use medseg_trainer::export::{ExportOptions, Precision, export, test_scores};
use medseg_trainer::generalization::figure::{self, Crop};
use medseg_trainer::generalization::report::{ReportContext, render};
use medseg_trainer::generalization::{Method, RunResult};
use medseg_trainer::phone::dataset::{PhoneDomainSpec, write_phone_domain};
use medseg_trainer::phone::{self, PhoneCapture};
use medseg_trainer::pretrain::PretrainConfig;
use medseg_trainer::scanner_shift::ScannerShift;
use medseg_trainer::train::RunDir;

use crate::cmd_bench_losses::{machine_description, write_markdown};
use crate::{cmd_pretrain, cmd_train};

/// The generalization benchmark of SAS: trains the same model five ways (baseline,
/// +augmentation, +STN, +SSL, SAS) with the same budget and seeds, exports each to ONNX, scores
/// each in tract on every domain's test split (the phone-capture domain included, made first
/// when the data set has none), and writes docs/GENERALIZATION.md with a figure on a real
/// phone photo. Runs go to --out/<method>-s<seed>; finished runs are reused, interrupted ones
/// resumed, so the command can be run again after an interruption.
///
/// Example: medseg-train bench-generalization --data phantom/
///   (same as --out runs/generalization --seeds 1,2,3 --epochs 2 --max-steps-per-epoch 60)
#[derive(clap::Args)]
pub struct Args {
    /// Methods to compare, comma separated [default: the five of JMedSeg's figure; aug-stn and
    /// aug-ssl are SAS less one part].
    #[arg(long, value_enum, value_delimiter = ',')]
    methods: Option<Vec<Method>>,
    /// Seeds; every method trains once per seed.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Markdown report to write.
    #[arg(long, default_value = "docs/GENERALIZATION.md")]
    report: PathBuf,
    /// Score at most this many test images per domain, evenly spaced (0 = all).
    #[arg(long, default_value_t = 100)]
    max_test_images: usize,
    /// A real phone photo of a slice on a screen to draw every method's prediction on (no
    /// label is needed; it is a picture, not a score) [default: JMedSeg's, from
    /// ../shared/reference/, when present].
    #[arg(long)]
    photo: Option<PathBuf>,
    /// The part of --photo to segment, x,y,width,height in its pixels [default: the
    /// 'Original' panel of JMedSeg's figure, above its caption].
    #[arg(long, default_value = "50,0,400,400")]
    photo_crop: Crop,
    /// Also score simulated other scanners (`synth --domain scanners`: contrast, field of
    /// view, resolution, noise), made from the source domain's test split when missing; on
    /// by itself for a data set with no test domain but the source and phone (e.g. a real
    /// single-scanner set).
    #[arg(long)]
    scanner_shifts: bool,
    /// Self-supervised pre-training epochs (SSL and SAS start from it).
    #[arg(long, default_value_t = 2)]
    pretrain_epochs: usize,
    /// Training settings shared by every method (--out is the folder of the runs; --stn,
    /// --init-from and --augment are set per method).
    #[command(flatten)]
    train: cmd_train::Args,
}

/// The benchmark's own defaults for flags it shares with `train`. The budget: five methods x
/// three seeds at `train`'s default (6 epochs of a whole split) would take about 8 hours on a
/// 2-core CPU; this one runs the whole benchmark in about 1.5 hours there
/// (docs/GENERALIZATION.md). Typed flags still win.
pub(crate) const BENCH_DEFAULTS: [(&str, &str); 4] = [
    ("epochs", "2"),
    ("max_steps_per_epoch", "60"),
    ("max_val_images", "100"),
    ("out", "runs/generalization"),
];

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let methods = args.methods.clone().unwrap_or_else(|| Method::ALL.to_vec());
    anyhow::ensure!(!methods.is_empty(), "--methods is empty");
    anyhow::ensure!(!args.seeds.is_empty(), "--seeds is empty");
    let data = args
        .train
        .data
        .clone()
        .context("bench-generalization needs --data")?;
    let mut domains_note = ensure_phone_domain(&data, args.train.domain.as_deref())?;
    if let Some(note) =
        ensure_scanner_domains(&data, args.train.domain.as_deref(), args.scanner_shifts)?
    {
        domains_note = format!("{domains_note}\n\n{note}");
    }
    let ds = Dataset::open(&data)?;
    let source_domain = args
        .train
        .domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    let root = args.train.out.clone();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let mut results: Vec<RunResult> = Vec::new();
    for &seed in &args.seeds {
        for &method in &methods {
            let result = run_one(&args, method, seed, &root)?;
            println!(
                "== {} seed {seed}: {}",
                method.name(),
                result
                    .scores
                    .iter()
                    .map(|s| format!("{} {:.4}", s.domain, s.dice))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
            results.push(result);
            // Rewritten after each model, so an interrupted bench still leaves a table.
            write_report(
                &args,
                &ds.name,
                &source_domain,
                &domains_note,
                &methods,
                &results,
                None,
                started,
            )?;
        }
    }
    let figure = draw_figure(&args, &results)?;
    write_report(
        &args,
        &ds.name,
        &source_domain,
        &domains_note,
        &methods,
        &results,
        figure.as_deref(),
        started,
    )?;
    println!("wrote {}", args.report.display());
    Ok(())
}

/// Trains (or resumes, or reuses) one method at one seed, exports it and scores it.
fn run_one(args: &Args, method: Method, seed: u64, root: &Path) -> anyhow::Result<RunResult> {
    let name = format!("{}-s{seed}", method.name());
    let out = root.join(&name);
    let onnx = root.join(format!("{name}.onnx"));
    let mut pretrain_seconds = 0.0;
    let mut train = args.train.clone();
    train.seed = seed;
    train.out = out.clone();
    train.stn = method.transforms();
    train.init_from = None;
    if method.pretrains() {
        let (dir, seconds) = ensure_pretrained(args, seed, root)?;
        train.init_from = Some(dir);
        pretrain_seconds = seconds;
    }
    configure_augmentation(&mut train, method);
    let dir = RunDir::new(&out);
    let epochs = train.epochs.unwrap_or(cmd_train::DEFAULT_EPOCHS);
    let done = dir.state().map(|s| s.epochs_done).unwrap_or(0);
    if done < epochs {
        train.resume = dir.has_progress();
        if train.resume {
            // A resumed run reads its settings from run.json; these were set per method.
            train.init_from = None;
        }
        println!("== {name}: training ({})", out.display());
        cmd_train::run(train)?;
        // A stale export of an earlier, shorter run must not be reused.
        let _ = std::fs::remove_file(&onnx);
    } else {
        println!("== {name}: reusing the finished run in {}", out.display());
    }
    let state = dir.state()?;
    let cfg = dir.config()?;
    anyhow::ensure!(
        cfg.seed == seed && cfg.architecture.stn.is_some() == method.transforms(),
        "{} holds a run with seed {} and transformer {}, not what method {} at seed {seed} needs; \
         use another --out",
        out.display(),
        cfg.seed,
        cfg.architecture.stn.is_some(),
        method.name()
    );
    // A reused run must have had this budget (and a transformer this penalty), or the table
    // would compare unequal runs.
    let t = &args.train;
    let penalty = |p: f32| if method.transforms() { p } else { 0.0 };
    let asked = (
        epochs,
        t.step_limit(),
        t.batch_size,
        t.lr,
        penalty(t.stn_penalty),
    );
    let had = (
        cfg.epochs,
        cfg.max_steps_per_epoch,
        cfg.batch_size,
        cfg.lr,
        penalty(cfg.stn_penalty),
    );
    anyhow::ensure!(
        asked == had,
        "{} was trained with (epochs, max steps, batch, lr, stn penalty) = {had:?}, not \
         {asked:?}; use another --out for a new budget",
        out.display()
    );
    let scores = if onnx.exists() {
        test_scores::from_card(&onnx)?
    } else {
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
        test_scores::from_card(&onnx)?
    };
    Ok(RunResult {
        method,
        seed,
        best_val_dice: state.best_dice,
        train_seconds: state.log.iter().map(|e| e.seconds).sum(),
        pretrain_seconds,
        onnx: onnx.display().to_string(),
        scores,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    args: &Args,
    dataset: &str,
    source_domain: &str,
    domains_note: &str,
    methods: &[Method],
    results: &[RunResult],
    figure: Option<&str>,
    started: Instant,
) -> anyhow::Result<()> {
    let t = &args.train;
    let budget = format!(
        "{} epoch(s){}, batch {}, {} px crops of {} px images, {} lr {} (poly {}); \
         self-supervised pre-training {} epoch(s)",
        t.epochs.unwrap_or(cmd_train::DEFAULT_EPOCHS),
        t.step_limit()
            .map_or(String::new(), |m| format!(" of at most {m} steps")),
        t.batch_size,
        t.crop_size,
        t.image_size,
        format!("{:?}", t.optimizer).to_lowercase(),
        t.lr,
        t.poly,
        args.pretrain_epochs,
    );
    let described: Vec<(Method, String)> = methods.iter().map(|&m| (m, describe(m, t))).collect();
    let command = crate::typed_command();
    let machine = machine_description();
    let md = render(
        &ReportContext {
            command: &command,
            dataset,
            budget: &budget,
            machine: &machine,
            methods: &described,
            derived_domains: domains_note,
            figure,
            wall_seconds: started.elapsed().as_secs_f64(),
        },
        results,
        source_domain,
    );
    write_markdown(&args.report, &md)
}

/// The real photo with every method's first-seed prediction, beside the report; `None`
/// when there is no photo to draw on.
fn draw_figure(args: &Args, results: &[RunResult]) -> anyhow::Result<Option<String>> {
    let photo = match &args.photo {
        Some(p) => p.clone(),
        None => {
            let default = PathBuf::from("../shared/reference/phone-photos-of-screen.jpg");
            if !default.exists() {
                println!("no --photo and no {}: no figure", default.display());
                return Ok(None);
            }
            default
        }
    };
    let source = photo.display().to_string();
    let img = figure::crop(&load_image(&photo)?, args.photo_crop, &source)?;
    let rgb = img.to_rgb8();
    let mut panels = vec![("phone photo".to_string(), rgb.clone())];
    for method in Method::EVERY {
        let Some(first) = results.iter().find(|r| r.method == method) else {
            continue;
        };
        let model = Segmenter::from_file(Path::new(&first.onnx))?;
        let seg = model
            .segment(&img)
            .with_context(|| format!("segmenting {source} with {}", first.onnx))?;
        panels.push((
            method.label().to_string(),
            medseg_trainer::panels::overlay(&rgb, &seg.prediction.mask),
        ));
    }
    let name = args
        .report
        .with_extension("png")
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "generalization.png".into());
    let path = args.report.with_file_name(&name);
    medseg_trainer::panels::write_grid(&panels, 3, &path)?;
    println!("wrote {}", path.display());
    Ok(Some(name))
}

/// What a method changes, for the report (the training flags it sets).
fn describe(method: Method, train: &cmd_train::Args) -> String {
    match method {
        Method::Baseline => format!(
            "the model as `train` makes it (`--augment {}`)",
            train.augment
        ),
        Method::Aug => format!(
            "`--augment {SAS_AUGMENT}`: the phone-capture simulator with its training settings on \
             half the samples, then affine, perspective and elastic warps, colour jitter and \
             temperature, gamma, blur, noise and JPEG (README, SAS)"
        ),
        Method::Stn => format!(
            "`--stn`: JMedSeg's spatial transformer in front of the model, logits warped back \
             onto the input, transform penalty {}",
            train.stn_penalty
        ),
        Method::Ssl => "`--init-from` a contrastive self-supervised pre-training run on the \
                        source domain's training images (no labels)"
            .into(),
        Method::Sas => "augmentation + STN + SSL together".into(),
        Method::AugStn => "augmentation + STN, trained from random weights (SAS less SSL)".into(),
        Method::AugSsl => "augmentation + SSL, no transformer (SAS less the STN)".into(),
    }
}

/// The augmentation methods train with SAS's pipeline; the others with `train`'s default.
fn configure_augmentation(train: &mut cmd_train::Args, method: Method) {
    if method.augments() {
        train.augment = SAS_AUGMENT.into();
    }
}

/// The `--augment` preset of the augmentation methods.
const SAS_AUGMENT: &str = "sas";

/// Makes the data set's phone-capture test domain when it has none (the default capture
/// settings, seed 42, from the training domain's test split) and says how it was made.
fn ensure_phone_domain(data: &Path, source_domain: Option<&str>) -> anyhow::Result<String> {
    let ds = Dataset::open(data)?;
    if !ds.domains.contains_key(phone::dataset::DOMAIN) {
        println!(
            "== {} has no '{}' domain: capturing its test split with the default settings",
            data.display(),
            phone::dataset::DOMAIN
        );
        let spec = PhoneDomainSpec {
            root: data.to_path_buf(),
            source_domain: source_domain.map(str::to_string),
            seed: 42,
            force: false,
            settings: PhoneCapture::default(),
        };
        write_phone_domain(&spec, &mut |_, _| {})
            .with_context(|| format!("writing the phone domain into {}", data.display()))?;
    }
    let splits: serde_json::Value = std::fs::read(data.join("splits.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let made = &splits["phone_capture"];
    Ok(format!(
        "Phone-capture domain: each test slice of `{}` captured once by the phone-capture simulator \
         (docs/PHONE_CAPTURE.md) at severity {}, seed {}, with a per-image seed salted so that \
         no training run draws it; training augmentation (the `aug` and `sas` methods) uses the \
         simulator's wider `training()` ranges with fresh seeds every step.",
        made["source_domain"].as_str().unwrap_or("?"),
        made["settings"]["severity"],
        made["seed"],
    ))
}

/// Makes the four simulated-scanner test domains when asked for, or when the data set has no
/// other test domain than its source and the phone captures (a single-scanner data set would
/// otherwise say nothing about other scanners); says how they were made.
fn ensure_scanner_domains(
    data: &Path,
    source_domain: Option<&str>,
    asked: bool,
) -> anyhow::Result<Option<String>> {
    let ds = Dataset::open(data)?;
    let source = source_domain.map_or_else(|| ds.default_domain().to_string(), str::to_string);
    let has_other = ds.domains.iter().any(|(name, splits)| {
        *name != source
            && name != phone::dataset::DOMAIN
            && !name.starts_with("scanner-")
            && splits.contains_key("test")
    });
    if !asked && has_other {
        return Ok(None);
    }
    let spec = DerivedSpec {
        root: data.to_path_buf(),
        source_domain: Some(source.clone()),
        seed: 42,
        force: false,
    };
    let mut lines = Vec::new();
    for shift in ScannerShift::ALL {
        if !ds.domains.contains_key(shift.domain()) {
            println!(
                "== {} has no '{}' domain: making it from the test split of '{source}'",
                data.display(),
                shift.domain()
            );
            write_derived_domain(&spec, &shift, &mut |_, _| {}).with_context(|| {
                format!(
                    "writing the {} domain into {}",
                    shift.domain(),
                    data.display()
                )
            })?;
        }
        lines.push(format!("`{}` ({})", shift.domain(), shift.describe()));
    }
    Ok(Some(format!(
        "Simulated other scanners (trainer/src/scanner_shift.rs; `synth --domain scanners`), \
         each test slice of `{source}` once, seed 42, a salted per-image seed: {}. Training \
         augmentation never applies these shifts as such (`strong` has gamma, blur and noise \
         of its own, milder).",
        lines.join("; ")
    )))
}

/// The seed's self-supervised pre-training run (`--out/pretrain-s<seed>`), made on the
/// source domain's training images (no labels) when it is not there finished; its seconds.
/// Every run of that seed that needs pre-training starts from the same one.
fn ensure_pretrained(args: &Args, seed: u64, root: &Path) -> anyhow::Result<(PathBuf, f64)> {
    let out = root.join(format!("pretrain-s{seed}"));
    let dir = RunDir::new(&out);
    let finished = dir
        .state()
        .is_ok_and(|s| s.epochs_done >= args.pretrain_epochs);
    if !finished {
        if dir.has_progress() {
            // Pre-training has no --resume: an interrupted one starts again.
            println!(
                "== {}: interrupted pre-training, starting it again",
                out.display()
            );
            std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
        }
        let t = &args.train;
        let data = t
            .data
            .clone()
            .context("bench-generalization needs --data")?;
        // The pre-trained model must have the data set's classes, or `train --init-from`
        // refuses it (the classes come from the probe's data set otherwise, and there is none).
        let classes = Dataset::open(&data)?.classes;
        let mut pre = cmd_pretrain::Args::defaults(data, out.clone());
        pre.classes = Some(classes);
        pre.domain = t.domain.clone();
        pre.split = Some("train".into());
        pre.model = t.model.clone();
        pre.model_opts = t.model_opts.clone();
        pre.epochs = args.pretrain_epochs;
        pre.max_steps_per_epoch = t.step_limit();
        pre.batch_size = t.batch_size;
        pre.image_size = t.image_size;
        pre.crop_size = t.crop_size;
        pre.seed = seed;
        // No k-NN probe here: on the whole source split it took longer than the pre-training
        // (two networks over ~2000 images); `medseg-train pretrain --probe-data` runs it.
        pre.probe_data = None;
        println!(
            "== pretrain-s{seed}: contrastive pre-training ({})",
            out.display()
        );
        cmd_pretrain::run(pre)?;
    }
    // A reused pre-training must be the one this code would make: the momentum default
    // changed (0.999 -> 0.99) after runs were made with the old one.
    let expected = cmd_pretrain::DEFAULT_MOMENTUM;
    let made = PretrainConfig::read(&out).and_then(|c| c.momentum);
    if let Some(m) = made.filter(|m| (m - expected).abs() > 1e-6) {
        anyhow::bail!(
            "{} was pre-trained with key-encoder momentum {m}, not {expected}; remove it (and \
             the ssl-s{seed} and sas-s{seed} runs made from it) or use another --out",
            out.display()
        );
    }
    let state = dir.state()?;
    Ok((out, state.log.iter().map(|e| e.seconds).sum()))
}
