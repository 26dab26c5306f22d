//! Contrastive self-supervised pre-training (`medseg-train pretrain`): MoCo v2 (He et al.
//! 2020; Chen et al. 2020) on unlabelled images, or JMedSeg's shared-encoder variant. See
//! docs/SSL.md for every departure from both.
//!
//! The run folder has the supervised run's layout ([`RunDir`]: run.json, state.json,
//! best/last model records, log.csv, curves.png), holding the whole [`SegModel`] (the decoder
//! keeps its random initialisation), so `medseg-train train --init-from RUN` loads it as it
//! loads any run. Beside it: head.bin (the projection head), key.bin (the momentum encoder
//! and its head), queue.json, pretrain.json (these settings) and probe.json.

pub mod head;
pub mod infonce;
pub mod momentum;
pub mod probe;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burn::module::{AutodiffModule, Module};
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use medseg_models::SegModel;

use crate::augment::{Legacy, Pipeline};
use crate::plot::EpochLog;
use crate::source::{DataSource, Unlabelled};
use crate::train::{CheckpointRecorder, RunConfig, RunDir, RunState};
use head::ProjectionHead;
use infonce::{Queue, info_nce};
use momentum::{independent_copy, momentum_update};

/// The augmentation that makes the two views of an image (the one place to change it): in
/// the spirit of MoCo v2 / JMedSeg's views, as the pipeline of the old flat settings. Random
/// resized crop -> zoom 1 ± 0.3, shift ± 15% and the random crop of the source; colour
/// jitter -> brightness and contrast ± 0.4, gamma; Gaussian blur of half the views up to 1.5
/// px; horizontal flip. Small rotations stand in for the tilt of a phone photo.
pub fn pretrain_views_augment() -> Pipeline {
    Legacy {
        flip: true,
        contrast: 0.4,
        brightness: 0.4,
        rotate_degrees: 10.0,
        zoom: 0.3,
        shift: 0.15,
        gamma: 0.4,
        blur: 1.5,
    }
    .into()
}

/// The settings of a pre-training run (pretrain.json), beside the [`RunConfig`] that
/// `train --init-from` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainConfig {
    /// The tap the features come from ("encoder": every architecture's encoder output).
    pub layer: String,
    pub dim: usize,
    pub temperature: f32,
    pub queue: usize,
    /// Key encoder = EMA of the query encoder with this momentum; none = JMedSeg's shared
    /// encoder (both views through one network, gradients through both).
    pub momentum: Option<f32>,
    pub augment: Pipeline,
    /// A labelled data set for the probe (none: no probe).
    pub probe_data: Option<PathBuf>,
    pub probe_k: usize,
}

/// The trained module: the segmentation model (its encoder is what pre-training is for) and
/// the projection head.
#[derive(Module, Debug)]
pub struct PretrainNet<B: Backend> {
    pub model: SegModel<B>,
    pub head: ProjectionHead<B>,
}

/// The tensor offered under `layer`, or an error listing the taps there are.
pub fn pick_tap<B: Backend>(
    taps: Vec<(String, Tensor<B, 4>)>,
    layer: &str,
) -> anyhow::Result<Tensor<B, 4>> {
    let names: Vec<String> = taps.iter().map(|t| t.0.clone()).collect();
    taps.into_iter()
        .rev()
        .find(|(n, _)| n == layer)
        .map(|t| t.1)
        .with_context(|| {
            format!(
                "--layer {layer}: this model offers {}",
                if names.is_empty() {
                    "no taps".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
}

impl<B: Backend> PretrainNet<B> {
    /// A head sized for the model's `layer` features (found by one forward of a small input).
    pub fn new(
        model: SegModel<B>,
        layer: &str,
        dim: usize,
        side: usize,
        channels: usize,
        device: &B::Device,
    ) -> anyhow::Result<Self> {
        let probe = Tensor::<B, 4>::zeros([2, channels, side, side], device);
        let (_, taps) = model.forward_taps(probe);
        let c = pick_tap(taps, layer)?.dims()[1];
        Ok(Self {
            model,
            head: ProjectionHead::new(c, dim, device),
        })
    }

    /// Unit-norm embeddings `[N, dim]`.
    pub fn embed(&self, x: Tensor<B, 4>, layer: &str) -> anyhow::Result<Tensor<B, 2>> {
        let (_, taps) = self.model.forward_taps(x);
        Ok(self.head.forward(pick_tap(taps, layer)?))
    }
}

/// Where the run's extra files go.
pub fn pretrain_config_path(run: &Path) -> PathBuf {
    run.join("pretrain.json")
}

impl PretrainConfig {
    /// The settings a pre-training run folder was made with; `None` for a folder that is not
    /// one (no or unreadable pretrain.json).
    pub fn read(run: &Path) -> Option<PretrainConfig> {
        let bytes = std::fs::read(pretrain_config_path(run)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Trains for `cfg.epochs` epochs on `source` (its `views` must be 2), writing the run
/// folder after every epoch. Returns the loss of every step.
pub fn pretrain<B: AutodiffBackend>(
    dir: &RunDir,
    cfg: &RunConfig,
    pre: &PretrainConfig,
    source: &Unlabelled,
    device: &B::Device,
) -> anyhow::Result<(PretrainNet<B>, Vec<f64>)> {
    anyhow::ensure!(source.views == 2, "pre-training needs two views per image");
    anyhow::ensure!(
        DataSource::<B>::len(source) >= cfg.batch_size.min(2),
        "pre-training needs at least 2 images"
    );
    B::seed(device, cfg.seed);
    let arch = &cfg.architecture;
    let model = arch.init::<B>(device)?;
    let mut net = PretrainNet::new(
        model,
        &pre.layer,
        pre.dim,
        arch.size_multiple(),
        arch.in_channels(),
        device,
    )?;
    // The key encoder: a copy sharing nothing (not even BatchNorm statistics), no gradients.
    let mut key = pre.momentum.map(|_| {
        let fresh = PretrainNet {
            model: arch.init::<B>(device).expect("validated"),
            head: net.head.clone(),
        };
        independent_copy(&net, fresh)
    });
    let mut queue = Queue::random(pre.queue, pre.dim, cfg.seed ^ 0x51);
    let mut optim = AdamConfig::new()
        .with_epsilon(1e-8)
        .init::<B, PretrainNet<B>>();
    let mut state = RunState::default();
    let mut losses = Vec::new();
    let n = DataSource::<B>::len(source);
    let steps_per_epoch = {
        let full = n / cfg.batch_size.max(1);
        let full = full.max(1);
        cfg.max_steps_per_epoch.map_or(full, |m| m.min(full))
    };
    let budget_seconds = cfg.time_budget_minutes.map(|m| m * 60.0);
    let run_started = Instant::now();
    for epoch in 1..=cfg.epochs {
        let started = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(
            cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{epoch}/{}", cfg.epochs));
        let (mut loss_sum, mut images) = (0.0f64, 0usize);
        // Batches of at least 2 images: one image cannot have BatchNorm batch statistics.
        for batch in order
            .chunks(cfg.batch_size)
            .take(steps_per_epoch)
            .filter(|b| b.len() >= 2)
        {
            let data = source.batch(batch, &mut rng, device);
            let view2 = data.views.into_iter().next().expect("two views");
            let q = net.embed(data.images, &pre.layer)?;
            let k = match (&key, pre.momentum) {
                (Some(key), Some(_)) => key.embed(view2, &pre.layer)?.detach(),
                _ => net.embed(view2, &pre.layer)?,
            };
            let loss = info_nce(q, k.clone(), queue.tensor::<B>(device), pre.temperature);
            let value: f64 = loss.clone().into_scalar().elem();
            anyhow::ensure!(
                value.is_finite(),
                "loss became {value} at epoch {epoch}; lower --lr or raise --temperature"
            );
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(cfg.lr, net, grads);
            if let (Some(k_net), Some(m)) = (key.take(), pre.momentum) {
                key = Some(momentum_update(k_net, &net, m));
            }
            let keys: Vec<f32> = k
                .detach()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("f32 keys");
            queue.enqueue(&keys);
            losses.push(value);
            loss_sum += value * batch.len() as f64;
            images += batch.len();
            bar.set_message(format!(
                "loss {:.4} {:.1} img/s",
                loss_sum / images.max(1) as f64,
                images as f64 / started.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        state.log.push(EpochLog {
            epoch,
            train_loss: loss_sum / images.max(1) as f64,
            val_dice: 0.0,
            val_iou: 0.0,
            lr: cfg.lr,
            seconds,
            images_per_second: images as f64 / seconds,
            train_images: images,
        });
        state.epochs_done = epoch;
        state.best_epoch = epoch;
        save_extras(dir, &net, key.as_ref(), &queue)?;
        // "best" is the latest epoch: there is no validation score to choose by.
        dir.save_epoch(&net.model.valid(), optim.to_record(), &state, true)?;
        println!(
            "epoch {epoch}/{}: InfoNCE {:.4}  {:.1} img/s  {:.0}s",
            cfg.epochs,
            state.log.last().expect("pushed").train_loss,
            images as f64 / seconds,
            seconds
        );
        if let Some(budget) = budget_seconds {
            let elapsed = run_started.elapsed().as_secs_f64();
            if elapsed + elapsed / epoch as f64 > budget && epoch < cfg.epochs {
                println!("time budget: stopped after epoch {epoch}, the next would not fit");
                break;
            }
        }
    }
    Ok((net, losses))
}

fn save_extras<B: AutodiffBackend>(
    dir: &RunDir,
    net: &PretrainNet<B>,
    key: Option<&PretrainNet<B>>,
    queue: &Queue,
) -> anyhow::Result<()> {
    let rec = CheckpointRecorder::new();
    // Burn warns when it replaces a file; the previous epoch's are simply out of date.
    for old in ["head.bin", "key.bin"] {
        let _ = std::fs::remove_file(dir.path.join(old));
    }
    net.head
        .valid()
        .save_file(dir.path.join("head"), &rec)
        .context("saving the projection head")?;
    if let Some(key) = key {
        key.valid()
            .save_file(dir.path.join("key"), &rec)
            .context("saving the key encoder")?;
    }
    std::fs::write(dir.path.join("queue.json"), serde_json::to_vec(queue)?)
        .context("saving the queue")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use medseg_models::Architecture;
    use medseg_runtime::InputSpec;

    use super::*;
    use crate::train::OptimizerKind;

    type B = Autodiff<Flex>;

    fn config(arch: Architecture, input: InputSpec, epochs: usize) -> RunConfig {
        RunConfig {
            data: PathBuf::from("images"),
            domain: "unlabelled".into(),
            dataset_name: "images".into(),
            dataset_hash: String::new(),
            dataset_images: 8,
            classes: vec!["background".into(), "foreground".into()],
            architecture: arch,
            input,
            augment: pretrain_views_augment(),
            init_from: None,
            init_modules: Vec::new(),
            pretrained_backbone: None,
            freeze: Vec::new(),
            aux_weight: 1.0,
            stn_penalty: 0.0,
            weight_decay: 0.0,
            crop_size: None,
            epochs,
            batch_size: 4,
            lr: 3e-3,
            optimizer: OptimizerKind::Adam,
            poly_power: None,
            class_weights: None,
            loss: "infonce".into(),
            seed: 7,
            max_steps_per_epoch: None,
            fixed_batch: false,
            time_budget_minutes: None,
            command: "test".into(),
            backend: "flex".into(),
        }
    }

    /// Eight distinct generated images (stripes at different angles and frequencies).
    fn image_folder(dir: &Path) {
        for i in 0..8u32 {
            image::GrayImage::from_fn(32, 32, |x, y| {
                let v = ((x * (i % 4 + 1) + y * (i / 4 + 1) * 3) % 16) * 16;
                image::Luma([v as u8])
            })
            .save(dir.join(format!("{i}.png")))
            .unwrap();
        }
    }

    fn losses(momentum: Option<f32>, epochs: usize) -> (Vec<f64>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let images = tmp.path().join("images");
        std::fs::create_dir_all(&images).unwrap();
        image_folder(&images);
        let input = InputSpec {
            channels: 1,
            height: 16,
            width: 16,
            mean: 0.5,
            std: 0.25,
            stacked_neighbours: false,
        };
        let mut source = Unlabelled::from_folder(&images, &input).unwrap();
        source.views = 2;
        source.augment = pretrain_views_augment();
        let arch = Architecture::tiny("unet", 1, 2).unwrap();
        let cfg = config(arch, input, epochs);
        let pre = PretrainConfig {
            layer: "encoder".into(),
            dim: 8,
            temperature: 0.2,
            queue: 32,
            momentum,
            augment: source.augment.clone(),
            probe_data: None,
            probe_k: 1,
        };
        let dir = RunDir::new(&tmp.path().join("run"));
        dir.write_config(&cfg).unwrap();
        let (_, l) = pretrain::<B>(&dir, &cfg, &pre, &source, &Default::default()).unwrap();
        assert!(dir.path.join("best.bin").is_file() && dir.path.join("head.bin").is_file());
        (l, tmp)
    }

    #[test]
    fn pretrain_trains_the_encoder_and_stays_finite() {
        // The momentum encoder only: with JMedSeg's shared encoder the loss of a short run
        // rises while the queue's random initial keys (easy negatives) are replaced by real
        // ones (measured: 1.2 -> 3.3 over 24 steps), which says nothing about learning.
        // The momentum variant's short runs rise the same way (1.2 -> 3.0 over 24 steps with a
        // 32-key queue), so the check is that training moved the encoder and stayed finite.
        for momentum in [Some(0.9), None] {
            let (l, tmp) = losses(momentum, 12);
            assert_eq!(l.len(), 24);
            assert!(l.iter().all(|v| v.is_finite()), "{momentum:?}: {l:?}");
            let dev = Default::default();
            let trained = RunDir::new(&tmp.path().join("run"))
                .load_model::<Flex>("best", &dev)
                .unwrap();
            <Flex as burn::tensor::backend::Backend>::seed(&dev, 7);
            let start = Architecture::tiny("unet", 1, 2)
                .unwrap()
                .init::<Flex>(&dev)
                .unwrap();
            let (a, b) = (
                crate::train::module_paths::parameters(&trained),
                crate::train::module_paths::parameters(&start),
            );
            assert_eq!(a.len(), b.len());
            let stem = "stem.first.conv.weight";
            assert_ne!(a[stem], b[stem], "{momentum:?}: the encoder did not move");
        }
    }

    #[test]
    fn pretrain_asks_for_a_tap_the_model_offers() {
        let dev = Default::default();
        let model = Architecture::tiny("unet", 1, 2)
            .unwrap()
            .init::<Flex>(&dev)
            .unwrap();
        let err = PretrainNet::new(model, "down9", 8, 16, 1, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("down9") && err.contains("encoder"), "{err}");
    }
}
