//! `--from nifti`: image volumes and label volumes (.nii, .nii.gz) paired by file name, one
//! patient per image volume (or per a pattern on its name). Also the reader the MSD importer
//! uses: voxels after scl_slope/scl_inter, and the voxel-to-RAS affine from the header.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail, ensure};
use ndarray::{Axis, Ix3};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions, Unit};

use super::layout_writer::LayoutWriter;
use super::patient_pattern::PatientPattern;
use super::split_rule::SplitRule;
use super::volume::Volume;
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

/// Reads a NIfTI volume. `channel` picks one volume of a 4D file (MSD multi-modal images);
/// `None` requires a 3D volume (a 4th dimension of size 1 is allowed).
pub fn read_volume(path: &Path, channel: Option<usize>) -> anyhow::Result<Volume> {
    let shown = path.display();
    let obj = ReaderOptions::new()
        .read_file(path)
        .map_err(readable)
        .with_context(|| format!("cannot read NIfTI file {shown}"))?;
    let header = obj.header().clone();
    check_voxel_type(&header).with_context(|| format!("cannot decode the voxels of {shown}"))?;
    let mut arr = obj
        .into_volume()
        .into_ndarray::<f32>()
        .with_context(|| format!("cannot decode the voxels of {shown}"))?;
    let shape = arr.shape().to_vec();
    ensure!(
        (2..=7).contains(&shape.len()),
        "{shown}: {}-dimensional volume, expected 3D (or 4D with channels)",
        shape.len()
    );
    if shape.len() == 2 {
        arr = arr.insert_axis(Axis(2));
    }
    if shape.len() >= 4 {
        let channels = shape[3];
        let c = match channel {
            Some(c) if c < channels => c,
            Some(c) => bail!(
                "{shown}: --channel {c}, but the volume has {channels} channels (0..={})",
                channels - 1
            ),
            None if channels == 1 => 0,
            None => bail!("{shown}: a label volume must be 3D, this one has {channels} channels"),
        };
        arr = arr.index_axis_move(Axis(3), c);
        while arr.ndim() > 3 {
            ensure!(
                arr.shape()[3] == 1,
                "{shown}: dimensions beyond the 4th must be 1, got {shape:?}"
            );
            arr = arr.index_axis_move(Axis(3), 0);
        }
    } else if let Some(c) = channel.filter(|&c| c > 0) {
        bail!("{shown}: --channel {c}, but the volume is 3D (one channel)");
    }
    let arr = arr
        .into_dimensionality::<Ix3>()
        .with_context(|| format!("{shown}: not a 3D volume"))?;
    let dims = [arr.shape()[0], arr.shape()[1], arr.shape()[2]];
    // Reversing the axes makes i the fastest-varying index, as Volume stores it.
    let data: Vec<f32> = arr.t().iter().copied().collect();
    let affine = affine(&header).with_context(|| format!("{shown}: bad orientation header"))?;
    Volume::new(dims, data, affine).with_context(|| format!("{shown}: unusable geometry"))
}

/// nifti prints an io error in its Debug form and then once more as the error's source; one
/// plain sentence reads better, and a short file is the usual cause.
fn readable(e: nifti::NiftiError) -> anyhow::Error {
    match e {
        nifti::NiftiError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            anyhow!("the file ends before the data its header describes (truncated, or not NIfTI)")
        }
        nifti::NiftiError::Io(io) => anyhow!("{io}"),
        e => anyhow::Error::new(e),
    }
}

/// The voxel types `into_ndarray::<f32>` decodes. The nifti crate panics, rather than
/// erring, on complex or RGB voxels and on a bitpix that disagrees with the datatype, so
/// those are refused here first.
fn check_voxel_type(h: &NiftiHeader) -> anyhow::Result<()> {
    use nifti::NiftiType::*;
    let t = h.data_type()?;
    ensure!(
        matches!(
            t,
            Uint8 | Int8 | Uint16 | Int16 | Uint32 | Int32 | Uint64 | Int64 | Float32 | Float64
        ),
        "voxel type {t:?} is not supported; expected integer or real scalars (not complex, \
         RGB or 128-bit floats)"
    );
    let bits = t.size_of() * 8;
    ensure!(
        usize::try_from(h.bitpix) == Ok(bits),
        "header field bitpix is {}, but datatype {t:?} has {bits} bits per voxel",
        h.bitpix
    );
    Ok(())
}

/// Voxel-to-RAS affine in mm: sform when set, else qform, else the voxel sizes alone (the
/// NIfTI "method 1" fallback, which carries no orientation).
fn affine(h: &NiftiHeader) -> anyhow::Result<[[f64; 4]; 3]> {
    let to_mm = match h.xyzt_to_space() {
        Ok(Unit::Meter) => 1000.0,
        Ok(Unit::Micron) => 0.001,
        _ => 1.0,
    };
    let px = h.pixdim.map(f64::from);
    let mut a = if h.sform_code > 0 {
        [h.srow_x, h.srow_y, h.srow_z].map(|r| r.map(f64::from))
    } else if h.qform_code > 0 {
        let (b, c, d) = (
            f64::from(h.quatern_b),
            f64::from(h.quatern_c),
            f64::from(h.quatern_d),
        );
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let rot = [
            [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c),
            ],
            [
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b),
            ],
            [
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                a * a + d * d - c * c - b * b,
            ],
        ];
        // qfac (pixdim[0]) = -1 flips the third axis; anything else counts as +1.
        let qfac = if px[0] < 0.0 { -1.0 } else { 1.0 };
        let scale = [px[1], px[2], qfac * px[3]];
        let offset = [h.quatern_x, h.quatern_y, h.quatern_z].map(f64::from);
        [0, 1, 2].map(|r| {
            [
                rot[r][0] * scale[0],
                rot[r][1] * scale[1],
                rot[r][2] * scale[2],
                offset[r],
            ]
        })
    } else {
        [
            [px[1], 0.0, 0.0, 0.0],
            [0.0, px[2], 0.0, 0.0],
            [0.0, 0.0, px[3], 0.0],
        ]
    };
    for row in &mut a {
        for v in row.iter_mut() {
            *v *= to_mm;
        }
    }
    ensure!(
        a.iter().flatten().all(|v| v.is_finite()),
        "non-finite values in the voxel-to-patient transform"
    );
    Ok(a)
}

/// `p01.nii.gz` -> `p01`; None for files that are not NIfTI.
pub fn nifti_stem(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(".nii.gz")
        .or_else(|| file_name.strip_suffix(".nii"))
        .filter(|s| !s.is_empty() && !s.starts_with('.'))
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
