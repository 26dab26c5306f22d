//! Labels from a DICOM Segmentation object (binary): each frame is one segment on one slice,
//! found through its ImagePositionPatient. Where any segment's SegmentLabel names a class (any
//! case), segments map to classes by name and the others are left out, as for RT Structure
//! Sets (a segmentation tool's output with many structures); otherwise segment number N
//! becomes label value N. Where segments overlap, the higher label wins.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, ensure};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::dicom::{class_named, text};
use super::dicom_frames::{frame_element, frame_floats};
use super::dicom_series::{Series, cross};
use super::volume::Volume;

/// Position and segment number of frame `f`, from its per-frame group or the shared one.
fn frame_info(obj: &DefaultDicomObject, f: usize) -> (Option<[f64; 3]>, Option<u16>) {
    let pos = frame_floats(
        obj,
        f,
        tags::PLANE_POSITION_SEQUENCE,
        tags::IMAGE_POSITION_PATIENT,
    )
    .and_then(|v| <[f64; 3]>::try_from(v).ok());
    let seg = frame_element(
        obj,
        f,
        tags::SEGMENT_IDENTIFICATION_SEQUENCE,
        tags::REFERENCED_SEGMENT_NUMBER,
    )
    .and_then(|e| e.to_int::<u16>().ok());
    (pos, seg)
}

/// Label value of each segment number, for the segments whose SegmentLabel names a class;
/// `None` when none does.
fn labels_by_name(obj: &DefaultDicomObject, classes: &[String]) -> Option<HashMap<u16, u8>> {
    let segments = obj.element(tags::SEGMENT_SEQUENCE).ok()?.items()?;
    let by_name: HashMap<u16, u8> = segments
        .iter()
        .filter_map(|s| {
            let number = s.element(tags::SEGMENT_NUMBER).ok()?.to_int::<u16>().ok()?;
            let name = s.element(tags::SEGMENT_LABEL).ok()?.to_str().ok()?;
            Some((number, class_named(classes, &name)?))
        })
        .collect();
    (!by_name.is_empty()).then_some(by_name)
}

/// Reads a binary SEG (opened from `path`) onto the grid of `series`; `classes[i]` names label
/// value i.
pub fn read_seg(
    path: &Path,
    obj: &DefaultDicomObject,
    series: &Series,
    classes: &[String],
) -> anyhow::Result<Volume> {
    let shown = path.display();
    let by_name = labels_by_name(obj, classes);
    let kind = text(obj, tags::SEGMENTATION_TYPE).unwrap_or_default();
    ensure!(
        kind == "BINARY",
        "{shown}: segmentation type '{kind}'; only BINARY segmentations are read"
    );
    let int = |tag, name: &str| -> anyhow::Result<usize> {
        obj.element(tag)
            .with_context(|| format!("{shown}: no {name}"))?
            .to_int::<u32>()
            .map(|v| v as usize)
            .with_context(|| format!("{shown}: {name} is not a whole number"))
    };
    let (rows, cols, frames) = (
        int(tags::ROWS, "Rows")?,
        int(tags::COLUMNS, "Columns")?,
        int(tags::NUMBER_OF_FRAMES, "NumberOfFrames")?,
    );
    let [nx, ny, nz] = series.volume.dims;
    ensure!(
        (cols, rows) == (nx, ny),
        "{shown} is {cols}x{rows} pixels but its series is {nx}x{ny}"
    );
    let pixel_data = obj
        .element(tags::PIXEL_DATA)
        .with_context(|| format!("{shown}: no PixelData"))?;
    // dicom-rs's codecs decode images, not 1-bit frames: an encapsulated (RLE) SEG would
    // otherwise fail below as "not a byte string".
    ensure!(
        pixel_data.fragments().is_none(),
        "{shown}: compressed PixelData; only uncompressed SEG objects are read (decompress \
         first, e.g. `dcmdrle IN OUT`)"
    );
    let bits = pixel_data
        .to_bytes()
        .with_context(|| format!("{shown}: PixelData is not a byte string"))?;
    let per_frame = rows * cols;
    // Binary frames are packed one bit per pixel, least significant bit first, with no
    // padding between frames.
    ensure!(
        bits.len() * 8 >= per_frame * frames,
        "{shown}: PixelData holds {} bytes, {frames} frames of {cols}x{rows} need {}; the file may be truncated",
        bits.len(),
        (per_frame * frames).div_ceil(8)
    );
    let mut data = vec![0.0f32; nx * ny * nz];
    for f in 0..frames {
        let (pos, seg) = frame_info(obj, f);
        let pos =
            pos.with_context(|| format!("{shown}: frame {} has no ImagePositionPatient", f + 1))?;
        let seg = seg
            .with_context(|| format!("{shown}: frame {} has no ReferencedSegmentNumber", f + 1))?;
        let k = slice_of(series, pos).with_context(|| {
            format!(
                "{shown}: frame {} at ({:.2}, {:.2}, {:.2}) mm lies on no slice of its series",
                f + 1,
                pos[0],
                pos[1],
                pos[2]
            )
        })?;
        let label = match &by_name {
            Some(by_name) => match by_name.get(&seg) {
                Some(&label) => f32::from(label),
                None => continue, // a segment no class names
            },
            None => f32::from(seg),
        };
        for p in 0..per_frame {
            let n = f * per_frame + p;
            if bits[n / 8] >> (n % 8) & 1 == 1 {
                let v = &mut data[p + per_frame * k];
                *v = v.max(label);
            }
        }
    }
    Volume::new(series.volume.dims, data, series.volume.affine)
}

/// The slice a frame position falls on: within half a slice along the normal and half a pixel
/// in the plane.
fn slice_of(series: &Series, pos: [f64; 3]) -> Option<usize> {
    let tol_in_plane = 0.5 * series.pixel_spacing.0.min(series.pixel_spacing.1);
    series.positions.iter().position(|p| {
        let d = [pos[0] - p[0], pos[1] - p[1], pos[2] - p[2]];
        let along = d[0] * series.normal[0] + d[1] * series.normal[1] + d[2] * series.normal[2];
        let in_plane = cross(d, series.normal);
        let off = (in_plane[0].powi(2) + in_plane[1].powi(2) + in_plane[2].powi(2)).sqrt();
        along.abs() < 0.5 * series.slice_spacing && off < tol_in_plane
    })
}
