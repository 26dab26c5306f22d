//! Reading a data set's layout: which images and masks form which split, by patient.
//!
//! Two layouts are understood:
//! - **folder**: `images/NAME.{png,jpg,jpeg}` + `masks/NAME.{png,npy}` and a `splits.json`
//!   `{"name", "classes": [...], "domains": {DOMAIN: {SPLIT: {PATIENT: [NAME, ...]}}}}`
//!   (what `medseg-train synth` writes);
//! - **JMedSeg**: `train_label.json`, `val_label.json`, `test_label.json`, each
//!   `{PATIENT: ["relative/path/mask.npy", ...]}`, with each image beside its mask under the
//!   same stem as `.jpg` or `.png`; classes are background + foreground.
//!
//! A folder-layout data set may carry `slices.csv` (see [`crate::slice_table`]) with each
//! slice's pixel spacing; surface distances are then in mm.
//!
//! The runtime owns this so that `medseg eval` and the trainer read a split identically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::card::InputSpec;
use crate::error::RuntimeError;
use crate::slice_table;

/// One labelled slice.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub patient: String,
    pub image: PathBuf,
    pub mask: PathBuf,
    /// Pixel spacing (row, column) in mm, from `slices.csv` when the data set has one.
    pub spacing: Option<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub name: String,
    pub classes: Vec<String>,
    /// domain -> split -> samples (ordered by patient, then slice name).
    pub domains: BTreeMap<String, BTreeMap<String, Vec<Sample>>>,
    /// sha256 of the split definition file(s): identifies the exact data set and split.
    pub hash: String,
    /// The images are slices stacked between their neighbours as RGB (`import
    /// --stack-neighbours`): a model must read them as 3 channels.
    pub stacked_neighbours: bool,
}

#[derive(Deserialize)]
struct SplitsFile {
    #[serde(default)]
    name: Option<String>,
    classes: Vec<String>,
    domains: BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    #[serde(default)]
    stacked_neighbours: bool,
}

/// Image files the runtime reads (data sets, `medseg segment` folders, bare import names).
pub const IMAGE_EXTS: &[&str] = &["png", "jpg", "jpeg", "bmp", "tif", "tiff"];
const MASK_EXTS: &[&str] = &["png", "npy"];
/// The domain name used by layouts that have only one.
pub const DEFAULT_DOMAIN: &str = "default";

impl Dataset {
    /// Opens a data set folder in either layout.
    pub fn open(root: &Path) -> Result<Self, RuntimeError> {
        if root.join("splits.json").is_file() {
            Self::open_folder(root)
        } else if root.join("train_label.json").is_file() || root.join("test_label.json").is_file()
        {
            Self::open_jmedseg(root)
        } else {
            Err(RuntimeError::BadDataset {
                path: root.to_path_buf(),
                reason: "found neither splits.json (folder layout) nor train_label.json / \
                         test_label.json (JMedSeg layout); generate one with `medseg-train synth --out DIR`"
                    .into(),
            })
        }
    }

    fn open_folder(root: &Path) -> Result<Self, RuntimeError> {
        let path = root.join("splits.json");
        let text = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
        let file: SplitsFile =
            serde_json::from_slice(&text).map_err(|e| RuntimeError::BadDataset {
                path: path.clone(),
                reason: format!("not a valid splits file ({e})"),
            })?;
        if file.classes.len() < 2 {
            return Err(RuntimeError::BadDataset {
                path,
                reason: "needs at least two classes (background and one structure)".into(),
            });
        }
        let table_path = root.join(slice_table::FILE_NAME);
        let table = if table_path.is_file() {
            slice_table::read(&table_path)?
        } else {
            BTreeMap::new()
        };
        let mut domains = BTreeMap::new();
        for (domain, splits) in file.domains {
            let mut out = BTreeMap::new();
            for (split, patients) in splits {
                let mut samples = Vec::new();
                for (patient, names) in patients {
                    for name in names {
                        let image = find_with_ext(&root.join("images"), &name, IMAGE_EXTS)?;
                        let mask = find_with_ext(&root.join("masks"), &name, MASK_EXTS)?;
                        let spacing = table.get(&name).and_then(slice_table::SliceRow::spacing);
                        samples.push(Sample {
                            name,
                            patient: patient.clone(),
                            image,
                            mask,
                            spacing,
                        });
                    }
                }
                out.insert(split, samples);
            }
            domains.insert(domain, out);
        }
        Ok(Self {
            name: file.name.unwrap_or_else(|| dir_name(root)),
            root: root.to_path_buf(),
            classes: file.classes,
            domains,
            hash: sha256_hex(&[&text]),
            stacked_neighbours: file.stacked_neighbours,
        })
    }

    fn open_jmedseg(root: &Path) -> Result<Self, RuntimeError> {
        let mut splits = BTreeMap::new();
        let mut hashed = Vec::new();
        for split in ["train", "val", "test"] {
            let path = root.join(format!("{split}_label.json"));
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, e))?;
            let patients: BTreeMap<String, Vec<String>> =
                serde_json::from_slice(&text).map_err(|e| RuntimeError::BadDataset {
                    path: path.clone(),
                    reason: format!("expected {{\"patient\": [\"mask.npy\", ...]}} ({e})"),
                })?;
            let mut samples = Vec::new();
            for (patient, masks) in patients {
                for rel in masks {
                    let mask = root.join(&rel);
                    if !mask.is_file() {
                        return Err(RuntimeError::BadDataset {
                            path: path.clone(),
                            reason: format!("lists mask {} which does not exist", mask.display()),
                        });
                    }
                    let stem = mask
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .unwrap_or_default()
                        .to_string();
                    let dir = mask.parent().unwrap_or(root).to_path_buf();
                    let image = find_with_ext(&dir, &stem, &["jpg", "jpeg", "png"])?;
                    samples.push(Sample {
                        name: format!("{patient}_{stem}"),
                        patient: patient.clone(),
                        image,
                        mask,
                        spacing: None,
                    });
                }
            }
            hashed.push(text);
            splits.insert(split.to_string(), samples);
        }
        let refs: Vec<&[u8]> = hashed.iter().map(|t| t.as_slice()).collect();
        Ok(Self {
            name: dir_name(root),
            root: root.to_path_buf(),
            classes: vec!["background".into(), "foreground".into()],
            domains: BTreeMap::from([(DEFAULT_DOMAIN.to_string(), splits)]),
            hash: sha256_hex(&refs),
            stacked_neighbours: false,
        })
    }

    /// Refuses a model that would not read stacked slices as the three slices they are (one
    /// channel would blend them into gray).
    pub fn check_input_channels(&self, channels: usize, model: &str) -> Result<(), RuntimeError> {
        if !self.stacked_neighbours || channels == 3 {
            return Ok(());
        }
        Err(RuntimeError::BadDataset {
            path: self.root.clone(),
            reason: format!(
                "its images are slices stacked between their neighbours (RGB), but {model} reads \
                 {channels} channel(s); train with --channels 3"
            ),
        })
    }

    /// Refuses a model whose input does not match how this data set's images were made:
    /// [`Self::check_input_channels`], and a 2.5D model (slices stacked between their
    /// neighbours) on single slices.
    pub fn check_model_input(&self, input: &InputSpec, model: &str) -> Result<(), RuntimeError> {
        self.check_input_channels(input.channels, model)?;
        if input.stacked_neighbours && !self.stacked_neighbours {
            return Err(RuntimeError::BadDataset {
                path: self.root.clone(),
                reason: format!(
                    "{model} reads each slice stacked between its neighbours, but these images \
                     are single slices; import the data set again with --stack-neighbours"
                ),
            });
        }
        Ok(())
    }

    /// The domain used when none is named: the first in name order that has a training
    /// split (the domain a model is trained on), else the first. Test-only domains (a
    /// phantom's other hospitals, a `phone` capture domain, whose name sorts before `xh`)
    /// never become the default by being added.
    pub fn default_domain(&self) -> &str {
        self.domains
            .iter()
            .find(|(_, splits)| splits.contains_key("train"))
            .or_else(|| self.domains.iter().next())
            .map(|(name, _)| name.as_str())
            .unwrap_or(DEFAULT_DOMAIN)
    }

    /// The samples of one split; an unknown or empty split is an error listing what exists.
    pub fn split(&self, domain: Option<&str>, split: &str) -> Result<&[Sample], RuntimeError> {
        let domain = domain.unwrap_or_else(|| self.default_domain());
        let splits = self
            .domains
            .get(domain)
            .ok_or_else(|| RuntimeError::BadDataset {
                path: self.root.clone(),
                reason: format!(
                    "no domain '{domain}'; it has: {}",
                    self.domains.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })?;
        let samples = splits.get(split).ok_or_else(|| RuntimeError::BadDataset {
            path: self.root.clone(),
            reason: format!(
                "domain '{domain}' has no split '{split}'; it has: {}",
                splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        if samples.is_empty() {
            return Err(RuntimeError::BadDataset {
                path: self.root.clone(),
                reason: format!("split '{split}' of domain '{domain}' is empty"),
            });
        }
        Ok(samples)
    }

    pub fn image_count(&self) -> usize {
        self.domains
            .values()
            .flat_map(|s| s.values())
            .map(Vec::len)
            .sum()
    }
}

fn find_with_ext(dir: &Path, stem: &str, exts: &[&str]) -> Result<PathBuf, RuntimeError> {
    exts.iter()
        .map(|e| dir.join(format!("{stem}.{e}")))
        .find(|p| p.is_file())
        .ok_or_else(|| RuntimeError::BadDataset {
            path: dir.join(stem),
            reason: format!(
                "missing file: expected {stem}.{{{}}} in {}",
                exts.join(","),
                dir.display()
            ),
        })
}

fn dir_name(root: &Path) -> String {
    root.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    fn write_png(path: &Path) {
        GrayImage::new(4, 4).save(path).unwrap();
    }

    #[test]
    fn folder_layout_reports_missing_mask_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("images")).unwrap();
        std::fs::create_dir_all(dir.path().join("masks")).unwrap();
        write_png(&dir.path().join("images/a.png"));
        std::fs::write(
            dir.path().join("splits.json"),
            r#"{"classes":["bg","fg"],"domains":{"d":{"test":{"p1":["a"]}}}}"#,
        )
        .unwrap();
        let err = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("a.{png,npy}"), "{err}");
        write_png(&dir.path().join("masks/a.png"));
        let ds = Dataset::open(dir.path()).unwrap();
        assert_eq!(ds.split(None, "test").unwrap().len(), 1);
        let err = ds.split(None, "train").unwrap_err().to_string();
        assert!(
            err.contains("no split 'train'") && err.contains("test"),
            "{err}"
        );
    }

    #[test]
    fn jmedseg_layout_pairs_masks_with_images() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("p1")).unwrap();
        write_png(&dir.path().join("p1/s0.png"));
        std::fs::write(dir.path().join("p1/s0.npy"), b"").unwrap();
        std::fs::write(
            dir.path().join("train_label.json"),
            r#"{"p1":["p1/s0.npy"]}"#,
        )
        .unwrap();
        let ds = Dataset::open(dir.path()).unwrap();
        let s = &ds.split(None, "train").unwrap()[0];
        assert_eq!(s.patient, "p1");
        assert!(s.image.ends_with("p1/s0.png"));
        assert!(ds.split(None, "val").is_err());
    }

    #[test]
    fn default_domain_is_the_one_with_a_training_split() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("splits.json"),
            r#"{"classes":["bg","fg"],"domains":{"phone":{"test":{}},"xh":{"train":{},"test":{}}}}"#,
        )
        .unwrap();
        assert_eq!(Dataset::open(dir.path()).unwrap().default_domain(), "xh");
        std::fs::write(
            dir.path().join("splits.json"),
            r#"{"classes":["bg","fg"],"domains":{"b":{"test":{}},"a":{"test":{}}}}"#,
        )
        .unwrap();
        assert_eq!(Dataset::open(dir.path()).unwrap().default_domain(), "a");
    }

    #[test]
    fn empty_split_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("splits.json"),
            r#"{"classes":["bg","fg"],"domains":{"d":{"val":{}}}}"#,
        )
        .unwrap();
        let err = Dataset::open(dir.path())
            .unwrap()
            .split(Some("d"), "val")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
