//! `--from dicom`: one folder per patient holding one DICOM series (a file per slice, or
//! enhanced multi-frame files; read by [`super::dicom_series`]), with labels from a NIfTI label
//! volume, a DICOM SEG object or an RT Structure Set per patient. The file's window is used
//! when none is given.
//!
//! Uncompressed, deflated, JPEG (8-bit baseline and extended, lossless), JPEG 2000 and RLE
//! Lossless files are decoded by dicom-rs's pure-Rust codecs; other transfer syntaxes
//! (JPEG-LS, video) get an error naming the syntax and the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{DefaultDicomObject, InMemDicomObject};
pub use medseg_runtime::medical::dicom_file::{open, open_header, text};

use super::dicom_frames::first_item;
use super::dicom_rtstruct;
use super::dicom_seg;
use super::dicom_series::{Series, SeriesChoice, read_series};
use super::layout_writer::LayoutWriter;
use super::nifti::{find_label, read_volume};
use super::split_rule::SplitRule;
use super::volume::Volume;
use super::volume_slices::{LabelledVolume, VolumeArgs, write_volume};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct DicomArgs {
    /// Folder with one sub-folder per patient, each holding one DICOM series, in sub-folders
    /// too (or a single series folder: one patient named after it) [dicom].
    #[arg(long)]
    pub dicom: Option<PathBuf>,
    /// Folder of per-patient labels: PATIENT.nii.gz / PATIENT.nii (label volume on the
    /// series' grid) or PATIENT.dcm (a binary DICOM SEG or an RT Structure Set; segments and
    /// ROIs named like a --classes entry become that class) [dicom].
    #[arg(long)]
    pub dicom_labels: Option<PathBuf>,
    /// Part of the SeriesDescription (any case) of the series to read where a patient folder
    /// holds several, e.g. a study export with scouts; DICOM labels pick the series they
    /// reference themselves [dicom].
    #[arg(long)]
    pub dicom_series: Option<String>,
}

/// The label value of the class named `name` (any case, spaces around ignored); background
/// (class 0) is never a structure's class.
pub fn class_named(classes: &[String], name: &str) -> Option<u8> {
    let name = name.trim();
    let i = classes
        .iter()
        .skip(1)
        .position(|c| c.trim().eq_ignore_ascii_case(name))?;
    u8::try_from(i + 1).ok()
}

/// A patient's labels: a NIfTI volume, or a DICOM object (SEG or RT Structure Set) already
/// open, since it names the series it was drawn on.
enum LabelFile {
    Nifti(PathBuf),
    Dicom(Box<DefaultDicomObject>),
}

/// The series a SEG or an RT Structure Set was drawn on, when it says.
fn referenced_series(obj: &DefaultDicomObject) -> Option<String> {
    let uid = |o: &InMemDicomObject| {
        o.element(tags::SERIES_INSTANCE_UID)
            .ok()?
            .to_str()
            .ok()
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
    };
    // SEG: ReferencedSeriesSequence; RT Structure Set: frame of reference > study > series.
    first_item(obj, tags::REFERENCED_SERIES_SEQUENCE)
        .and_then(uid)
        .or_else(|| {
            let study = first_item(
                first_item(obj, tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE)?,
                tags::RT_REFERENCED_STUDY_SEQUENCE,
            )?;
            uid(first_item(study, tags::RT_REFERENCED_SERIES_SEQUENCE)?)
        })
}

/// Labels from a DICOM object: a SEG or an RT Structure Set, told apart by SOP class.
fn read_dicom_labels(
    path: &Path,
    obj: &DefaultDicomObject,
    series: &Series,
    classes: &[String],
) -> anyhow::Result<Volume> {
    let class = text(obj, tags::SOP_CLASS_UID).unwrap_or_default();
    match class.trim_end_matches('\0') {
        uids::SEGMENTATION_STORAGE => dicom_seg::read_seg(path, obj, series, classes),
        uids::RT_STRUCTURE_SET_STORAGE => dicom_rtstruct::read_rtstruct(path, obj, series, classes),
        _ => bail!(
            "{} is neither a DICOM Segmentation nor an RT Structure Set (SOP class {class})",
            path.display()
        ),
    }
}

pub fn import(
    args: &DicomArgs,
    vol: &VolumeArgs,
    rule: &SplitRule,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    let (Some(root), Some(labels)) = (&args.dicom, &args.dicom_labels) else {
        bail!(
            "--from dicom needs --dicom DIR (series folders) and --dicom-labels DIR (labels per patient)"
        );
    };
    let mut series: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .with_context(|| format!("cannot read {}", root.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    series.sort();
    if series.is_empty() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .context("--dicom has no folder name")?;
        series.push((name, root.clone()));
    }
    let patients: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    let assignment = rule.assign(&patients)?;
    let bar = indicatif::ProgressBar::new(series.len() as u64);
    for (patient, dir) in &series {
        bar.inc(1);
        let Some(split) = assignment.split_of.get(patient) else {
            continue;
        };
        let dcm = labels.join(format!("{patient}.dcm"));
        let label_file = match find_label(labels, patient, "") {
            Some(nifti) => LabelFile::Nifti(nifti),
            None if dcm.is_file() => LabelFile::Dicom(Box::new(open(&dcm)?)),
            None => bail!(
                "no labels for series {} in {} (looked for {patient}.nii.gz, {patient}.nii, {patient}.dcm)",
                dir.display(),
                labels.display()
            ),
        };
        let referenced = match &label_file {
            LabelFile::Dicom(obj) => referenced_series(obj),
            LabelFile::Nifti(_) => None,
        };
        let choice = SeriesChoice {
            uid: referenced.as_deref(),
            description: args.dicom_series.as_deref(),
        };
        let s = read_series(dir, choice)?;
        let (label_volume, label_path) = match label_file {
            LabelFile::Nifti(p) => (read_volume(&p, None)?, p),
            LabelFile::Dicom(obj) => (read_dicom_labels(&dcm, &obj, &s, writer.classes())?, dcm),
        };
        let (image_source, label_source) =
            (dir.display().to_string(), label_path.display().to_string());
        write_volume(
            &LabelledVolume {
                name: patient,
                patient,
                image: &s.volume,
                image_source: &image_source,
                labels: &label_volume,
                label_source: &label_source,
                file_window: s.window,
            },
            split,
            vol,
            writer,
        )?;
    }
    bar.finish_and_clear();
    Ok(assignment.unassigned)
}
