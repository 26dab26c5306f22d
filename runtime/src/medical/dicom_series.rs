//! One DICOM series read from a folder into a volume: classic files (an image each) or enhanced
//! multi-frame files, ordered by ImagePositionPatient projected on the slice normal, with
//! rescale slope/intercept applied (HU for CT) and the file's window kept. Enhanced files give
//! these per frame in functional groups ([`super::dicom_frames`]). Gaps, mixed series and
//! unreadable geometry are refused, naming the files.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{DecodedPixelData, PixelDecoder};

use super::dicom_file::{from_marker, open, open_header, text};
use super::dicom_frames::{frame_floats, number_of_frames};
use super::volume::Volume;
use crate::panic_guard::guarded;

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

/// One image of the series: a classic file, or one frame of an enhanced multi-frame file.
struct SliceFrame {
    /// Index into the series' files.
    file: usize,
    frame: usize,
    position: [f64; 3],
    along: f64,
}

/// A file, or a frame of a multi-frame file, as errors name it.
fn frame_name(path: &Path, frames: usize, frame: usize) -> String {
    if frames > 1 {
        format!("{} frame {}", path.display(), frame + 1)
    } else {
        path.display().to_string()
    }
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

/// `v` as a point; `source` (a file or frame) and `name` (the attribute) go into the error.
fn three(v: &[f64], name: &str, source: &str) -> anyhow::Result<[f64; 3]> {
    match v {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => bail!("{source}: {name} has {} values, expected 3", v.len()),
    }
}

/// Which series to read from a folder that holds several (a study export with scouts,
/// reformats or other sequences). With neither set, the folder must hold one series.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesChoice<'a> {
    /// SeriesInstanceUID, e.g. the series a SEG or RT Structure Set references; ignored, with
    /// a warning, when the folder holds no such series.
    pub uid: Option<&'a str>,
    /// Part of the SeriesDescription, in any case.
    pub description: Option<&'a str>,
}

/// Keeps the files of the series `choice` names, or of the folder's only series; otherwise an
/// error listing the series found, each with its description, size and a file.
fn select_series(
    dir: &Path,
    files: Vec<(PathBuf, DefaultDicomObject)>,
    choice: SeriesChoice,
) -> anyhow::Result<Vec<(PathBuf, DefaultDicomObject)>> {
    let uid_of =
        |obj: &DefaultDicomObject| text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    let description_of =
        |obj: &DefaultDicomObject| text(obj, tags::SERIES_DESCRIPTION).unwrap_or_default();
    // Series in order of their first file.
    let mut found: Vec<(String, String, usize, &Path)> = Vec::new();
    for (path, obj) in &files {
        let uid = uid_of(obj);
        match found.iter_mut().find(|s| s.0 == uid) {
            Some(s) => s.2 += 1,
            None => found.push((uid, description_of(obj), 1, path)),
        }
    }
    let listing = || {
        found
            .iter()
            .map(|(uid, desc, n, path)| {
                format!("{uid} \"{desc}\": {n} file(s), e.g. {}", path.display())
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    // Labels whose reference was not carried through anonymization still fit by position:
    // then the folder's only series (or the one named) is read, and the frames placed on it.
    let referenced = choice.uid.filter(|uid| found.iter().any(|s| s.0 == *uid));
    if let (Some(uid), None) = (choice.uid, referenced) {
        tracing::warn!(
            "the labels reference series {uid}, which {} does not hold; reading the series \
             there instead",
            dir.display()
        );
    }
    let wanted: Vec<&str> = match (referenced, choice.description) {
        (Some(uid), _) => vec![uid],
        (None, Some(part)) => found
            .iter()
            .filter(|s| s.1.to_lowercase().contains(&part.to_lowercase()))
            .map(|s| s.0.as_str())
            .collect(),
        (None, None) => found.iter().map(|s| s.0.as_str()).collect(),
    };
    if wanted.len() != 1 {
        let how = match choice.description {
            Some(part) => format!("{} series match --dicom-series '{part}'", wanted.len()),
            None => "mixed series".to_string(),
        };
        bail!(
            "{how} in {}: {}; keep one series per folder, or pick one with --dicom-series \
             (part of its SeriesDescription)",
            dir.display(),
            listing()
        );
    }
    let wanted = wanted[0].to_string();
    Ok(files
        .into_iter()
        .filter(|(_, obj)| uid_of(obj) == wanted)
        .collect())
}

/// The DICOM files anywhere below `dir` (a series folder, or a patient's export with study and
/// series sub-folders), in path order. Files without the "DICM" marker of a DICOM file (a
/// viewer program, notes, an index) are left out, as are hidden files and DICOMDIR.
fn dicom_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut others = 0usize;
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read the folder {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || name.starts_with('.') || name == "DICOMDIR" {
            continue;
        }
        if has_dicm_marker(entry.path())? {
            files.push(entry.into_path());
        } else {
            others += 1;
        }
    }
    ensure!(
        !files.is_empty(),
        "{} holds no DICOM files ({others} other files, none with the DICM marker)",
        dir.display()
    );
    if others > 0 {
        tracing::info!(
            "{}: left out {others} files that are not DICOM",
            dir.display()
        );
    }
    Ok(files)
}

/// Whether the file starts as a DICOM file does ([`from_marker`]), reading its first 132 bytes.
pub fn has_dicm_marker(path: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(132);
    std::fs::File::open(path)
        .and_then(|f| f.take(132).read_to_end(&mut head))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(from_marker(&head).is_some())
}

/// Reads the DICOM files of one series below `dir` ([`SeriesChoice`]): classic files (an image
/// each) or enhanced multi-frame files, whose frames are placed by their own positions.
pub fn read_series(dir: &Path, choice: SeriesChoice) -> anyhow::Result<Series> {
    let paths = dicom_files(dir)?;
    // Headers first: the other series of a study folder are never decoded, whatever their
    // transfer syntax.
    let headers = paths
        .into_iter()
        .map(|p| open_header(&p).map(|obj| (p, obj)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let files = select_series(dir, headers, choice)?
        .into_iter()
        .map(|(p, _)| open(&p).map(|obj| (p, obj)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (first_path, first) = &files[0];
    let orientation = |obj: &DefaultDicomObject, frame: usize, name: &str| {
        frame_floats(
            obj,
            frame,
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .with_context(|| format!("{name}: no ImageOrientationPatient (as numbers)"))
    };
    let first_name = frame_name(first_path, number_of_frames(first), 0);
    let iop = orientation(first, 0, &first_name)?;
    ensure!(
        iop.len() == 6,
        "{first_name}: ImageOrientationPatient has {} values, expected 6",
        iop.len()
    );
    let row_dir = [iop[0], iop[1], iop[2]];
    let col_dir = [iop[3], iop[4], iop[5]];
    // Zero or skewed vectors would put every slice at one position along the normal, which
    // would then be reported as a mixed series.
    let unit = |v: [f64; 3]| v.iter().all(|x| x.is_finite()) && (dot(v, v) - 1.0).abs() < 1e-2;
    ensure!(
        unit(row_dir) && unit(col_dir) && dot(row_dir, col_dir).abs() < 1e-2,
        "{first_name}: ImageOrientationPatient {iop:?} is not two orthogonal unit vectors"
    );
    let normal = cross(row_dir, col_dir);
    // Lossy JPEG or JPEG 2000 shifts values (HU on CT) by the codec's error; the importer
    // reads them all the same, and says so.
    if text(first, tags::LOSSY_IMAGE_COMPRESSION).as_deref() == Some("01") {
        tracing::warn!(
            "series {} is lossy-compressed (LossyImageCompression 01): its pixel values carry \
             the codec's error",
            dir.display()
        );
    }
    let mut slices = Vec::new();
    for (file, (path, obj)) in files.iter().enumerate() {
        let frames = number_of_frames(obj);
        for frame in 0..frames {
            let name = frame_name(path, frames, frame);
            let o = orientation(obj, frame, &name)?;
            if o.len() != 6 || o.iter().zip(&iop).any(|(a, b)| (a - b).abs() > 1e-4) {
                bail!(
                    "mixed series in {}: {first_name} and {name} have different ImageOrientationPatient",
                    dir.display()
                );
            }
            let position = frame_floats(
                obj,
                frame,
                tags::PLANE_POSITION_SEQUENCE,
                tags::IMAGE_POSITION_PATIENT,
            )
            .with_context(|| format!("{name}: no ImagePositionPatient (as numbers)"))?;
            let position = three(&position, "ImagePositionPatient", &name)?;
            slices.push(SliceFrame {
                file,
                frame,
                along: dot(position, normal),
                position,
            });
        }
    }
    slices.sort_by(|a, b| a.along.total_cmp(&b.along));
    let name_of = |s: &SliceFrame| {
        let (path, obj) = &files[s.file];
        frame_name(path, number_of_frames(obj), s.frame)
    };
    let slice_spacing = check_spacing(dir, &slices, first, name_of)?;

    let ps = frame_floats(first, 0, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
        .with_context(|| format!("{first_name}: no PixelSpacing (as numbers)"))?;
    ensure!(
        ps.len() == 2 && ps.iter().all(|v| v.is_finite() && *v > 0.0),
        "{first_name}: PixelSpacing {ps:?} is not two positive numbers"
    );
    let pixel_spacing = (ps[0], ps[1]);
    let (mut rows, mut cols) = (0usize, 0usize);
    let mut data = Vec::new();
    // A multi-frame file is decoded once for all its frames; classic files one at a time.
    let mut decoded: Option<(usize, DecodedPixelData<'_>)> = None;
    for (n, s) in slices.iter().enumerate() {
        let (path, obj) = &files[s.file];
        let px = match &decoded {
            Some((file, px)) if *file == s.file => px,
            _ => {
                let px = decode(path, obj)?;
                &decoded.insert((s.file, px)).1
            }
        };
        let (r, c) = (px.rows() as usize, px.columns() as usize);
        if n == 0 {
            (rows, cols) = (r, c);
        } else if (r, c) != (rows, cols) {
            bail!(
                "mixed series in {}: {} is {cols}x{rows} but {} is {c}x{r}",
                dir.display(),
                name_of(&slices[0]),
                name_of(s)
            );
        }
        // Modality LUT (rescale slope/intercept, the frame's own in enhanced files) is applied
        // by default: values in HU for CT.
        let values: Vec<f32> = guarded(|| Ok(px.to_vec_frame(s.frame as u32)?))
            .with_context(|| format!("cannot convert the pixel data of {}", name_of(s)))?;
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
    let window = stored_window(first);
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

/// The window (centre, width) the file stores for its first frame, if a usable one.
pub fn stored_window(obj: &DefaultDicomObject) -> Option<(f64, f64)> {
    let value = |tag| {
        frame_floats(obj, 0, tags::FRAME_VOILUT_SEQUENCE, tag).and_then(|v| v.first().copied())
    };
    match (value(tags::WINDOW_CENTER), value(tags::WINDOW_WIDTH)) {
        (Some(c), Some(w)) if c.is_finite() && w.is_finite() && w > 0.0 => Some((c, w)),
        _ => None,
    }
}

/// Decodes every frame of a file, checking it holds grey images and all the pixels it claims.
pub fn decode<'a>(
    path: &Path,
    obj: &'a DefaultDicomObject,
) -> anyhow::Result<DecodedPixelData<'a>> {
    let px = guarded(|| Ok(obj.decode_pixel_data()?))
        .with_context(|| format!("cannot decode the pixel data of {}", path.display()))?;
    ensure!(
        px.samples_per_pixel() == 1,
        "{}: {} samples per pixel; expected grey images",
        path.display(),
        px.samples_per_pixel()
    );
    // dicom-pixeldata's "Frame #0 is out of range" does not say what is short.
    let (r, c, frames) = (
        px.rows() as usize,
        px.columns() as usize,
        px.number_of_frames() as usize,
    );
    let need = (r * c * usize::from(px.bits_allocated())).div_ceil(8) * frames;
    ensure!(
        px.data().len() >= need,
        "{}: PixelData holds {} bytes, but {frames} frame(s) of {c}x{r} pixels of {} bits need {need}",
        path.display(),
        px.data().len(),
        px.bits_allocated()
    );
    Ok(px)
}

/// The distance between sorted slices; a gap wider than 1.5 slices means missing files, two
/// images at one position a mixed series (or several images per position, as multi-echo
/// enhanced files hold).
fn check_spacing(
    dir: &Path,
    slices: &[SliceFrame],
    first: &DefaultDicomObject,
    name_of: impl Fn(&SliceFrame) -> String,
) -> anyhow::Result<f64> {
    if slices.len() == 1 {
        let t = frame_floats(
            first,
            0,
            tags::PIXEL_MEASURES_SEQUENCE,
            tags::SLICE_THICKNESS,
        )
        .and_then(|v| v.first().copied())
        .filter(|t| *t > 0.0);
        return Ok(t.unwrap_or(1.0));
    }
    let gaps: Vec<f64> = slices.windows(2).map(|w| w[1].along - w[0].along).collect();
    if let Some(n) = gaps.iter().position(|g| *g < 1e-3) {
        bail!(
            "mixed series in {}: {} and {} are at the same position; put one series per folder",
            dir.display(),
            name_of(&slices[n]),
            name_of(&slices[n + 1])
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
            name_of(&slices[n]),
            name_of(&slices[n + 1])
        );
    }
    // The mean over the whole stack is the most accurate spacing for the affine.
    Ok((slices[slices.len() - 1].along - slices[0].along) / (slices.len() - 1) as f64)
}
