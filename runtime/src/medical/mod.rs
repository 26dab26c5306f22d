//! Medical image files: NIfTI volumes, DICOM files and series, read into f32 voxels with their
//! geometry (pixel spacing in mm) and mapped to 8 bits by a CT window or percentiles. The
//! importers (medseg-train import) and the bedside runtime (`medseg segment scan.dcm`) read
//! with this one code, so a slice reaches a model the way its training slices did.
//!
//! These readers report with anyhow chains (each step adds the file and what it was doing);
//! [`scan`] turns them into one [`crate::RuntimeError`] naming the file.

pub mod dicom_file;
pub mod dicom_frames;
pub mod dicom_lengths;
pub mod dicom_seg_output;
pub mod dicom_series;
pub mod intensity;
pub mod nifti;
pub mod scan;
pub mod volume;
