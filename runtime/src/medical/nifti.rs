//! NIfTI-1 volumes (.nii, .nii.gz): voxels after scl_slope/scl_inter, and the voxel-to-RAS
//! affine from the header. The importers and the bedside runtime read volumes with this one
//! reader.

use std::path::Path;

use anyhow::{Context, anyhow, bail, ensure};
use ndarray::{Axis, Ix3};
use nifti::{IntoNdArray, NiftiHeader, NiftiObject, ReaderOptions, Unit};

use super::volume::Volume;

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
