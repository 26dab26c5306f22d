use std::path::PathBuf;

use anyhow::{Context, bail, ensure};

use medseg_models::Architecture;
use medseg_runtime::InputSpec;
use medseg_runtime::dataset::Dataset;
use medseg_trainer::augment::{Legacy, Pipeline};
use medseg_trainer::backend;
use medseg_trainer::data::{evenly_spaced, load_split};
use medseg_trainer::losses::LossSpec;
use medseg_trainer::pretrained_backbone;
use medseg_trainer::train::{OptimizerKind, RunConfig, RunDir, TrainData, train};

/// Train a segmentation model (CPU by default; build with --features cuda or cuda-autotune for
/// NVIDIA GPUs).
///
/// Example: medseg-train train --data phantom/ --model unet --out runs/unet
#[derive(clap::Args, Clone)]
pub struct Args {
    /// Data set folder (splits.json or JMedSeg layout); a resumed run reads it from run.json.
    #[arg(long, required_unless_present = "resume")]
    pub(crate) data: Option<PathBuf>,
    /// Domain to train on (default: the data set's first).
    #[arg(long)]
    pub(crate) domain: Option<String>,
    /// Architecture (`medseg-train models` lists them).
    #[arg(long, default_value = "unet")]
    pub(crate) model: String,
    /// An architecture option, KEY=VALUE, repeatable (`medseg-train models` lists each
    /// architecture's options and defaults), e.g. --model-opt base_width=32 --model-opt depth=5.
    #[arg(long = "model-opt", value_name = "KEY=VALUE")]
    pub(crate) model_opts: Vec<String>,
    /// Scale every channel width of the architecture by this factor, after --model-opt (0.25:
    /// a quarter of each width), e.g. to compare architectures at one reduced size.
    #[arg(long, value_name = "FACTOR")]
    pub(crate) width_scale: Option<f64>,
    /// Run folder: checkpoints, log.csv, curves.png.
    #[arg(long, default_value = "runs/unet")]
    pub(crate) out: PathBuf,
    /// Passes over the training split [default: 6, which fits in 30 minutes on a 2-core CPU].
    /// With --resume, extends the run to this many epochs.
    #[arg(long)]
    pub(crate) epochs: Option<usize>,
    #[arg(long, default_value_t = 8)]
    pub(crate) batch_size: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub(crate) lr: f64,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub(crate) optimizer: OptimizerKind,
    /// Poly learning-rate decay power (0 = constant rate).
    #[arg(long, default_value_t = 0.9)]
    pub(crate) poly: f64,
    /// Side of the (square) model input in pixels; images are resized to it.
    #[arg(long, default_value_t = 256)]
    pub(crate) image_size: usize,
    /// Train on random square patches of this side (half centred on the label); 0 = whole
    /// images. Inference always sees the whole image.
    #[arg(long, default_value_t = 128)]
    pub(crate) crop_size: usize,
    /// Per-class cross-entropy weights, comma separated (e.g. 0.4,1.6).
    #[arg(long, value_delimiter = ',', conflicts_with = "pos_weight")]
    pub(crate) class_weights: Option<Vec<f32>>,
    /// Two-class shortcut of JMedSeg's `-w`: foreground weight W, background 2 - W (0 < W < 2).
    #[arg(long)]
    pub(crate) pos_weight: Option<f32>,
    /// Loss: ce, dice, iou, focal, tversky, or a weighted sum like 0.5ce+0.5dice; parameters
    /// in brackets: focal(gamma=2,alpha=0.25), dice(background=include,smooth=1),
    /// iou(background=include), tversky(alpha=0.3,beta=0.7).
    #[arg(long, default_value = "0.5ce+0.5dice")]
    pub(crate) loss: String,
    /// Input channels: 1 reads images as gray, 3 as RGB [default: 3 for a data set imported
    /// with --stack-neighbours (each slice between its two neighbours), else 1].
    #[arg(long)]
    pub(crate) channels: Option<usize>,
    /// Same as --model-opt base_width=N (kept from before the model zoo).
    #[arg(long)]
    pub(crate) base_width: Option<usize>,
    /// Same as --model-opt depth=N.
    #[arg(long)]
    pub(crate) depth: Option<usize>,
    /// Same as --model-opt upsampling=transposed|bilinear.
    #[arg(long, value_enum)]
    pub(crate) upsampling: Option<UpsamplingArg>,
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Augmentation pipeline: a preset (none; basic = flip + intensity jitter; jmedseg =
    /// JMedSeg's colour jitter + blur; strong = colour, geometry incl. perspective and
    /// elastic, noise, blur, JPEG) or a .toml pipeline file (docs/AUGMENTATION.md). The
    /// resolved pipeline is stored in run.json. Preview it with `medseg-train augment-preview`.
    #[arg(long, default_value = "basic", value_name = "PRESET_OR_FILE")]
    pub(crate) augment: String,
    /// Geometric augmentation: random rotation in ± this many degrees (0 = none); adds an
    /// affine step to --augment.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rotate: f32,
    /// Geometric augmentation: random isotropic scale in 1 ± this (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) zoom: f32,
    /// Geometric augmentation: random shift up to ± this fraction of the side (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) shift: f32,
    /// MR intensity augmentation: gamma with exponent in [1/(1+G), 1+G] on each sample's own
    /// range (0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) gamma: f32,
    /// MR intensity augmentation: Gaussian blur of half the samples, sigma up to this many
    /// pixels (0 = none). --rotate/--zoom/--shift/--gamma/--blur add their steps to --augment
    /// (with the default `basic`, in the places and draw order they always had).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) blur: f32,
    /// Stop each epoch after this many steps (quick trials; 0 = no limit).
    #[arg(long)]
    pub(crate) max_steps_per_epoch: Option<usize>,
    /// Validate each epoch on at most this many images, evenly spaced over the split so every
    /// patient counts (0 = all).
    #[arg(long, default_value_t = 200)]
    pub(crate) max_val_images: usize,
    /// Start from another run's best checkpoint (fine-tuning with new settings); that run must
    /// have the same architecture and classes.
    #[arg(long, conflicts_with = "resume")]
    pub(crate) init_from: Option<PathBuf>,
    /// Initialise a sub-module from another run's best checkpoint, of any architecture whose
    /// sub-module has the same shapes: PATH=RUN, e.g. stem=runs/unet (module paths as
    /// `stem.first.conv.weight`; a prefix takes everything under it). Repeatable.
    #[arg(
        long = "init-module",
        value_name = "PATH=RUN",
        conflicts_with = "resume"
    )]
    pub(crate) init_modules: Vec<String>,
    /// Start the architecture's backbone from a torchvision ResNet or VGG checkpoint: a state
    /// dict saved by torch.save (.pt/.pth) or as .safetensors, e.g. ImageNet weights from
    /// torchvision.models.resnet34(weights="IMAGENET1K_V1").state_dict(). The backbone must
    /// have the file's depth and widths; an RGB first convolution is summed for gray input.
    /// Without it every backbone starts from random weights. `medseg-train models` names the
    /// checkpoint each member takes.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["resume", "init_from"]
    )]
    pub(crate) pretrained_backbone: Option<PathBuf>,
    /// Do not train the parameters under this module path prefix (e.g. stem, down.0).
    /// Repeatable.
    #[arg(long, value_name = "PATH")]
    pub(crate) freeze: Vec<String>,
    /// Weight of each deep-supervision side output's loss (architectures with side outputs).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) aux_weight: f32,
    /// Put a spatial transformer in front of the model (JMedSeg's localisation net, starting
    /// at the identity; the logits are warped back onto the input's pixels).
    #[arg(long)]
    pub(crate) stn: bool,
    /// With --stn: leave the logits in the transformed frame, as JMedSeg does.
    #[arg(long, requires = "stn")]
    pub(crate) stn_no_unwarp: bool,
    /// With --stn: weight of the penalty mean((theta - identity)^2) on the transform (0:
    /// free). With the logits warped back, nothing else holds the transform: left free, it
    /// drifted to a 3x zoom-out that costs resolution (docs/GENERALIZATION_3X.md).
    // Not `requires = "stn"`: bench-generalization shares these flags and sets --stn per
    // method; `train` refuses a typed --stn-penalty without --stn itself (main.rs).
    #[arg(long, default_value_t = DEFAULT_STN_PENALTY)]
    pub(crate) stn_penalty: f32,
    /// Decoupled weight decay for --optimizer adamw.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) weight_decay: f32,
    /// Every batch the same size: drop the last incomplete training batch, pad the last
    /// validation batch. Spares a cuda-autotune build a second round of kernel tuning.
    #[arg(long)]
    pub(crate) fixed_batch: bool,
    /// Stop at the last epoch that fits in this many minutes, with the poly schedule fitted
    /// to it (re-estimated after every epoch); --epochs stays the upper bound. With --resume,
    /// counts from the restart.
    #[arg(long, value_name = "MINUTES")]
    pub(crate) time_budget: Option<f64>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
}

pub(crate) const DEFAULT_EPOCHS: usize = 6;
/// `--stn-penalty`'s default: with it, aug + STN matched augmentation alone (3 seeds, 3x
/// budget: phone 0.958 against 0.953, xh 0.975 against 0.972); without it, seed 1 fell to
/// 0.874 / 0.925 (docs/GENERALIZATION_3X.md).
pub(crate) const DEFAULT_STN_PENALTY: f32 = 1.0;

/// The flags a resumed run reads (`--data` only to check it is the run's); it takes every
/// other setting from its run.json.
pub(crate) const READ_ON_RESUME: &[&str] = &[
    "out",
    "resume",
    "epochs",
    "time_budget",
    "max_val_images",
    "data",
];

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum UpsamplingArg {
    Transposed,
    Bilinear,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = RunDir::new(&args.out);
    let cfg = if args.resume {
        let mut cfg = dir.config().context("--resume: no run to continue")?;
        if let Some(data) = &args.data {
            let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
            ensure!(
                canonical(data) == canonical(&cfg.data),
                "--data {}: the run in {} was trained on {}, and --resume keeps its data set",
                data.display(),
                args.out.display(),
                cfg.data.display()
            );
        }
        if let Some(epochs) = args.epochs {
            cfg.epochs = epochs;
        }
        if args.time_budget.is_some() {
            cfg.time_budget_minutes = checked_budget(args.time_budget)?;
        }
        cfg
    } else {
        if dir.has_progress() {
            bail!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                args.out.display()
            );
        }
        new_config(&args)?
    };
    let ds = Dataset::open(&cfg.data)?;
    let train_samples = ds.split(Some(&cfg.domain), "train")?;
    let val_samples = ds.split(Some(&cfg.domain), "val")?;
    let val_samples = evenly_spaced(val_samples, args.max_val_images);
    let n = cfg.classes.len();
    let data = TrainData {
        train: load_split(train_samples, n, &cfg.input, false, "train")?,
        val: load_split(&val_samples, n, &cfg.input, true, "val")?,
    };
    // Written only once the data has loaded, so a bad data set leaves no half-made run behind.
    dir.write_config(&cfg)?;
    println!(
        "training {} on {} ({} train / {} val images, {}x{}) with {} on {}",
        cfg.architecture.name(),
        ds.name,
        data.train.len(),
        data.val.len(),
        cfg.input.width,
        cfg.input.height,
        cfg.loss,
        backend::NAME
    );
    if let Some(file) = cfg.pretrained_backbone.as_ref().filter(|_| !args.resume) {
        println!(
            "backbone weights from {} (-v says what was loaded)",
            file.display()
        );
    }
    let state = train::<backend::Train>(&dir, &data, args.resume, &backend::device())?;
    println!(
        "best val Dice {:.4} at epoch {}; checkpoints in {}",
        state.best_dice,
        state.best_epoch,
        args.out.display()
    );
    Ok(())
}

fn checked_budget(minutes: Option<f64>) -> anyhow::Result<Option<f64>> {
    match minutes {
        Some(m) if !(m.is_finite() && m > 0.0) => {
            bail!("--time-budget {m}: expected a positive number of minutes")
        }
        m => Ok(m),
    }
}

impl Args {
    /// `--max-steps-per-epoch` as the run stores it (0 = no limit = none).
    pub(crate) fn step_limit(&self) -> Option<usize> {
        self.max_steps_per_epoch.filter(|&m| m > 0)
    }
}

pub(crate) fn new_config(args: &Args) -> anyhow::Result<RunConfig> {
    let data = args
        .data
        .as_ref()
        .context("--data is required for a new run")?;
    let ds = Dataset::open(data)?;
    let domain = args
        .domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    let loss: LossSpec = args.loss.parse()?;
    let channels = args
        .channels
        .unwrap_or(if ds.stacked_neighbours { 3 } else { 1 });
    if ![1, 3].contains(&channels) {
        bail!("--channels {channels}: expected 1 (gray) or 3 (RGB)");
    }
    ds.check_input_channels(channels, "this run")?;
    let mut arch = Architecture::by_name(&args.model, channels, ds.classes.len())?;
    let legacy = [
        args.base_width.map(|w| format!("base_width={w}")),
        args.depth.map(|d| format!("depth={d}")),
        args.upsampling.map(|u| match u {
            UpsamplingArg::Transposed => "upsampling=transposed".to_string(),
            UpsamplingArg::Bilinear => "upsampling=bilinear".to_string(),
        }),
    ];
    for opt in legacy
        .into_iter()
        .flatten()
        .chain(args.model_opts.iter().cloned())
    {
        let (key, value) = opt.split_once('=').with_context(|| {
            format!("--model-opt {opt}: expected KEY=VALUE, e.g. base_width=32")
        })?;
        arch.set_option(key.trim(), value.trim())
            .with_context(|| format!("--model {}", args.model))?;
    }
    if let Some(scale) = args.width_scale {
        arch.scale_widths(scale)
            .with_context(|| format!("--width-scale {scale} for --model {}", args.model))?;
    }
    if args.stn {
        arch = arch.with_stn(medseg_models::StnConfig {
            unwarp: !args.stn_no_unwarp,
            ..Default::default()
        });
    }
    if !(args.stn_penalty.is_finite() && args.stn_penalty >= 0.0) {
        bail!("--stn-penalty {}: expected a number >= 0", args.stn_penalty);
    }
    arch.validate()?;
    if args.image_size == 0 || !args.image_size.is_multiple_of(arch.size_multiple()) {
        bail!(
            "--image-size {} must be a positive multiple of {} for this architecture",
            args.image_size,
            arch.size_multiple()
        );
    }
    if !args.crop_size.is_multiple_of(arch.size_multiple()) {
        bail!(
            "--crop-size {} must be a multiple of {}",
            args.crop_size,
            arch.size_multiple()
        );
    }
    let class_weights = match args.pos_weight {
        Some(w) if ds.classes.len() != 2 || !(w > 0.0 && w < 2.0) => bail!(
            "--pos-weight {w}: needs a two-class data set and 0 < W < 2 (background gets 2 - W)"
        ),
        Some(w) => Some(vec![2.0 - w, w]),
        None => args.class_weights.clone(),
    };
    if let Some(w) = &class_weights
        && w.len() != ds.classes.len()
    {
        bail!(
            "--class-weights has {} values but the data set has {} classes",
            w.len(),
            ds.classes.len()
        );
    }
    if !(0.0..=180.0).contains(&args.rotate)
        || !(0.0..1.0).contains(&args.zoom)
        || !(0.0..=0.5).contains(&args.shift)
    {
        bail!(
            "--rotate {} / --zoom {} / --shift {}: expected 0..=180 degrees, 0 <= zoom < 1, 0..=0.5 of the side",
            args.rotate,
            args.zoom,
            args.shift
        );
    }
    if !(0.0..=2.0).contains(&args.gamma) || !(0.0..=5.0).contains(&args.blur) {
        bail!(
            "--gamma {} / --blur {}: expected 0..=2 (exponent range 1/(1+G)..1+G) and 0..=5 pixels",
            args.gamma,
            args.blur
        );
    }
    let augment = augment_pipeline(args)?;
    if let Some(source) = &args.init_from {
        let from = RunDir::new(source)
            .config()
            .with_context(|| format!("--init-from {}: not a training run", source.display()))?;
        // A single-slice model may start a 3-channel (stacked neighbours) one: it is widened.
        let widens = from.architecture.in_channels() == 1 && arch.in_channels() == 3;
        // A model without a transformer may start one with (it gets a fresh one).
        let mut source_arch = from.architecture.with_in_channels(arch.in_channels());
        if source_arch.stn.is_none() {
            source_arch.stn = arch.stn.clone();
        }
        let same = source_arch == arch;
        let same_channels = from.architecture.in_channels() == arch.in_channels();
        if !(same && (same_channels || widens)) || from.classes != ds.classes {
            bail!(
                "--init-from {}: its model is {:?} for classes {:?}, this run's is {:?} for {:?}; \
                 match --model/--model-opt/--channels (1 to 3 is allowed) \
                 and the data set's classes",
                source.display(),
                from.architecture,
                from.classes,
                arch,
                ds.classes
            );
        }
    }
    if let Some(file) = &args.pretrained_backbone {
        // Refused before the data loads; whether the file fits the backbone is checked when
        // training starts, before any step.
        if arch.torchvision_backbone().is_none() {
            return Err(pretrained_backbone::PretrainedError::NoBackbone {
                arch: arch.name().to_string(),
            })
            .context("--pretrained-backbone");
        }
        pretrained_backbone::sniff(file).context("--pretrained-backbone")?;
    }
    if args.batch_size == 0 || args.epochs == Some(0) {
        bail!("--batch-size and --epochs must be at least 1");
    }
    Ok(RunConfig {
        data: std::fs::canonicalize(data).unwrap_or_else(|_| data.clone()),
        domain,
        dataset_name: ds.name.clone(),
        dataset_hash: ds.hash.clone(),
        dataset_images: ds.image_count(),
        classes: ds.classes.clone(),
        architecture: arch,
        input: InputSpec::square(channels, args.image_size, ds.stacked_neighbours),
        augment,
        init_from: args
            .init_from
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        init_modules: args
            .init_modules
            .iter()
            .map(|m| {
                let (path, run) = m.split_once('=').with_context(|| {
                    format!("--init-module {m}: expected PATH=RUN, e.g. stem=runs/unet")
                })?;
                let run = PathBuf::from(run);
                Ok((path.to_string(), std::fs::canonicalize(&run).unwrap_or(run)))
            })
            .collect::<anyhow::Result<_>>()?,
        pretrained_backbone: args
            .pretrained_backbone
            .as_ref()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        freeze: args.freeze.clone(),
        aux_weight: args.aux_weight,
        stn_penalty: args.stn_penalty,
        weight_decay: args.weight_decay,
        crop_size: (args.crop_size > 0 && args.crop_size < args.image_size)
            .then_some(args.crop_size),
        epochs: args.epochs.unwrap_or(DEFAULT_EPOCHS),
        batch_size: args.batch_size,
        lr: args.lr,
        optimizer: args.optimizer,
        poly_power: (args.poly > 0.0).then_some(args.poly),
        class_weights,
        loss: loss.to_string(),
        seed: args.seed,
        max_steps_per_epoch: args.step_limit(),
        fixed_batch: args.fixed_batch,
        time_budget_minutes: checked_budget(args.time_budget)?,
        command: crate::typed_command(),
        backend: backend::NAME.into(),
    })
}

/// `--augment` with the older flags folded in. With `basic` the old flags go where they always
/// were (the pipeline an old run.json with these settings loads as); with any other pipeline
/// their steps are appended.
pub(crate) fn augment_pipeline(args: &Args) -> anyhow::Result<Pipeline> {
    let legacy = Legacy {
        rotate_degrees: args.rotate,
        zoom: args.zoom,
        shift: args.shift,
        gamma: args.gamma,
        blur: args.blur,
        ..Legacy::default()
    };
    let pipeline = if args.augment == "basic" {
        Pipeline::from(legacy)
    } else {
        let mut p = Pipeline::from_arg(&args.augment)?;
        let extra = [legacy.affine(), legacy.gamma_step(), legacy.blur_step()];
        p.steps.extend(extra.into_iter().flatten());
        p
    };
    pipeline.validate()?;
    Ok(pipeline)
}
