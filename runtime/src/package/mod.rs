//! Deployable model packages (`medseg-train export --package DIR`): one folder holding
//!
//! - `model.onnx`: the exported model, its card embedded as in every medseg ONNX file;
//! - `model.nnef.tar`: the same graph as a tract NNEF archive (what tract makes of the ONNX
//!   file, input fixed to the card's shape, decluttered; weights in f32, see [`nnef_form`]),
//!   which a device opens without parsing ONNX;
//! - `card.json`: the model card, the precision, and the size and sha256 of the two files.
//!
//! [`Package::open`] reads card.json; [`Package::read`] returns a file's bytes only when they
//! hash to what card.json says, so a truncated or edited file is refused by name before tract
//! sees it. This file is the format's only definition: the trainer writes through [`write`].

mod nnef_form;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tract_onnx::WithOnnx;
use tract_onnx::prelude::*;

use crate::card::ModelCard;
use crate::error::RuntimeError;
use crate::onnx;

/// The package's description (card, precision, checksums).
pub const MANIFEST_FILE: &str = "card.json";
pub const ONNX_FILE: &str = "model.onnx";
/// Uncompressed: gzip saved 7% of an f32 UNet's archive and cost more load time than the
/// whole ONNX parse (measured with `medseg bench`, docs/QUANTIZATION.md).
pub const NNEF_FILE: &str = "model.nnef.tar";
/// Version of card.json's layout; bump on incompatible changes.
pub const PACKAGE_VERSION: u32 = 1;

/// One file of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageFile {
    pub bytes: u64,
    pub sha256: String,
}

/// card.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub package_version: u32,
    /// The export's `--precision` (f32, f16, int8-weights, int8).
    pub precision: String,
    pub card: ModelCard,
    /// File name (in the package folder) -> size and sha256.
    pub files: BTreeMap<String, PackageFile>,
}

/// Which of a package's two copies of the model to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// The NNEF archive: no ONNX parsing, the graph already decluttered.
    #[default]
    Nnef,
    Onnx,
}

impl Form {
    pub fn file(self) -> &'static str {
        match self {
            Form::Nnef => NNEF_FILE,
            Form::Onnx => ONNX_FILE,
        }
    }
}

/// An opened package: its card.json read, no model file read yet.
#[derive(Debug, Clone)]
pub struct Package {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn bad(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::BadModel {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

impl Package {
    /// Whether `path` is a package folder (it holds a card.json).
    pub fn is_package(path: &Path) -> bool {
        path.is_dir() && path.join(MANIFEST_FILE).is_file()
    }

    pub fn open(dir: &Path) -> Result<Self, RuntimeError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            bad(
                &path,
                format!("not a medseg package description ({e}); the file may be truncated"),
            )
        })?;
        if manifest.package_version != PACKAGE_VERSION {
            return Err(bad(
                &path,
                format!(
                    "package version {}, this runtime reads version {PACKAGE_VERSION}",
                    manifest.package_version
                ),
            ));
        }
        for name in [ONNX_FILE, NNEF_FILE] {
            if !manifest.files.contains_key(name) {
                return Err(bad(&path, format!("lists no checksum for {name}")));
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn path(&self, form: Form) -> PathBuf {
        self.dir.join(form.file())
    }

    /// The bytes of one form, refused unless their size and sha256 are card.json's.
    pub fn read(&self, form: Form) -> Result<Vec<u8>, RuntimeError> {
        let path = self.path(form);
        let expected = &self.manifest.files[form.file()];
        let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        if bytes.len() as u64 != expected.bytes {
            return Err(bad(
                &path,
                format!(
                    "{} bytes, {MANIFEST_FILE} says {}: the file is truncated or was replaced",
                    bytes.len(),
                    expected.bytes
                ),
            ));
        }
        let actual = sha256_hex(&bytes);
        if actual != expected.sha256 {
            return Err(bad(
                &path,
                format!(
                    "sha256 {actual}, {MANIFEST_FILE} says {}: the file is corrupted or was \
                     modified after export",
                    expected.sha256
                ),
            ));
        }
        Ok(bytes)
    }
}

/// The package folder a model path points into: the folder itself, or the folder of a
/// package's NNEF file (which has no card of its own). `None` for anything else (an ONNX
/// file, which carries its card, loads alone).
pub fn package_of(path: &Path) -> Option<(PathBuf, Form)> {
    if Package::is_package(path) {
        return Some((path.to_path_buf(), Form::Nnef));
    }
    let name = path.file_name()?.to_str()?;
    if name == NNEF_FILE {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        return Some((dir.unwrap_or(Path::new(".")).to_path_buf(), Form::Nnef));
    }
    None
}

/// The NNEF reader/writer with the operators medseg's graphs use beyond NNEF's own (tract's
/// core set, and ONNX's GridSample for spatial transformers).
pub fn nnef() -> tract_nnef::framework::Nnef {
    tract_nnef::nnef().with_onnx()
}

/// The model of `proto` (card `card`, named `source` in errors) as a tract NNEF archive
/// (tar): the graph tract builds from it, input fixed to the card's shape for one image,
/// decluttered, quantizers rewritten ([`nnef_form`]), weights in f32 whatever the ONNX file
/// stores (tract folds their dequantization). Not optimized: the loading device chooses its
/// own kernels.
fn nnef_archive(
    proto: &onnx::pb::ModelProto,
    card: &ModelCard,
    source: &str,
) -> Result<Vec<u8>, RuntimeError> {
    let fail = |e: TractError| RuntimeError::BadModel {
        path: source.to_string(),
        reason: format!("tract cannot write it as NNEF: {e:#}"),
    };
    let model = onnx::typed_model(proto, &card.input)
        // tract writes some operators only in their decluttered form (ONNX's Slice arrives as
        // a StridedSlice, which has no serializer; decluttered, it is a plain slice).
        .and_then(|m| m.into_decluttered())
        .and_then(nnef_form::serializable)
        .map_err(fail)?;
    nnef().write_to_tar(&model, Vec::new()).map_err(fail)
}

/// Writes the package of the ONNX model `onnx_bytes` (named `source` in errors) into `dir`,
/// which must not exist yet: everything is written into a temporary folder beside it and
/// renamed into place at the end, so a failure leaves no half package.
pub fn write(
    dir: &Path,
    onnx_bytes: &[u8],
    source: &str,
    precision: &str,
) -> Result<Manifest, RuntimeError> {
    if dir.exists() {
        return Err(bad(
            dir,
            "already exists; a package is written to a new folder",
        ));
    }
    let proto = onnx::decode(onnx_bytes, source)?;
    let card = onnx::read_card(&proto, source)?;
    let nnef_bytes = nnef_archive(&proto, &card, source)?;
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| RuntimeError::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".medseg-package-")
        .tempdir_in(parent)
        .map_err(|e| RuntimeError::io(parent, e))?;
    let mut files = BTreeMap::new();
    for (name, bytes) in [(ONNX_FILE, onnx_bytes), (NNEF_FILE, &nnef_bytes[..])] {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).map_err(|e| RuntimeError::io(&path, e))?;
        files.insert(
            name.to_string(),
            PackageFile {
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            },
        );
    }
    let manifest = Manifest {
        package_version: PACKAGE_VERSION,
        precision: precision.to_string(),
        card,
        files,
    };
    let path = tmp.path().join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(&path, e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| RuntimeError::io(&path, e))?;
    let tmp = tmp.keep();
    std::fs::rename(&tmp, dir).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        RuntimeError::io(dir, e)
    })?;
    Ok(manifest)
}
