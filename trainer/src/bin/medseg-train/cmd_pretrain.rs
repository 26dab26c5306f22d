use std::path::PathBuf;

use anyhow::{Context, bail, ensure};

use medseg_models::Architecture;
use medseg_models::network::ENCODER_TAP;
use medseg_runtime::InputSpec;
use medseg_runtime::dataset::Dataset;
use medseg_trainer::backend;
use medseg_trainer::pretrain::probe::{ProbeData, ProbeResult, probe_run};
use medseg_trainer::pretrain::{
    PretrainConfig, pretrain, pretrain_config_path, pretrain_views_augment,
};
use medseg_trainer::source::Unlabelled;
use medseg_trainer::train::{OptimizerKind, RunConfig, RunDir};

/// The key encoder's default momentum (see `--momentum`).
pub(crate) const DEFAULT_MOMENTUM: f32 = 0.99;

/// Contrastive self-supervised pre-training of a model's encoder on unlabelled images (MoCo v2
/// with a momentum key encoder; JMedSeg's shared encoder with --shared-encoder). The run
/// folder loads with `medseg-train train --init-from RUN` (whole model; the decoder is
/// untouched). With --probe-data, a k-NN probe compares the learned features with random
/// ones (probe.json). See docs/SSL.md.
///
/// Example: medseg-train pretrain --data phantom/xh/images --model unet --out runs/ssl --probe-data phantom
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Folder of images, searched recursively (a data set's masks/ and labels/ are skipped);
    /// with --split, a data set whose split's images are used (labels ignored).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// With --split: the data set's domain [default: its training domain].
    #[arg(long, requires = "split")]
    pub(crate) domain: Option<String>,
    /// Learn from this split of the data set in --data only (e.g. train: no test image of any
    /// domain is seen, as a benchmark of unseen domains needs).
    #[arg(long)]
    pub(crate) split: Option<String>,
    /// Architecture (`medseg-train models` lists them).
    #[arg(long, default_value = "unet")]
    pub(crate) model: String,
    /// An architecture option, KEY=VALUE, repeatable; use the same ones for `train --init-from`.
    #[arg(long = "model-opt", value_name = "KEY=VALUE")]
    pub(crate) model_opts: Vec<String>,
    /// Run folder (the layout of a training run).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The tap the features come from (every architecture offers "encoder"; UNet-family
    /// encoders also offer level1..levelN).
    #[arg(long, default_value = ENCODER_TAP)]
    layer: String,
    /// Embedding dimension of the projection head.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// InfoNCE temperature.
    #[arg(long, default_value_t = 0.07)]
    temperature: f32,
    /// Number of negative keys in the queue.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Key encoder momentum (MoCo's EMA). MoCo's 0.999 suits its 200 epochs of 5000 steps; in
    /// runs of hundreds of steps it leaves the key encoder close to its random start (0.999^120
    /// = 0.89), and measured here pre-training then learned nothing (docs/SSL.md). In MoCo's
    /// own momentum ablation 0.99 is about a point below 0.999.
    #[arg(long, default_value_t = DEFAULT_MOMENTUM)]
    pub(crate) momentum: f32,
    /// JMedSeg's variant: one network encodes both views, gradients through both, no
    /// momentum encoder (--momentum is ignored).
    #[arg(long)]
    shared_encoder: bool,
    /// Adam learning rate [JMedSeg: 1e-5, which barely moves a network in a short run].
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 8)]
    pub(crate) batch_size: usize,
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Side of the model input: images are resized to it.
    #[arg(long, default_value_t = 128)]
    pub(crate) image_size: usize,
    /// Random square crops of this side from each view (0 = whole images).
    #[arg(long, default_value_t = 96)]
    pub(crate) crop_size: usize,
    /// Input channels (1 gray, 3 RGB).
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Class names of the segmentation model to be fine-tuned, comma separated; must match the
    /// data set `train --init-from` will use [default: the classes of --probe-data, else
    /// background,foreground].
    #[arg(long, value_delimiter = ',')]
    pub(crate) classes: Option<Vec<String>>,
    /// Stop each epoch after this many steps (quick trials; 0 = no limit).
    #[arg(long)]
    pub(crate) max_steps_per_epoch: Option<usize>,
    /// Stop after the last epoch that fits in this many minutes.
    #[arg(long, value_name = "MINUTES")]
    time_budget: Option<f64>,
    /// A labelled data set for the k-NN probe (train split = reference, test split = queries).
    #[arg(long)]
    pub(crate) probe_data: Option<PathBuf>,
    /// Domain of --probe-data [default: its first].
    #[arg(long)]
    probe_domain: Option<String>,
    /// Neighbours in the k-NN vote.
    #[arg(long, default_value_t = 5)]
    probe_k: usize,
    /// At most this many reference (train) and query (test) images in the probe, spread
    /// evenly over each split (0 = all; a whole phantom split takes long on a CPU).
    #[arg(long, default_value_t = 400)]
    probe_max_images: usize,
}

impl Args {
    /// Every flag at its default, for commands that run a pre-training of their own.
    pub(crate) fn defaults(data: PathBuf, out: PathBuf) -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: Args,
        }
        let (data, out) = (data.display().to_string(), out.display().to_string());
        <Only as clap::Parser>::try_parse_from(["pretrain", "--data", &data, "--out", &out])
            .expect("--data and --out are the only required flags")
            .args
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = RunDir::new(&args.out);
    if dir.has_progress() {
        bail!(
            "{} already holds a run; choose another --out (pretrain has no --resume)",
            args.out.display()
        );
    }
    ensure!(
        [1, 3].contains(&args.channels),
        "--channels {}: expected 1 or 3",
        args.channels
    );
    ensure!(
        args.temperature > 0.0 && args.temperature.is_finite(),
        "--temperature {}: expected > 0",
        args.temperature
    );
    ensure!(
        (0.0..=1.0).contains(&args.momentum),
        "--momentum {}: expected 0..=1",
        args.momentum
    );
    ensure!(
        args.queue > 0 && args.dim > 0 && args.batch_size >= 2 && args.epochs > 0,
        "--queue, --dim and --epochs must be at least 1, --batch-size at least 2"
    );
    let probe_ds = args
        .probe_data
        .as_ref()
        .map(|p| Dataset::open(p))
        .transpose()?;
    let classes = match (&args.classes, &probe_ds) {
        (Some(c), _) => c.clone(),
        (None, Some(ds)) => ds.classes.clone(),
        (None, None) => vec!["background".into(), "foreground".into()],
    };
    ensure!(classes.len() >= 2, "--classes: at least two");
    let mut arch = Architecture::by_name(&args.model, args.channels, classes.len())?;
    for opt in &args.model_opts {
        let (key, value) = opt.split_once('=').with_context(|| {
            format!("--model-opt {opt}: expected KEY=VALUE, e.g. base_width=32")
        })?;
        arch.set_option(key.trim(), value.trim())
            .with_context(|| format!("--model {}", args.model))?;
    }
    arch.validate()?;
    let m = arch.size_multiple();
    ensure!(
        args.image_size > 0
            && args.image_size.is_multiple_of(m)
            && args.crop_size.is_multiple_of(m),
        "--image-size {} and --crop-size {} must be multiples of {m} for this architecture",
        args.image_size,
        args.crop_size
    );
    let input = InputSpec::square(args.channels, args.image_size, false);
    let mut source = match &args.split {
        None => Unlabelled::from_folder(&args.data, &input)?,
        Some(split) => {
            let ds = Dataset::open(&args.data)?;
            let samples = ds.split(args.domain.as_deref(), split)?;
            Unlabelled::from_files(samples.iter().map(|s| s.image.clone()).collect(), &input)
                .with_context(|| format!("--data {} --split {split}", args.data.display()))?
        }
    };
    source.views = 2;
    source.augment = pretrain_views_augment();
    if args.crop_size > 0 && args.crop_size < args.image_size {
        source.crop = args.crop_size;
    }
    let cfg = RunConfig {
        data: std::fs::canonicalize(&args.data).unwrap_or_else(|_| args.data.clone()),
        domain: "unlabelled".into(),
        dataset_name: args
            .data
            .file_name()
            .map_or("images".into(), |n| n.to_string_lossy().into_owned()),
        dataset_hash: String::new(),
        dataset_images: source.files.len(),
        classes,
        architecture: arch,
        input: input.clone(),
        augment: source.augment.clone(),
        init_from: None,
        init_modules: Vec::new(),
        pretrained_backbone: None,
        freeze: Vec::new(),
        aux_weight: 1.0,
        stn_penalty: 0.0,
        weight_decay: 0.0,
        crop_size: (source.crop < args.image_size).then_some(source.crop),
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: OptimizerKind::Adam,
        poly_power: None,
        class_weights: None,
        loss: "infonce".into(),
        seed: args.seed,
        max_steps_per_epoch: args.max_steps_per_epoch.filter(|&m| m > 0),
        fixed_batch: false,
        time_budget_minutes: args.time_budget,
        command: crate::typed_command(),
        backend: backend::NAME.into(),
    };
    let pre = PretrainConfig {
        layer: args.layer.clone(),
        dim: args.dim,
        temperature: args.temperature,
        queue: args.queue,
        momentum: (!args.shared_encoder).then_some(args.momentum),
        augment: source.augment.clone(),
        probe_data: args.probe_data.clone(),
        probe_k: args.probe_k,
    };
    dir.write_config(&cfg)?;
    std::fs::write(
        pretrain_config_path(&args.out),
        serde_json::to_vec_pretty(&pre)?,
    )?;
    println!(
        "pre-training {} ({} tap) on {} images of {} ({}), {} on {}",
        cfg.architecture.name(),
        pre.layer,
        source.files.len(),
        args.data.display(),
        if args.shared_encoder {
            "shared encoder"
        } else {
            "momentum encoder"
        },
        format_args!("InfoNCE T {} queue {}", pre.temperature, pre.queue),
        backend::NAME
    );
    let device = backend::device();
    let (_net, losses) = pretrain::<backend::Train>(&dir, &cfg, &pre, &source, &device)?;
    if let (Some(first), Some(last)) = (losses.first(), losses.last()) {
        println!(
            "InfoNCE: first step {first:.4}, last step {last:.4} ({} steps); run in {}",
            losses.len(),
            args.out.display()
        );
    }
    if let Some(path) = &args.probe_data {
        let probe = ProbeData {
            data: path,
            domain: args.probe_domain.as_deref(),
            max_images: args.probe_max_images,
            k: args.probe_k,
        };
        let result = probe_run::<backend::Inner>(&dir, &pre.layer, &probe, &device)?;
        write_probe(&args.out, &result)?;
    }
    Ok(())
}

/// Writes RUN/probe.json and prints the probe's line.
pub(crate) fn write_probe(out: &std::path::Path, result: &ProbeResult) -> anyhow::Result<()> {
    let path = out.join("probe.json");
    std::fs::write(&path, serde_json::to_vec_pretty(result)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("{}; written to {}", result.summary(), path.display());
    Ok(())
}
