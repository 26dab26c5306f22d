//! `--from nifti`: image volumes and label volumes (.nii, .nii.gz) paired by file name, one
//! patient per image volume (or per a pattern on its name). The volumes are read by the
//! runtime's reader ([`medseg_runtime::medical::nifti`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
pub use medseg_runtime::medical::nifti::{nifti_stem, read_volume};

use super::layout_writer::LayoutWriter;
use super::patient_pattern::PatientPattern;
use super::split_rule::SplitRule;
use super::volume_slices::{LabelledVolume, VolumeArgs, write_volume};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct NiftiArgs {
    /// Folder of image volumes (.nii, .nii.gz) [nifti].
    #[arg(long)]
    pub volumes: Option<PathBuf>,
    /// Folder of label volumes, named like the images (or with --label-suffix) [nifti].
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Suffix of a label volume's name after the image's stem, e.g. '_seg' pairs p01.nii.gz
    /// with p01_seg.nii.gz [nifti].
    #[arg(long, default_value = "")]
    pub label_suffix: String,
}

/// NIfTI files in a folder, sorted by name: (stem, path).
pub fn list_nifti(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            nifti_stem(&name).map(|s| (s.to_string(), e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// The label volume beside a stem: STEM+SUFFIX.nii.gz or .nii.
pub fn find_label(dir: &Path, stem: &str, suffix: &str) -> Option<PathBuf> {
    ["nii.gz", "nii"]
        .iter()
        .map(|ext| dir.join(format!("{stem}{suffix}.{ext}")))
        .find(|p| p.is_file())
}

/// One patient per image volume: the volume's stem, or what `pattern` finds in it.
pub fn import(
    args: &NiftiArgs,
    pattern: Option<&PatientPattern>,
    vol: &VolumeArgs,
    rule: &SplitRule,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    let (Some(volumes), Some(labels)) = (&args.volumes, &args.labels) else {
        bail!("--from nifti needs --volumes DIR (images) and --labels DIR (label volumes)");
    };
    let images = list_nifti(volumes)?;
    ensure!(
        !images.is_empty(),
        "no .nii or .nii.gz files in {}",
        volumes.display()
    );
    let mut cases = Vec::new();
    for (stem, path) in images {
        // A label folder that is the image folder holds the labels too: skip them as images.
        if !args.label_suffix.is_empty() && stem.ends_with(&args.label_suffix) && labels == volumes
        {
            continue;
        }
        let patient = match pattern {
            Some(p) => p
                .patient(&stem)
                .with_context(|| format!("--patient-pattern '{p}' does not match volume '{stem}'"))?
                .to_string(),
            None => stem.clone(),
        };
        let label = find_label(labels, &stem, &args.label_suffix).with_context(|| {
            format!(
                "no label volume for {} in {} (looked for {stem}{}.nii.gz and .nii)",
                path.display(),
                labels.display(),
                args.label_suffix
            )
        })?;
        cases.push(Case {
            stem,
            patient,
            image: path,
            label,
        });
    }
    import_cases(&cases, vol, Some(vol.channel), rule, writer)
}

/// One image volume with its label volume.
pub struct Case {
    /// Slice names start with it (unique per volume).
    pub stem: String,
    pub patient: String,
    pub image: PathBuf,
    pub label: PathBuf,
}

/// Imports NIfTI cases whose patients the rule assigns; returns the patients it left out.
pub fn import_cases(
    cases: &[Case],
    vol: &VolumeArgs,
    channel: Option<usize>,
    rule: &SplitRule,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    let patients: Vec<String> = cases.iter().map(|c| c.patient.clone()).collect();
    let assignment = rule.assign(&patients)?;
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    for case in cases {
        bar.inc(1);
        let Some(split) = assignment.split_of.get(&case.patient) else {
            continue;
        };
        let image = read_volume(&case.image, channel)?;
        let labels = read_volume(&case.label, None)?;
        let (image_source, label_source) = (
            case.image.display().to_string(),
            case.label.display().to_string(),
        );
        write_volume(
            &LabelledVolume {
                name: &case.stem,
                patient: &case.patient,
                image: &image,
                image_source: &image_source,
                labels: &labels,
                label_source: &label_source,
                file_window: None,
            },
            split,
            vol,
            writer,
        )?;
    }
    bar.finish_and_clear();
    let mut left_out = assignment.unassigned;
    left_out.dedup();
    Ok(left_out)
}
