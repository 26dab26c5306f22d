//! The training loop: batches, loss, optimizer step, per-epoch validation and checkpoints.

mod budget;
pub mod module_paths;
mod run;
pub mod validate;

pub use run::{CheckpointRecorder, OptimizerKind, RunConfig, RunDir, RunState};

use std::time::Instant;

use anyhow::Context;
use burn::module::AutodiffModule;
use burn::optim::{
    AdamConfig, AdamWConfig, GradientsParams, Optimizer, SgdConfig, momentum::MomentumConfig,
};
use burn::record::Recorder;
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use medseg_models::SegModel;

use crate::data::LoadedSplit;
use crate::losses::{CompoundLoss, LossSpec};
use crate::objective::{Objective, Supervised};
use crate::plot::EpochLog;
use crate::prefetch::Prefetch;
use crate::source::{DataSource, Labelled};
use budget::TimeBudget;

/// Batches prepared ahead of the step: two keep the step fed when one batch takes longer
/// than a step, without holding many batches of images in memory.
pub const PREFETCH_BATCHES: usize = 2;

/// The data a run trains and validates on.
pub struct TrainData {
    pub train: LoadedSplit,
    pub val: LoadedSplit,
}

/// Trains (or resumes) the run in `dir` according to its run.json.
pub fn train<B: AutodiffBackend>(
    dir: &RunDir,
    data: &TrainData,
    resume: bool,
    device: &B::Device,
) -> anyhow::Result<RunState> {
    let cfg = dir.config()?;
    match cfg.optimizer {
        OptimizerKind::Adam => {
            let optim = AdamConfig::new()
                .with_epsilon(1e-8)
                .init::<B, SegModel<B>>();
            train_with(dir, &cfg, data, resume, optim, device)
        }
        OptimizerKind::Adamw => {
            let optim = AdamWConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(cfg.weight_decay)
                .init::<B, SegModel<B>>();
            train_with(dir, &cfg, data, resume, optim, device)
        }
        OptimizerKind::Sgd => {
            let optim = SgdConfig::new()
                .with_momentum(Some(MomentumConfig::new().with_momentum(0.9)))
                .init::<B, SegModel<B>>();
            train_with(dir, &cfg, data, resume, optim, device)
        }
    }
}

fn train_with<B: AutodiffBackend, O: Optimizer<SegModel<B>, B>>(
    dir: &RunDir,
    cfg: &RunConfig,
    data: &TrainData,
    resume: bool,
    mut optim: O,
    device: &B::Device,
) -> anyhow::Result<RunState> {
    B::seed(device, cfg.seed);
    let (mut model, mut state) = if resume {
        let state = dir
            .state()
            .context("--resume needs a run that finished at least one epoch")?;
        let model = dir.load_model::<B>("last", device)?;
        let record = CheckpointRecorder::new()
            .load(dir.optimizer_path(), device)
            .context("loading the optimizer state")?;
        optim = optim.load_record(record);
        tracing::info!(
            epochs_done = state.epochs_done,
            "resuming from the last checkpoint"
        );
        (model, state)
    } else if let Some(source) = &cfg.init_from {
        let from = RunDir::new(source);
        let mut model = from
            .load_model::<B>("best", device)
            .with_context(|| format!("starting weights from {}", source.display()))?;
        let channels = cfg.architecture.in_channels();
        if from.config()?.architecture.in_channels() != channels {
            model = model.widen_input(channels)?;
            tracing::info!(channels, "widened the first convolution to the new input");
        }
        // JMedSeg adds its transformer after the pre-trained weights are loaded: a run with
        // --stn starting from one without gets a fresh transformer (at the identity).
        if let (None, Some(stn)) = (&model.stn, &cfg.architecture.stn) {
            model.stn = Some(stn.init(channels, device));
            tracing::info!("added a spatial transformer in front of the loaded model");
        }
        tracing::info!(from = %source.display(), "starting from another run's best checkpoint");
        (model, RunState::default())
    } else {
        (cfg.architecture.init::<B>(device)?, RunState::default())
    };
    if !resume && let Some(file) = &cfg.pretrained_backbone {
        crate::pretrained_backbone::load(&mut model, &cfg.architecture, file)?;
    }
    if !resume {
        for (prefix, source) in &cfg.init_modules {
            let from = RunDir::new(source);
            let other = from
                .load_model::<B>("best", device)
                .with_context(|| format!("--init-module {prefix}={}", source.display()))?;
            let params = module_paths::parameters(&other);
            let (loaded, touched) = module_paths::load_under(model, &params, prefix, device)
                .map_err(|e| anyhow::anyhow!("--init-module {prefix}={}: {e}", source.display()))?;
            model = loaded;
            tracing::info!(prefix, from = %source.display(), parameters = touched.parameters, "initialised a sub-module");
        }
    }
    // Freezing is not stored in checkpoints: it is applied on every start, resume included.
    if !cfg.freeze.is_empty() {
        let (frozen, touched) =
            module_paths::freeze(model, &cfg.freeze).map_err(|e| anyhow::anyhow!(e))?;
        model = frozen;
        tracing::info!(
            values = touched.values,
            "froze {} parameter tensors",
            touched.parameters
        );
    }
    let spec = &cfg.input;
    let loss_spec: LossSpec = cfg.loss.parse()?;
    let objective = Supervised {
        loss: CompoundLoss::<B>::new(&loss_spec, cfg.class_weights.clone(), device),
        aux_weight: cfg.aux_weight,
        transform_penalty: cfg.stn_penalty,
    };
    let steps_per_epoch = {
        let full = if cfg.fixed_batch {
            anyhow::ensure!(
                data.train.len() >= cfg.batch_size,
                "--fixed-batch: the training split has {} images, fewer than --batch-size {}",
                data.train.len(),
                cfg.batch_size
            );
            data.train.len() / cfg.batch_size
        } else {
            data.train.len().div_ceil(cfg.batch_size)
        };
        cfg.max_steps_per_epoch.map_or(full, |m| m.min(full))
    };
    let source = Labelled {
        split: &data.train,
        spec,
        crop: cfg.crop_size.unwrap_or(spec.width),
        classes: cfg.classes.len(),
        augment: &cfg.augment,
    };
    let budget = cfg.time_budget_minutes.map(TimeBudget::new);
    // With a time budget this is replanned after every epoch; the poly schedule follows it.
    let mut planned = cfg.epochs;
    let mut epoch = state.epochs_done;

    while epoch < planned {
        epoch += 1;
        let total_steps = steps_per_epoch * planned;
        let started = Instant::now();
        let mut step_seconds = Vec::with_capacity(steps_per_epoch);
        // Each epoch's shuffling and augmentation derive from (seed, epoch): resuming replays
        // exactly what an uninterrupted run would have done.
        let mut rng = ChaCha8Rng::seed_from_u64(
            cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut rng);
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{epoch}/{planned}"));
        let (mut loss_sum, mut images, mut lr) = (0.0f64, 0usize, cfg.lr);
        // Batches are prepared ahead on another thread (augmentation off the training
        // thread); only the upload to the device happens here. The producer owns the epoch's
        // generator and prepares the batches in order, so they are the serial loop's.
        let (trained, waited) = std::thread::scope(|scope| -> anyhow::Result<_> {
            let mut chunks = order.chunks(cfg.batch_size).take(steps_per_epoch);
            let (source, rng) = (&source, &mut rng);
            let mut batches = Prefetch::spawn(scope, PREFETCH_BATCHES, move || {
                let indices = chunks.next()?;
                Some((
                    indices.len(),
                    DataSource::<B>::prepare(source, indices, rng),
                ))
            });
            for step in 0..steps_per_epoch {
                let step_started = Instant::now();
                let Some((batch_len, host)) = batches.next_item() else {
                    break;
                };
                let global = (epoch - 1) * steps_per_epoch + step;
                lr = match cfg.poly_power {
                    Some(p) => cfg.lr * (1.0 - global as f64 / total_steps as f64).powf(p),
                    None => cfg.lr,
                };
                let batch_data = host.upload::<B>(device);
                let out = model.forward_train(batch_data.images.clone());
                let loss = objective.loss(&batch_data, &out)?;
                let value: f64 = loss.clone().into_scalar().elem();
                anyhow::ensure!(
                    value.is_finite(),
                    "loss became {value} at epoch {epoch} step {step}; lower --lr"
                );
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optim.step(lr, model, grads);
                loss_sum += value * batch_len as f64;
                images += batch_len;
                step_seconds.push(step_started.elapsed().as_secs_f64());
                let ips = images as f64 / started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} {ips:.1} img/s",
                    loss_sum / images as f64
                ));
                bar.inc(1);
            }
            Ok((model, batches.waited().as_secs_f64()))
        })?;
        model = trained;
        let step_total: f64 = step_seconds.iter().sum();
        tracing::info!(
            epoch,
            waited_seconds = waited,
            "the training step waited for a batch {:.1}% of its time",
            100.0 * waited / step_total.max(f64::EPSILON)
        );
        let train_seconds = started.elapsed().as_secs_f64();
        bar.set_message("validating");
        let inference = model.valid();
        let summary = validate::score_split(
            &inference,
            &data.val,
            spec,
            &cfg.classes,
            cfg.batch_size,
            cfg.fixed_batch,
            device,
        )?;
        bar.finish_and_clear();
        let (val_dice, val_iou) = foreground_means(&summary);
        let is_best = state.log.is_empty() || val_dice > state.best_dice;
        if is_best {
            state.best_dice = val_dice;
            state.best_epoch = epoch;
        }
        state.log.push(EpochLog {
            epoch,
            train_loss: loss_sum / images.max(1) as f64,
            val_dice,
            val_iou,
            lr,
            seconds: started.elapsed().as_secs_f64(),
            images_per_second: images as f64 / train_seconds,
            train_images: images,
        });
        state.epochs_done = epoch;
        dir.save_epoch(&inference, optim.to_record(), &state, is_best)?;
        let row = state.log.last().expect("just pushed");
        println!(
            "epoch {epoch}/{planned}: loss {:.4}  val Dice {:.4}  IoU {:.4}  {:.1} img/s  {:.0}s{}",
            row.train_loss,
            val_dice,
            val_iou,
            row.images_per_second,
            row.seconds,
            if is_best { "  (best)" } else { "" }
        );
        if let Some(budget) = &budget {
            let outside_steps = started.elapsed().as_secs_f64() - step_seconds.iter().sum::<f64>();
            let epoch_seconds =
                budget::steady_epoch_seconds(&step_seconds, steps_per_epoch, outside_steps);
            let next = budget.planned_epochs(epoch, cfg.epochs, epoch_seconds);
            if next != planned {
                println!(
                    "time budget: {next} epochs fit (an epoch takes about {epoch_seconds:.0} s)"
                );
            }
            planned = next;
        }
    }
    if planned < cfg.epochs {
        println!(
            "time budget of {} min: stopped after epoch {epoch} of {}, the next would not fit",
            cfg.time_budget_minutes.unwrap_or_default(),
            cfg.epochs
        );
    }
    Ok(state)
}

/// Mean over foreground classes of the split-level Dice and IoU.
pub fn foreground_means(summary: &medseg_runtime::metrics::SplitSummary) -> (f64, f64) {
    let fg = &summary.per_class[1..];
    let mean = |f: fn(&medseg_runtime::metrics::ClassSummary) -> Option<f64>| {
        let v: Vec<f64> = fg.iter().filter_map(f).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    (mean(|c| c.dice_split), mean(|c| c.iou_split))
}
