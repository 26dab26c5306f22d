//! Pre-trained backbone weights (`train --pretrained-backbone FILE`): a torchvision ResNet or
//! VGG state dict, saved by `torch.save` (`.pt`/`.pth`) or as safetensors, loaded into the
//! backbone of a zoo member that has one ([`medseg_models::backbones::torchvision`] lists
//! them and maps the keys). Without a file every backbone starts from random weights.
//!
//! The file is read by burn-store (`PytorchStore`, `SafetensorsStore`), its keys renamed by
//! burn-store's `KeyRemapper` and applied by its `PyTorchToBurnAdapter` (BatchNorm's
//! weight/bias as gamma/beta). What burn-store does not do is hand-written here: checking the
//! whole backbone against the file before anything is changed (so a refusal names every
//! missing key and every shape that differs, with a guess at what the file holds), summing an
//! RGB first convolution for a gray model, and converting half or double precision files to
//! the model's float type (burn-store would load them in the file's type).
//!
//! The rules:
//! - every parameter of the backbone must come from the file (the deep stem's `conv2`/`conv3`
//!   too: torchvision's ResNets lack them, so a deep-stem backbone needs a deep-base file);
//! - shapes must match, except a first convolution of 3 input channels (ImageNet's RGB) in a
//!   1-channel model, whose filters are summed over RGB (logged);
//! - keys of the file the backbone does not use (the classifier, layers a shortened backbone
//!   does not build, `num_batches_tracked`) are counted in the log;
//! - a file that cannot be read is an error naming it, never a panic.

mod checkpoint;
mod fit;
mod identify;

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;

use medseg_models::{Architecture, SegModel};

pub use checkpoint::{Format, sniff};

#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error("pre-trained backbone file {}: {reason}", file.display())]
    Unreadable { file: PathBuf, reason: String },
    #[error(
        "{arch} has no backbone that torchvision weights fit (a ResNet or VGG); the members \
         that have one: {}",
        Architecture::with_torchvision_backbone().join(", ")
    )]
    NoBackbone { arch: String },
    #[error(
        "pre-trained backbone file {} does not fit {arch}'s `{field}`, a {backbone}:{problems}",
        file.display()
    )]
    Mismatch {
        file: PathBuf,
        arch: String,
        field: String,
        backbone: String,
        problems: String,
    },
}

/// What [`load`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The backbone, described (`resnet34 (torchvision's 7x7 stem, base width 64, ...)`).
    pub backbone: String,
    /// The member's field that holds it (`backbone`, `encoder`).
    pub field: String,
    /// Parameter tensors loaded, and their values.
    pub tensors: usize,
    pub values: usize,
    /// Tensors of the file the backbone does not use.
    pub unused: usize,
    /// Whether an RGB first convolution was summed into a 1-channel one.
    pub summed_rgb: bool,
    /// A wrapper's key prefix that was stripped (`module.`), if any.
    pub prefix: String,
}

/// Loads the backbone weights in `file` into `model`, an `arch` (the rest of the model is
/// left as it is). On an error the model is unchanged.
pub fn load<B: Backend>(
    model: &mut SegModel<B>,
    arch: &Architecture,
    file: &Path,
) -> Result<Loaded, PretrainedError> {
    let Some((field, kind)) = arch.torchvision_backbone() else {
        return Err(PretrainedError::NoBackbone {
            arch: arch.name().to_string(),
        });
    };
    let snapshots = checkpoint::read(file)?;
    let backbone = model
        .net
        .torchvision_backbone_mut()
        .expect("a member with a described backbone holds it (models' test)");
    let loaded =
        fit::apply(backbone, &kind, snapshots, file).map_err(|problems| match problems {
            fit::Refusal::Unreadable(e) => e,
            fit::Refusal::Mismatch(problems) => PretrainedError::Mismatch {
                file: file.to_path_buf(),
                arch: arch.name().to_string(),
                field: field.to_string(),
                backbone: kind.describe(),
                problems,
            },
        })?;
    let loaded = Loaded {
        field: field.to_string(),
        ..loaded
    };
    if !loaded.prefix.is_empty() {
        tracing::info!(prefix = %loaded.prefix, "the file's keys carry a wrapper prefix; stripped");
    }
    if loaded.summed_rgb {
        tracing::info!(
            "the file's first convolution reads 3 (RGB) channels and this model 1: its filters \
             are summed over R, G and B, so a gray image gives what the RGB network gives on \
             that image repeated in all three channels"
        );
    }
    tracing::info!(
        file = %file.display(),
        backbone = %loaded.backbone,
        field = %loaded.field,
        tensors = loaded.tensors,
        values = loaded.values,
        "loaded pre-trained backbone weights; {} tensors of the file are not used (classifier, \
         layers this backbone does not build, BatchNorm counters)",
        loaded.unused
    );
    Ok(loaded)
}
