//! From an image volume and its label volume to 2D slices in the layout: the flags every
//! volume format shares (plane, intensity, which slices, resampling) and the one loop that
//! applies them, so NIfTI, MSD and DICOM imports slice identically.

use anyhow::{Context, bail};
use image::{DynamicImage, GrayImage};

use super::intensity::{self, Intensity};
use super::layout_writer::{LayoutWriter, SliceMeta};
use super::neighbours;
use super::slices::parse_spacing;
use super::volume::{Interp, Plane, Volume};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SliceSelection {
    /// Only slices whose label slice has a non-background pixel.
    #[default]
    Labelled,
    /// Every slice, empty masks included.
    All,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct VolumeArgs {
    /// Slicing plane; slices are shown radiologically (see docs/IMPORTING.md)
    /// [nifti, msd, dicom].
    #[arg(long, value_enum, default_value_t = Plane::Axial)]
    pub plane: Plane,
    /// CT window LEVEL,WIDTH in HU after the file's rescale slope/intercept, e.g. 40,400 (soft
    /// tissue) or -600,1500 (lung) [nifti, msd, dicom].
    #[arg(long, value_parser = parse_pair, allow_hyphen_values = true, conflicts_with = "percentiles")]
    pub window: Option<(f64, f64)>,
    /// Map these percentiles of each volume to black and white, e.g. 0.5,99.5 (MRI; the
    /// default when no window is given or, for DICOM, stored) [nifti, msd, dicom].
    #[arg(long, value_parser = parse_pair)]
    pub percentiles: Option<(f64, f64)>,
    /// Which slices to write [nifti, msd, dicom].
    #[arg(long, value_enum, default_value_t = SliceSelection::Labelled)]
    pub slices: SliceSelection,
    /// Resample slices to this in-plane spacing in mm, 'S' or 'ROWxCOL' (images bilinear,
    /// labels nearest) [nifti, msd, dicom].
    #[arg(long, value_parser = parse_spacing)]
    pub resample: Option<(f64, f64)>,
    /// Channel of a 4D image volume (e.g. an MSD modality: 0 = FLAIR in BraTS)
    /// [nifti, msd].
    #[arg(long, default_value_t = 0)]
    pub channel: usize,
}

pub use medseg_runtime::medical::intensity::parse_pair;

impl VolumeArgs {
    /// The intensity mapping: the user's window or percentiles, else the file's window, else
    /// percentiles.
    pub fn intensity(&self, from_file: Option<(f64, f64)>) -> anyhow::Result<Intensity> {
        intensity::choose(self.window, self.percentiles, from_file)
    }
}

/// An image volume with its labels, each named by the file or series it came from.
pub struct LabelledVolume<'a> {
    /// Slice names are NAME_ax012 (the volume's stem: unique even when a patient has several).
    pub name: &'a str,
    pub patient: &'a str,
    pub image: &'a Volume,
    pub image_source: &'a str,
    pub labels: &'a Volume,
    pub label_source: &'a str,
    /// The window stored in the source (DICOM), used when the user gives none.
    pub file_window: Option<(f64, f64)>,
}

/// Slices one labelled volume into the writer; returns the number of slices written.
pub fn write_volume(
    v: &LabelledVolume<'_>,
    split: &str,
    args: &VolumeArgs,
    writer: &mut LayoutWriter,
) -> anyhow::Result<usize> {
    let image = v.image.to_canonical();
    let labels = v.labels.to_canonical();
    // 0.05 mm: float32 headers and DICOM decimal strings round the same grid differently.
    if !image.same_grid(&labels, 0.05) {
        bail!(
            "image {} and labels {} do not cover the same voxels:\n  image:  {}\n  labels: {}\n\
             the label volume must have the image's shape and orientation",
            v.image_source,
            v.label_source,
            image.describe(),
            labels.describe()
        );
    }
    check_labels(&labels, v.label_source, writer.classes())?;
    let intensity = args.intensity(v.file_window)?;
    let range = intensity
        .range(&image.data)
        .with_context(|| format!("{}: cannot set the intensity range", v.image_source))?;
    // One slice of the image volume as the layout stores it: resampled, intensity-mapped.
    let gray_slice = |index: usize| -> anyhow::Result<(GrayImage, (f64, f64))> {
        let mut img = image.slice(args.plane, index);
        if let Some(target) = args.resample {
            img = img.resample(target, Interp::Bilinear);
        }
        let data = img
            .data
            .iter()
            .map(|&x| intensity::to_u8(x, range))
            .collect();
        let gray = GrayImage::from_raw(img.cols as u32, img.rows as u32, data)
            .context("slice buffer does not match its size")?;
        Ok((gray, img.spacing))
    };
    let count = image.slice_count(args.plane);
    let mut written = 0;
    for index in 0..count {
        let mut mask = labels.slice(args.plane, index);
        if args.slices == SliceSelection::Labelled && mask.data.iter().all(|&l| l == 0.0) {
            continue;
        }
        if let Some(target) = args.resample {
            mask = mask.resample(target, Interp::Nearest);
        }
        let (gray, spacing) = gray_slice(index)?;
        let mask_img = GrayImage::from_raw(
            mask.cols as u32,
            mask.rows as u32,
            mask.data.iter().map(|&l| l as u8).collect(),
        )
        .context("label slice buffer does not match its size")?;
        let meta = SliceMeta {
            patient: v.patient.to_string(),
            source: v.image_source.to_string(),
            slice_index: Some(index as u32),
            spacing: Some(spacing),
        };
        let name = format!("{}_{}{index:03}", v.name, args.plane.tag());
        if writer.stacks_neighbours() {
            // The volume's own neighbours, whether or not they are imported (unlabelled ones
            // are not, by default); the edge slices repeat themselves, as in `stack`.
            let (prev, _) = gray_slice(index.saturating_sub(1))?;
            let (next, _) = gray_slice((index + 1).min(count - 1))?;
            let rgb = DynamicImage::ImageRgb8(neighbours::compose(&prev, &gray, &next));
            writer.add_stacked(split, &name, meta, &rgb, &mask_img)?;
        } else {
            let gray = DynamicImage::ImageLuma8(gray);
            writer.add(split, &name, meta, &gray, &mask_img)?;
        }
        written += 1;
    }
    Ok(written)
}

/// Every label must be a whole number naming a declared class; checked on the volume so the
/// error names the label file (and nothing is written for this patient).
fn check_labels(labels: &Volume, source: &str, classes: &[String]) -> anyhow::Result<()> {
    let max = classes.len() - 1;
    if let Some((n, &bad)) = labels
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| !((0.0..=max as f32).contains(&l) && l.fract() == 0.0))
    {
        let [nx, ny, _] = labels.dims;
        bail!(
            "{source}: label value {bad} at voxel ({}, {}, {}) is outside the declared classes 0..={max} ({}); \
             pass --classes with one name per label value",
            n % nx,
            (n / nx) % ny,
            n / (nx * ny),
            classes.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_negative_levels_and_refuse_nonsense() {
        assert_eq!(parse_pair("-600,1500"), Ok((-600.0, 1500.0)));
        assert!(parse_pair("40").is_err());
        assert!(parse_pair("a,b").is_err());
    }

    #[test]
    fn user_intensity_beats_the_file_window() {
        let a = VolumeArgs {
            percentiles: Some((1.0, 99.0)),
            ..Default::default()
        };
        assert_eq!(
            a.intensity(Some((40.0, 400.0))).unwrap(),
            Intensity::Percentiles { lo: 1.0, hi: 99.0 }
        );
        let none = VolumeArgs::default();
        assert_eq!(
            none.intensity(Some((40.0, 400.0))).unwrap(),
            Intensity::Window {
                level: 40.0,
                width: 400.0
            }
        );
        assert_eq!(
            none.intensity(None).unwrap(),
            intensity::DEFAULT_PERCENTILES
        );
    }
}
