//! A training run's folder: its settings (run.json), progress (state.json), checkpoints
//! (last / best model records and the optimizer), log.csv and curves.png.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use medseg_models::{Architecture, SegModel};
use medseg_runtime::InputSpec;

use crate::augment::Pipeline;
use crate::plot::EpochLog;

fn basic_pipeline() -> Pipeline {
    Pipeline::preset("basic").expect("basic is a preset")
}

pub type CheckpointRecorder = BinFileRecorder<FullPrecisionSettings>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    /// Adam with decoupled weight decay (Loshchilov and Hutter, ICLR 2019): `--weight-decay`.
    Adamw,
    Sgd,
}

/// Everything that defines a run; written once, checked on `--resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: PathBuf,
    pub domain: String,
    pub dataset_name: String,
    pub dataset_hash: String,
    pub dataset_images: usize,
    pub classes: Vec<String>,
    pub architecture: Architecture,
    pub input: InputSpec,
    /// Augmentation pipeline of training samples. Runs written before it existed get the
    /// `basic` preset; runs written before the pipeline (a flat object of settings) load as
    /// the equivalent pipeline.
    #[serde(default = "basic_pipeline")]
    pub augment: Pipeline,
    /// Run whose best checkpoint gave the starting weights (none = random initialization).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Sub-modules initialised from other runs' best checkpoints (any architecture): module
    /// path prefix and run folder, applied in order after `init_from`.
    #[serde(default)]
    pub init_modules: Vec<(String, PathBuf)>,
    /// A torchvision ResNet/VGG checkpoint (.pt/.pth or .safetensors) whose weights start the
    /// architecture's backbone (none = random initialization; runs written before it load as
    /// none). Applied to new runs only, before `init_modules`.
    #[serde(default)]
    pub pretrained_backbone: Option<PathBuf>,
    /// Module path prefixes whose parameters are not trained.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Weight of each deep-supervision side output's loss, relative to the final output's.
    #[serde(default = "default_aux_weight")]
    pub aux_weight: f32,
    /// Weight of the spatial transformer's penalty, the mean squared distance of its affine
    /// matrix from the identity (0: none).
    #[serde(default)]
    pub stn_penalty: f32,
    /// AdamW's decoupled weight decay (other optimizers: none).
    #[serde(default)]
    pub weight_decay: f32,
    /// Side of the square training patches (none = whole images).
    pub crop_size: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// Poly schedule power (lr * (1 - step/steps)^power); none keeps lr constant.
    pub poly_power: Option<f64>,
    pub class_weights: Option<Vec<f32>>,
    pub loss: String,
    pub seed: u64,
    /// Caps the steps of each epoch (quick runs and tests); none = the whole split.
    pub max_steps_per_epoch: Option<usize>,
    /// Every batch has `batch_size` images: the last incomplete training batch is dropped and
    /// the last validation batch padded, so backends that tune kernels per tensor shape
    /// (cuda-autotune) tune one set.
    #[serde(default)]
    pub fixed_batch: bool,
    /// Wall-clock minutes for each training process; the epochs (and the poly schedule) are
    /// fitted to it after every epoch.
    #[serde(default)]
    pub time_budget_minutes: Option<f64>,
    pub command: String,
    pub backend: String,
}

fn default_aux_weight() -> f32 {
    1.0
}

/// Progress, rewritten after every epoch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    pub best_dice: f64,
    pub best_epoch: usize,
    pub log: Vec<EpochLog>,
}

pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn config(&self) -> anyhow::Result<RunConfig> {
        read_json(&self.file("run.json"))
    }

    /// Opens the labelled data set at `data` to use with this run (`cfg`, its run.json),
    /// refusing one whose classes are not as many as the run was made for.
    pub fn matching_dataset(
        &self,
        cfg: &RunConfig,
        data: &Path,
    ) -> anyhow::Result<medseg_runtime::dataset::Dataset> {
        let ds = medseg_runtime::dataset::Dataset::open(data)?;
        anyhow::ensure!(
            ds.classes.len() == cfg.classes.len(),
            "{} has {} classes, the run {} was made for {}",
            data.display(),
            ds.classes.len(),
            self.path.display(),
            cfg.classes.len()
        );
        Ok(ds)
    }

    pub fn state(&self) -> anyhow::Result<RunState> {
        read_json(&self.file("state.json"))
    }

    /// Whether the folder holds a run that finished at least one epoch (worth protecting).
    pub fn has_progress(&self) -> bool {
        self.file("state.json").is_file()
    }

    pub fn write_config(&self, cfg: &RunConfig) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.path)
            .with_context(|| format!("creating {}", self.path.display()))?;
        write_json(&self.file("run.json"), cfg)
    }

    /// Saves the epoch's checkpoints, then the state that points at them (so a crash between
    /// the two leaves the previous, consistent state).
    pub fn save_epoch<MB: Backend, OB: Backend>(
        &self,
        model: &SegModel<MB>,
        optimizer_record: impl burn::record::Record<OB>,
        state: &RunState,
        is_best: bool,
    ) -> anyhow::Result<()> {
        let rec = CheckpointRecorder::new();
        model
            .clone()
            .save_file(self.file("last-partial"), &rec)
            .context("saving the last checkpoint")?;
        std::fs::rename(self.file("last-partial.bin"), self.file("last.bin"))?;
        Recorder::<OB>::record(&rec, optimizer_record, self.file("optimizer-partial"))
            .context("saving the optimizer state")?;
        std::fs::rename(
            self.file("optimizer-partial.bin"),
            self.file("optimizer.bin"),
        )?;
        if is_best {
            std::fs::copy(self.file("last.bin"), self.file("best.bin"))
                .context("saving the best checkpoint")?;
        }
        write_log_csv(&self.file("log.csv"), &state.log)?;
        crate::plot::plot_curves(&state.log, &self.file("curves.png"))?;
        write_json(&self.file("state.json"), state)
    }

    /// Loads a checkpoint (`best` or `last`) into a freshly initialized model.
    pub fn load_model<B: Backend>(
        &self,
        which: &str,
        device: &B::Device,
    ) -> anyhow::Result<SegModel<B>> {
        let cfg = self.config()?;
        let path = self.file(&format!("{which}.bin"));
        if !path.is_file() {
            bail!(
                "{} does not exist: has the run finished an epoch?",
                path.display()
            );
        }
        load_checkpoint(&cfg.architecture, &self.file(which), device)
            .with_context(|| format!("loading checkpoint {}", path.display()))
    }

    pub fn optimizer_path(&self) -> PathBuf {
        self.file("optimizer")
    }
}

/// Loads the checkpoint `file` (without its extension) as `arch`. Checkpoints written before
/// models could have a spatial transformer hold the zoo member's record alone; they load as
/// that member without a transformer.
fn load_checkpoint<B: Backend>(
    arch: &Architecture,
    file: &Path,
    device: &B::Device,
) -> anyhow::Result<SegModel<B>> {
    let model = arch.init::<B>(device)?;
    let recorder = CheckpointRecorder::new();
    let loaded = match model
        .clone()
        .load_file(file.to_path_buf(), &recorder, device)
    {
        Ok(model) => Ok(model),
        Err(err) if arch.stn.is_none() => model
            .net
            .load_file(file.to_path_buf(), &recorder, device)
            .map(|net| SegModel { net, stn: None })
            .map_err(|_| err),
        Err(err) => Err(err),
    };
    loaded.map_err(|err| {
        let err = anyhow::Error::from(err);
        match layout_change(arch) {
            Some(when) => err.context(format!(
                "{}'s layout changed on {when}: a checkpoint written before cannot be read by \
                 this version (its exported ONNX file still runs; retrain to continue)",
                arch.name()
            )),
            None => err,
        }
    })
}

fn layout_change(arch: &Architecture) -> Option<&'static str> {
    medseg_models::registry::LAYOUT_CHANGES
        .iter()
        .find(|(name, _)| *name == arch.name())
        .map(|(_, when)| *when)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn write_log_csv(path: &Path, rows: &[EpochLog]) -> anyhow::Result<()> {
    let mut text = String::from("epoch,train_loss,val_dice,val_iou,lr,seconds,images_per_second\n");
    for r in rows {
        text.push_str(&format!(
            "{},{:.6},{:.6},{:.6},{:.3e},{:.1},{:.2}\n",
            r.epoch, r.train_loss, r.val_dice, r.val_iou, r.lr, r.seconds, r.images_per_second
        ));
    }
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Distribution, Tensor};

    use super::*;

    type B = Flex;

    #[test]
    fn checkpoints_of_the_bare_zoo_member_still_load() {
        let dev = Default::default();
        let dir = tempfile::tempdir().unwrap();
        let arch = Architecture::tiny("unet", 1, 2).unwrap();
        let model = arch.init::<B>(&dev).unwrap();
        let x = Tensor::<B, 4>::random([1, 1, 16, 16], Distribution::Default, &dev);
        let expected = model.forward(x.clone()).into_data();
        let recorder = CheckpointRecorder::new();
        // The record layout before `SegModel` had a transformer: the member alone.
        let old = dir.path().join("old");
        model.net.clone().save_file(old.clone(), &recorder).unwrap();
        let loaded = load_checkpoint::<B>(&arch, &old, &dev).unwrap();
        assert_eq!(loaded.forward(x.clone()).into_data(), expected);
        let new = dir.path().join("new");
        model.save_file(new.clone(), &recorder).unwrap();
        let loaded = load_checkpoint::<B>(&arch, &new, &dev).unwrap();
        assert_eq!(loaded.forward(x).into_data(), expected);
        // A transformer run cannot start from a record that has none.
        let with_stn = arch.with_stn(medseg_models::StnConfig::tiny());
        assert!(load_checkpoint::<B>(&with_stn, &old, &dev).is_err());
    }
}
