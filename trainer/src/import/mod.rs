//! Importers: bring data in the formats hospitals and public data sets use into the folder
//! layout that training and `medseg eval` read (images/, masks/, splits.json by patient) plus
//! `slices.csv` with each slice's source and pixel spacing.
//!
//! Every importer assigns whole patients to splits ([`split_rule`]) and hands finished 2D
//! slices to one [`layout_writer::LayoutWriter`], which checks labels and duplicates
//! ([`duplicates`]) and writes the files.

pub mod dicom;
pub mod dicom_rtstruct;
pub mod dicom_seg;
pub mod duplicates;
pub mod jmedseg;
pub mod layout_writer;
pub mod msd;
pub mod neighbours;
pub mod nifti;
pub mod patient_pattern;
pub mod slices;
pub mod split_rule;
pub mod volume_slices;

// The readers (volumes, DICOM files and series, intensity windows) live in the runtime, which
// reads the same files at the bedside; the importers use them from there.
pub use medseg_runtime::medical::{dicom_frames, dicom_series, intensity, volume};

pub use layout_writer::{ImportSummary, LayoutWriter, SliceMeta};
pub use patient_pattern::PatientPattern;
pub use split_rule::SplitRule;
