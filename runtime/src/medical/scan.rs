//! A scan handed to the runtime: one DICOM file (a single image or a multi-frame file), a folder
//! holding one DICOM series, or a NIfTI volume. Its slices come out as 8-bit images mapped the
//! way the importers map training slices (the same window or percentiles, the same plane and
//! display orientation), each with its pixel spacing in mm, so areas can be given in mm^2.
//!
//! A series or a volume is brought to the canonical frame and sliced in the chosen plane, as
//! `medseg-train import` does. A single DICOM file is taken as stored (its pixel data is
//! already in display order) and needs no geometry beyond its pixel spacing, which is optional:
//! a secondary capture or an anonymized export still segments, with areas in pixels only.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use image::{DynamicImage, GrayImage, RgbImage};

use super::dicom_file::{open, open_bytes};
use super::dicom_frames::{frame_floats, number_of_frames};
use super::dicom_seg_output::DicomSource;
use super::dicom_series::{SeriesChoice, decode, has_dicm_marker, read_series, stored_window};
use super::intensity::{self, Intensity};
use super::nifti::{nifti_stem, read_volume};
use super::volume::{Plane, Volume};
use crate::error::RuntimeError;
use crate::panic_guard::guarded;

/// How to read a scan: the intensity mapping (as `medseg-train import` takes it), the plane of
/// a volume, and which slice (all by default).
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    /// CT window (level, width) in the file's rescaled units (HU for CT).
    pub window: Option<(f64, f64)>,
    /// Percentiles of the scan mapped to black and white.
    pub percentiles: Option<(f64, f64)>,
    /// Slicing plane of a volume or series; a single DICOM file is read as stored.
    pub plane: Plane,
    /// Only this slice (index along the plane, or frame from 0); all when `None`.
    pub slice: Option<usize>,
    /// Longest image side accepted, in pixels, checked from a DICOM file's header before its
    /// pixel data is decoded; [`MAX_SIDE_PX`] when `None`.
    pub max_side_px: Option<u32>,
}

/// As for pictures ([`crate::image_io`]): larger than any scanner's matrix or film scan.
pub const MAX_SIDE_PX: u32 = 20_000;
/// Decoded voxels (f32) of one file or volume: 1 GiB.
const MAX_VOXELS: u64 = 1 << 28;

/// One slice of a scan, ready for the model.
pub struct ScanSlice {
    /// What output names append to the scan's stem: "ax012" for a volume's slice 12 (as the
    /// importers name slices), "f003" for a multi-frame file's third frame, "" for one image.
    pub suffix: String,
    /// The slice at 8 bits.
    pub gray: GrayImage,
    /// (row, column) pixel spacing in mm, where the file gives it.
    pub spacing_mm: Option<(f64, f64)>,
}

enum Voxels {
    /// A NIfTI volume or DICOM series in the canonical frame, sliced in `plane`.
    Volume { volume: Volume, plane: Plane },
    /// The frames of one DICOM file as stored, frame after frame.
    Frames {
        rows: usize,
        cols: usize,
        count: usize,
        data: Vec<f32>,
        spacing: Option<(f64, f64)>,
    },
}

/// What a reader gives: the voxels, the window the file stores, and (for a single DICOM file)
/// what a SEG of the result refers to.
struct Read {
    voxels: Voxels,
    file_window: Option<(f64, f64)>,
    dicom: Option<DicomSource>,
}

pub struct Scan {
    pub source: PathBuf,
    /// For a single DICOM file: what a DICOM SEG of its result refers to.
    pub dicom: Option<DicomSource>,
    voxels: Voxels,
    /// The mapping chosen (for reports).
    pub intensity: Intensity,
    range: (f32, f32),
    indices: Vec<usize>,
}

/// Whether `path` names a scan rather than a picture: a NIfTI file, a DICOM file (by its
/// extension or its DICM marker) or a folder holding DICOM files and no pictures.
pub fn is_scan(path: &Path, picture_exts: &[&str]) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return false;
        };
        let files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        let picture = |p: &PathBuf| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| picture_exts.contains(&e.to_ascii_lowercase().as_str()))
        };
        // A patient export keeps its series in sub-folders; a series folder holds the files.
        return !files.iter().any(picture)
            && files.iter().any(|p| has_dicm_marker(p).unwrap_or(false));
    }
    nifti_stem(&name).is_some()
        || name.ends_with(".dcm")
        || name.ends_with(".dicom")
        || (path.is_file() && has_dicm_marker(path).unwrap_or(false))
}

/// The stem outputs are named after: "p01" for p01.nii.gz, the file stem of a DICOM file, the
/// folder's name for a series.
pub fn scan_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(stem) = nifti_stem(&name) {
        return stem.to_string();
    }
    if path.is_dir() {
        return name;
    }
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(name)
}

impl Scan {
    /// Reads the scan at `path` (see [`is_scan`]).
    pub fn open(path: &Path, options: &ScanOptions) -> Result<Self, RuntimeError> {
        let name = path.display().to_string();
        Self::read(path, options, || {
            let lower = name.to_ascii_lowercase();
            if path.is_dir() {
                let series = read_series(path, SeriesChoice::default())?;
                Ok(Read {
                    voxels: volume(series.volume, options.plane),
                    file_window: series.window,
                    dicom: None,
                })
            } else if nifti_stem(&lower).is_some() {
                Ok(Read {
                    voxels: volume(read_volume(path, None)?, options.plane),
                    file_window: None,
                    dicom: None,
                })
            } else {
                frames(&open(path)?, &name, options)
            }
        })
    }

    /// A DICOM file already in memory (an upload), `name` standing for its path.
    pub fn from_dicom_bytes(
        bytes: &[u8],
        name: &str,
        options: &ScanOptions,
    ) -> Result<Self, RuntimeError> {
        Self::read(Path::new(name), options, || {
            frames(&open_bytes(bytes, name)?, name, options)
        })
    }

    fn read(
        path: &Path,
        options: &ScanOptions,
        voxels: impl FnOnce() -> anyhow::Result<Read>,
    ) -> Result<Self, RuntimeError> {
        let name = path.display().to_string();
        let scan = (|| {
            let Read {
                voxels,
                file_window,
                dicom,
            } = voxels()?;
            let intensity = intensity::choose(options.window, options.percentiles, file_window)?;
            let range = intensity
                .range(voxels.data())
                .with_context(|| format!("{name}: cannot set the intensity range"))?;
            let count = voxels.count();
            let indices = match options.slice {
                None => (0..count).collect(),
                Some(i) => {
                    ensure!(
                        i < count,
                        "{name}: --slice {i}, but it has {count} slice(s) (0..={})",
                        count - 1
                    );
                    vec![i]
                }
            };
            Ok(Self {
                source: path.to_path_buf(),
                dicom,
                voxels,
                intensity,
                range,
                indices,
            })
        })();
        scan.map_err(|e: anyhow::Error| {
            let reason = format!("{e:#}");
            // The readers name the file in most messages; the few that do not get it here.
            let reason = if reason.contains(&name) {
                reason
            } else {
                format!("{name}: {reason}")
            };
            RuntimeError::BadScan {
                path: path.to_path_buf(),
                reason,
            }
        })
    }

    /// The slices to segment, in order.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Number of slices the scan holds in its plane (or frames).
    pub fn slice_count(&self) -> usize {
        self.voxels.count()
    }

    /// Slice `index` (clamped to the scan) at 8 bits.
    pub fn slice(&self, index: usize) -> ScanSlice {
        let index = index.min(self.voxels.count() - 1);
        let (rows, cols, data, spacing, suffix) = match &self.voxels {
            Voxels::Volume { volume, plane } => {
                let s = volume.slice(*plane, index);
                let suffix = format!("{}{index:03}", plane.tag());
                (s.rows, s.cols, s.data, Some(s.spacing), suffix)
            }
            Voxels::Frames {
                rows,
                cols,
                count,
                data,
                spacing,
            } => {
                let n = rows * cols;
                let frame = data[index * n..(index + 1) * n].to_vec();
                let suffix = if *count > 1 {
                    format!("f{:03}", index + 1)
                } else {
                    String::new()
                };
                (*rows, *cols, frame, *spacing, suffix)
            }
        };
        let pixels = data
            .iter()
            .map(|&v| intensity::to_u8(v, self.range))
            .collect();
        ScanSlice {
            suffix,
            gray: GrayImage::from_raw(cols as u32, rows as u32, pixels)
                .expect("a slice holds rows x cols values"),
            spacing_mm: spacing,
        }
    }

    /// The model's input for slice `index`: the slice in gray, or for a 2.5D model (trained
    /// on `--stack-neighbours` imports) the previous, this and the next slice as red, green and
    /// blue, the edges repeating themselves as the importers do.
    pub fn model_image(&self, index: usize, stacked_neighbours: bool) -> (DynamicImage, ScanSlice) {
        let this = self.slice(index);
        if !stacked_neighbours {
            return (DynamicImage::ImageLuma8(this.gray.clone()), this);
        }
        let prev = self.slice(index.saturating_sub(1)).gray;
        let next = self.slice(index + 1).gray;
        let rgb = compose_neighbours(&prev, &this.gray, &next);
        (DynamicImage::ImageRgb8(rgb), this)
    }
}

impl Voxels {
    fn data(&self) -> &[f32] {
        match self {
            Self::Volume { volume, .. } => &volume.data,
            Self::Frames { data, .. } => data,
        }
    }

    fn count(&self) -> usize {
        match self {
            Self::Volume { volume, plane } => volume.slice_count(*plane),
            Self::Frames { count, .. } => *count,
        }
    }
}

fn volume(volume: Volume, plane: Plane) -> Voxels {
    Voxels::Volume {
        volume: volume.to_canonical(),
        plane,
    }
}

/// Every frame of one DICOM file with the modality LUT applied (HU for CT), its pixel spacing
/// (PixelSpacing, else ImagerPixelSpacing for projection images) and its stored window.
fn frames(obj: &DefaultDicomObject, name: &str, options: &ScanOptions) -> anyhow::Result<Read> {
    // From the header, before decoding: a small compressed file can claim a huge matrix.
    let header = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u64>().ok());
    let (h, w) = (
        header(tags::ROWS).unwrap_or(0),
        header(tags::COLUMNS).unwrap_or(0),
    );
    let n = number_of_frames(obj) as u64;
    let max_side = u64::from(options.max_side_px.unwrap_or(MAX_SIDE_PX).min(MAX_SIDE_PX));
    ensure!(
        w.max(h) <= max_side && w * h * n <= MAX_VOXELS,
        "{name}: {n} frame(s) of {w}x{h} px; this runtime reads at most {max_side} px a side \
         and {} M pixels per file",
        MAX_VOXELS >> 20
    );
    let px = decode(Path::new(name), obj)?;
    let (rows, cols) = (px.rows() as usize, px.columns() as usize);
    // Found by fuzzing: Rows or Columns of 0 decoded to an empty image.
    ensure!(
        rows > 0 && cols > 0,
        "{name}: the image is {cols}x{rows} px (Columns x Rows); expected a non-empty image"
    );
    let count = number_of_frames(obj)
        .min(px.number_of_frames() as usize)
        .max(1);
    let mut data = Vec::with_capacity(rows * cols * count);
    for frame in 0..count {
        let values: Vec<f32> =
            guarded(|| Ok(px.to_vec_frame(frame as u32)?)).with_context(|| {
                format!(
                    "cannot convert the pixel data of {name} frame {}",
                    frame + 1
                )
            })?;
        ensure!(
            values.len() == rows * cols,
            "{name}: frame {} holds {} values, {cols}x{rows} pixels need {}",
            frame + 1,
            values.len(),
            rows * cols
        );
        data.extend(values);
    }
    let spacing = frame_floats(obj, 0, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
        .or_else(|| {
            obj.element(tags::IMAGER_PIXEL_SPACING)
                .ok()?
                .to_multi_float64()
                .ok()
        })
        .filter(|s| s.len() == 2 && s.iter().all(|v| v.is_finite() && *v > 0.0))
        .map(|s| (s[0], s[1]));
    let voxels = Voxels::Frames {
        rows,
        cols,
        count,
        data,
        spacing,
    };
    Ok(Read {
        voxels,
        file_window: stored_window(obj),
        dicom: Some(DicomSource::of(obj)),
    })
}

/// The RGB image of `this` slice between `prev` and `next` (all of one size): the 2.5D input
/// of a model trained on `--stack-neighbours` imports.
pub fn compose_neighbours(prev: &GrayImage, this: &GrayImage, next: &GrayImage) -> RgbImage {
    RgbImage::from_fn(this.width(), this.height(), |x, y| {
        image::Rgb([
            prev.get_pixel(x, y).0[0],
            this.get_pixel(x, y).0[0],
            next.get_pixel(x, y).0[0],
        ])
    })
}
