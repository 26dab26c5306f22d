//! Typed errors of the runtime library. Each names the file or value at fault and what was
//! expected, so a bedside user can act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    // The io error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot read {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("model {path}: {reason}")]
    BadModel { path: String, reason: String },
    #[error("model {path} failed in tract: {reason}")]
    Inference { path: String, reason: String },
    #[error("model {model} cannot segment this image: {reason}")]
    UnsuitableImage { model: String, reason: String },
    #[error("image {path}: {reason}")]
    BadImage { path: PathBuf, reason: String },
    /// A DICOM file or series or a NIfTI volume that cannot be read; `reason` names the file
    /// (and the frame or slice where it matters).
    #[error("{reason}")]
    BadScan { path: PathBuf, reason: String },
    #[error("mask {path}: {reason}")]
    BadMask { path: PathBuf, reason: String },
    #[error("data set {path}: {reason}")]
    BadDataset { path: PathBuf, reason: String },
    /// A load or run setting the runtime cannot apply (a tract knob it does not know, ...).
    #[error("{setting}: {reason}")]
    BadSetting { setting: String, reason: String },
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
}

impl RuntimeError {
    pub fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            cause,
        }
    }
}
