//! `--from msd`: a Medical Segmentation Decathlon task folder (`imagesTr/`, `labelsTr/`,
//! `dataset.json`). Classes come from dataset.json's `labels`; multi-modal 4D images give one
//! channel (`--channel`). The nnU-Net v2 variant (`{"background": 0, ...}` labels, one file
//! per channel named CASE_0000.nii.gz, no `training` list) is read too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;
use serde_json::Value;

use super::layout_writer::LayoutWriter;
use super::nifti::{Case, import_cases, list_nifti};
use super::split_rule::SplitRule;
use super::volume_slices::VolumeArgs;

#[derive(clap::Args, Debug, Default, Clone)]
pub struct MsdArgs {
    /// MSD task folder holding dataset.json, imagesTr/ and labelsTr/, e.g. Task04_Hippocampus
    /// [msd].
    #[arg(long)]
    pub msd: Option<PathBuf>,
}

#[derive(Deserialize)]
struct DatasetJson {
    #[serde(default)]
    labels: BTreeMap<String, Value>,
    #[serde(default)]
    modality: BTreeMap<String, String>,
    #[serde(default)]
    channel_names: BTreeMap<String, String>,
    #[serde(default)]
    training: Option<Vec<Pair>>,
    #[serde(default)]
    file_ending: Option<String>,
}

#[derive(Deserialize)]
struct Pair {
    image: String,
    label: String,
}

/// The task's dataset.json, read once.
pub struct MsdTask {
    root: PathBuf,
    json: DatasetJson,
    /// Class names in label order (index 0 = background).
    pub classes: Vec<String>,
}

impl MsdTask {
    pub fn open(args: &MsdArgs) -> anyhow::Result<Self> {
        let root = args
            .msd
            .clone()
            .context("--from msd needs --msd DIR (the task folder with dataset.json)")?;
        let path = root.join("dataset.json");
        let text = std::fs::read(&path)
            .with_context(|| format!("cannot read {} (is --msd a task folder?)", path.display()))?;
        let json: DatasetJson = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not an MSD dataset.json", path.display()))?;
        let classes =
            classes(&json.labels).with_context(|| format!("{}: labels", path.display()))?;
        Ok(Self {
            root,
            json,
            classes,
        })
    }

    /// Channel names (modalities) in order, for messages.
    pub fn modalities(&self) -> Vec<String> {
        let m = if self.json.modality.is_empty() {
            &self.json.channel_names
        } else {
            &self.json.modality
        };
        let mut v: Vec<(usize, &String)> = m
            .iter()
            .filter_map(|(k, n)| k.parse().ok().map(|k| (k, n)))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n)| n.clone()).collect()
    }

    /// Image/label pairs of the training set; patient = the case's file stem.
    fn cases(&self, channel: usize) -> anyhow::Result<(Vec<Case>, Option<usize>)> {
        match &self.json.training {
            Some(pairs) => {
                let mut cases = Vec::new();
                for p in pairs {
                    let image = self.root.join(p.image.trim_start_matches("./"));
                    let label = self.root.join(p.label.trim_start_matches("./"));
                    let stem = file_stem(&image)?;
                    for f in [&image, &label] {
                        ensure!(
                            f.is_file(),
                            "{}: lists {} which does not exist",
                            self.root.join("dataset.json").display(),
                            f.display()
                        );
                    }
                    cases.push(Case {
                        patient: stem.clone(),
                        stem,
                        image,
                        label,
                    });
                }
                // MSD stores modalities as the 4th dimension of one file.
                Ok((cases, Some(channel)))
            }
            None => {
                // nnU-Net v2: labelsTr/CASE.nii.gz with imagesTr/CASE_0000.nii.gz per channel.
                let ending = self.json.file_ending.as_deref().unwrap_or(".nii.gz");
                let mut cases = Vec::new();
                for (stem, label) in list_nifti(&self.root.join("labelsTr"))? {
                    let image = self
                        .root
                        .join("imagesTr")
                        .join(format!("{stem}_{channel:04}{ending}"));
                    ensure!(
                        image.is_file(),
                        "no image {} for label {} (channel {channel})",
                        image.display(),
                        label.display()
                    );
                    cases.push(Case {
                        patient: stem.clone(),
                        stem,
                        image,
                        label,
                    });
                }
                Ok((cases, None))
            }
        }
    }
}

fn file_stem(path: &Path) -> anyhow::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(super::nifti::nifti_stem)
        .map(str::to_string)
        .with_context(|| format!("{} is not a .nii or .nii.gz file", path.display()))
}

/// `{"0": "background", "1": "edema"}` (MSD) or `{"background": 0, "edema": 1}` (nnU-Net v2)
/// to names by index; the indices must be 0..n without gaps.
fn classes(labels: &BTreeMap<String, Value>) -> anyhow::Result<Vec<String>> {
    let mut by_index = BTreeMap::new();
    for (k, v) in labels {
        let (index, name) = match (k.trim().parse::<usize>(), v) {
            (Ok(i), Value::String(name)) => (i, name.clone()),
            (_, Value::Number(n)) => (
                n.as_u64()
                    .with_context(|| format!("'{k}': {n} is not a label index"))?
                    as usize,
                k.clone(),
            ),
            _ => bail!(
                "'{k}': {v} is neither an index -> name nor a name -> index entry (region-based labels are not supported)"
            ),
        };
        ensure!(
            by_index.insert(index, name).is_none(),
            "label index {index} appears twice"
        );
    }
    ensure!(
        by_index.len() >= 2,
        "needs at least background and one class, got {by_index:?}"
    );
    for (expect, &i) in by_index.keys().enumerate() {
        ensure!(
            i == expect,
            "label indices must be 0, 1, 2, ... without gaps; {expect} is missing"
        );
    }
    Ok(by_index.into_values().collect())
}

pub fn import(
    task: &MsdTask,
    vol: &VolumeArgs,
    rule: &SplitRule,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    let modalities = task.modalities();
    if modalities.len() > 1 {
        ensure!(
            vol.channel < modalities.len(),
            "--channel {} but the task has {} channels: {}",
            vol.channel,
            modalities.len(),
            modalities.join(", ")
        );
    }
    let (cases, channel) = task.cases(vol.channel)?;
    ensure!(
        !cases.is_empty(),
        "{}: no training cases",
        task.root.display()
    );
    import_cases(&cases, vol, channel, rule, writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(json: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn both_label_map_styles_give_classes_in_index_order() {
        let msd = classes(&labels(
            r#"{"0": "background", "2": "enhancing", "1": "edema"}"#,
        ));
        assert_eq!(msd.unwrap(), vec!["background", "edema", "enhancing"]);
        let v2 = classes(&labels(r#"{"background": 0, "PZ": 1, "TZ": 2}"#));
        assert_eq!(v2.unwrap(), vec!["background", "PZ", "TZ"]);
    }

    #[test]
    fn gaps_duplicates_and_regions_are_refused() {
        assert!(classes(&labels(r#"{"0": "bg", "2": "x"}"#)).is_err());
        assert!(classes(&labels(r#"{"bg": 0, "x": 0}"#)).is_err());
        assert!(classes(&labels(r#"{"bg": 0, "whole": [1, 2]}"#)).is_err());
    }
}
