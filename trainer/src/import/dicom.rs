//! `--from dicom`: one folder per patient holding one DICOM series (a file per slice), with
//! labels from a NIfTI label volume or a DICOM SEG object per patient. Slices are ordered by
//! ImagePositionPatient projected on the slice normal; pixel values go through the rescale
//! slope/intercept (HU for CT), and the file's window is used when none is given.
//!
//! Uncompressed, deflated, JPEG (baseline, extended, lossless), JPEG 2000 and RLE Lossless
//! files are decoded by dicom-rs's pure-Rust codecs; other transfer syntaxes (JPEG-LS, video)
//! get an error naming the syntax and the file.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::dicom_seg;
use super::layout_writer::LayoutWriter;
use super::nifti::{find_label, read_volume};
use super::split_rule::SplitRule;
use super::volume::Volume;
use super::volume_slices::{LabelledVolume, VolumeArgs, write_volume};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct DicomArgs {
    /// Folder with one sub-folder per patient, each holding one DICOM series (or a single
    /// series folder: one patient named after it) [dicom].
    #[arg(long)]
    pub dicom: Option<PathBuf>,
    /// Folder of per-patient labels: PATIENT.nii.gz / PATIENT.nii (label volume on the
    /// series' grid) or PATIENT.dcm (DICOM SEG, binary) [dicom].
    #[arg(long)]
    pub dicom_labels: Option<PathBuf>,
}

/// Opens a DICOM file and refuses transfer syntaxes whose pixel data this build cannot decode.
pub fn open(path: &Path) -> anyhow::Result<DefaultDicomObject> {
    let obj = OpenFileOptions::new()
        .open_file(path)
        .with_context(|| format!("{} is not a readable DICOM file", path.display()))?;
    let uid = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    match TransferSyntaxRegistry.get(uid) {
        Some(ts) if ts.can_decode_all() => Ok(obj),
        ts => bail!(
            "unsupported transfer syntax {} ({uid}) in {}: this build reads uncompressed, \
             deflated, JPEG, JPEG 2000 and RLE Lossless DICOM; decompress the series first \
             (e.g. `gdcmconv --raw IN OUT` or `dcmdjpls IN OUT`)",
            ts.map_or("unknown", |t| t.name()),
            path.display()
        ),
    }
}

pub fn floats(
    obj: &DefaultDicomObject,
    tag: Tag,
    name: &str,
    path: &Path,
) -> anyhow::Result<Vec<f64>> {
    obj.element(tag)
        .with_context(|| format!("{}: no {name}", path.display()))?
        .to_multi_float64()
        .with_context(|| format!("{}: {name} is not a list of numbers", path.display()))
}

pub fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// One series as a volume, plus what the SEG mapping and the window need.
pub struct Series {
    pub volume: Volume,
    /// The slices' positions (LPS mm), in volume order.
    pub positions: Vec<[f64; 3]>,
    /// Slice normal (LPS) and the distance between slices in mm.
    pub normal: [f64; 3],
    pub slice_spacing: f64,
    /// (row, column) directions in LPS and pixel spacing (row, column) in mm.
    pub row_dir: [f64; 3],
    pub col_dir: [f64; 3],
    pub pixel_spacing: (f64, f64),
    pub window: Option<(f64, f64)>,
}

struct SliceFile {
    path: PathBuf,
    obj: DefaultDicomObject,
    position: [f64; 3],
    along: f64,
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn three(v: &[f64], name: &str, path: &Path) -> anyhow::Result<[f64; 3]> {
    match v {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!(
            "{}: {name} has {} values, expected 3",
            path.display(),
            v.len()
        ),
    }
}

/// Reads every DICOM file in `dir` as one series.
pub fn read_series(dir: &Path) -> anyhow::Result<Series> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read series folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !name.starts_with('.') && name != "DICOMDIR"
        })
        .collect();
    files.sort();
    ensure!(
        !files.is_empty(),
        "series folder {} holds no files",
        dir.display()
    );
    let first_path = files[0].clone();
    let first = open(&first_path)?;
    let iop = floats(
        &first,
        tags::IMAGE_ORIENTATION_PATIENT,
        "ImageOrientationPatient",
        &first_path,
    )?;
    ensure!(
        iop.len() == 6,
        "{}: ImageOrientationPatient has {} values, expected 6",
        first_path.display(),
        iop.len()
    );
    let row_dir = [iop[0], iop[1], iop[2]];
    let col_dir = [iop[3], iop[4], iop[5]];
    // Zero or skewed vectors would put every slice at one position along the normal, which
    // would then be reported as a mixed series.
    let unit = |v: [f64; 3]| v.iter().all(|x| x.is_finite()) && (dot(v, v) - 1.0).abs() < 1e-2;
    ensure!(
        unit(row_dir) && unit(col_dir) && dot(row_dir, col_dir).abs() < 1e-2,
        "{}: ImageOrientationPatient {iop:?} is not two orthogonal unit vectors",
        first_path.display()
    );
    let normal = cross(row_dir, col_dir);
    // Lossy JPEG or JPEG 2000 shifts values (HU on CT) by the codec's error; the importer
    // reads them all the same, and says so.
    if text(&first, tags::LOSSY_IMAGE_COMPRESSION).as_deref() == Some("01") {
        tracing::warn!(
            "series {} is lossy-compressed (LossyImageCompression 01): its pixel values carry \
             the codec's error",
            dir.display()
        );
    }
    let series_uid = text(&first, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let mut slices = Vec::with_capacity(files.len());
    for (n, path) in files.into_iter().enumerate() {
        let obj = if n == 0 { first.clone() } else { open(&path)? };
        let uid = text(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
        if uid != series_uid {
            bail!(
                "mixed series in {}: {} is series {series_uid} but {} is series {uid}; put one series per folder",
                dir.display(),
                first_path.display(),
                path.display()
            );
        }
        let o = floats(
            &obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            "ImageOrientationPatient",
            &path,
        )?;
        if o.len() != 6 || o.iter().zip(&iop).any(|(a, b)| (a - b).abs() > 1e-4) {
            bail!(
                "mixed series in {}: {} and {} have different ImageOrientationPatient",
                dir.display(),
                first_path.display(),
                path.display()
            );
        }
        let position = three(
            &floats(
                &obj,
                tags::IMAGE_POSITION_PATIENT,
                "ImagePositionPatient",
                &path,
            )?,
            "ImagePositionPatient",
            &path,
        )?;
        slices.push(SliceFile {
            along: dot(position, normal),
            path,
            obj,
            position,
        });
    }
    slices.sort_by(|a, b| a.along.total_cmp(&b.along));
    let slice_spacing = check_spacing(dir, &slices, &first)?;

    let ps = floats(&first, tags::PIXEL_SPACING, "PixelSpacing", &first_path)?;
    ensure!(
        ps.len() == 2 && ps.iter().all(|v| v.is_finite() && *v > 0.0),
        "{}: PixelSpacing {ps:?} is not two positive numbers",
        first_path.display()
    );
    let pixel_spacing = (ps[0], ps[1]);
    let (mut rows, mut cols) = (0usize, 0usize);
    let mut data = Vec::new();
    for (n, s) in slices.iter().enumerate() {
        let px = s
            .obj
            .decode_pixel_data()
            .with_context(|| format!("cannot decode the pixel data of {}", s.path.display()))?;
        ensure!(
            px.samples_per_pixel() == 1 && px.number_of_frames() == 1,
            "{}: {} samples per pixel, {} frames; expected one grey frame per file",
            s.path.display(),
            px.samples_per_pixel(),
            px.number_of_frames()
        );
        let (r, c) = (px.rows() as usize, px.columns() as usize);
        if n == 0 {
            (rows, cols) = (r, c);
        } else if (r, c) != (rows, cols) {
            bail!(
                "mixed series in {}: {} is {cols}x{rows} but {} is {c}x{r}",
                dir.display(),
                slices[0].path.display(),
                s.path.display()
            );
        }
        // dicom-pixeldata's "Frame #0 is out of range" does not say what is short.
        let need = (r * c * usize::from(px.bits_allocated())).div_ceil(8);
        ensure!(
            px.data().len() >= need,
            "{}: PixelData holds {} bytes, but {c}x{r} pixels of {} bits need {need}",
            s.path.display(),
            px.data().len(),
            px.bits_allocated()
        );
        // Modality LUT (rescale slope/intercept) is applied by default: values in HU for CT.
        let values: Vec<f32> = px
            .to_vec()
            .with_context(|| format!("cannot convert the pixel data of {}", s.path.display()))?;
        data.extend(values);
    }
    // Voxel axes: i = column, j = row, k = slice; LPS to RAS negates x and y.
    let origin = slices[0].position;
    let affine: [[f64; 4]; 3] = std::array::from_fn(|r| {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        [
            sign * row_dir[r] * pixel_spacing.1,
            sign * col_dir[r] * pixel_spacing.0,
            sign * normal[r] * slice_spacing,
            sign * origin[r],
        ]
    });
    let volume = Volume::new([cols, rows, slices.len()], data, affine)
        .with_context(|| format!("series {}: unusable geometry", dir.display()))?;
    let window = match (
        floats(&first, tags::WINDOW_CENTER, "WindowCenter", &first_path),
        floats(&first, tags::WINDOW_WIDTH, "WindowWidth", &first_path),
    ) {
        (Ok(c), Ok(w)) if !c.is_empty() && !w.is_empty() && w[0] > 0.0 => Some((c[0], w[0])),
        _ => None,
    };
    Ok(Series {
        volume,
        positions: slices.iter().map(|s| s.position).collect(),
        normal,
        slice_spacing,
        row_dir,
        col_dir,
        pixel_spacing,
        window,
    })
}

/// The distance between sorted slices; a gap wider than 1.5 slices means missing files, two
/// files at one position a mixed series.
fn check_spacing(
    dir: &Path,
    slices: &[SliceFile],
    first: &DefaultDicomObject,
) -> anyhow::Result<f64> {
    if slices.len() == 1 {
        let t = first
            .element_opt(tags::SLICE_THICKNESS)
            .ok()
            .flatten()
            .and_then(|e| e.to_float64().ok())
            .filter(|t| *t > 0.0);
        return Ok(t.unwrap_or(1.0));
    }
    let gaps: Vec<f64> = slices.windows(2).map(|w| w[1].along - w[0].along).collect();
    if let Some(n) = gaps.iter().position(|g| *g < 1e-3) {
        bail!(
            "mixed series in {}: {} and {} are at the same position; put one series per folder",
            dir.display(),
            slices[n].path.display(),
            slices[n + 1].path.display()
        );
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    // The lower median: missing files only ever widen gaps, so with few slices (where one
    // wide gap is half of them) the narrower half is the true spacing.
    let typical = sorted[(sorted.len() - 1) / 2];
    if let Some(n) = gaps.iter().position(|g| *g > 1.5 * typical) {
        bail!(
            "missing slices in series {}: {:.2} mm between {} and {}, but slices are {typical:.2} mm apart",
            dir.display(),
            gaps[n],
            slices[n].path.display(),
            slices[n + 1].path.display()
        );
    }
    // The mean over the whole stack is the most accurate spacing for the affine.
    Ok((slices[slices.len() - 1].along - slices[0].along) / (slices.len() - 1) as f64)
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
        let s = read_series(dir)?;
        let seg = labels.join(format!("{patient}.dcm"));
        let (label_volume, label_path) = if let Some(p) = find_label(labels, patient, "") {
            (read_volume(&p, None)?, p)
        } else if seg.is_file() {
            (dicom_seg::read_seg(&seg, &s)?, seg)
        } else {
            bail!(
                "no labels for series {} in {} (looked for {patient}.nii.gz, {patient}.nii, {patient}.dcm)",
                dir.display(),
                labels.display()
            );
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
