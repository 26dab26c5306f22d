//! Scans written here for the runtime's tests, and the `medseg` binary run as a user runs it.
// Each test crate includes this module and uses a part of it.
#![allow(dead_code)]

use std::process::Command;

use dicom_core::{DataElement, PrimitiveValue, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

/// (row, column) pixel spacing written into the files.
pub const SPACING: (f64, f64) = (0.7, 0.8);

pub fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect())
}

/// A CT file (its bytes, preamble included) whose frames hold `frames` (8-bit gray images of one size) as stored values
/// 4 * v, rescaled by intercept -1024, with the window that maps them back to exactly v:
/// HU -1024 .. -4 onto 0 .. 255.
pub fn ct_dicom(frames: &[image::GrayImage]) -> Vec<u8> {
    let (w, h) = frames[0].dimensions();
    let pixels: Vec<u16> = frames
        .iter()
        .flat_map(|f| f.pixels().map(|p| u16::from(p.0[0]) * 4))
        .collect();
    let mut obj = InMemDicomObject::from_element_iter([
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, "1.2.826.0.1.3680043.2.9.1"),
        DataElement::new(tags::MODALITY, VR::CS, "CT"),
        DataElement::new(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.9.2",
        ),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.9.3",
        ),
        DataElement::new(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            "1.2.826.0.1.3680043.2.9.4",
        ),
        DataElement::new(tags::PATIENT_ID, VR::LO, "P01"),
        DataElement::new(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            ds(&[-90.0, -120.0, 35.0]),
        ),
        DataElement::new(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            ds(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
        ),
        DataElement::new(tags::ROWS, VR::US, dicom_value!(U16, h as u16)),
        DataElement::new(tags::COLUMNS, VR::US, dicom_value!(U16, w as u16)),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, 1)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, 16)),
        DataElement::new(tags::BITS_STORED, VR::US, dicom_value!(U16, 16)),
        DataElement::new(tags::HIGH_BIT, VR::US, dicom_value!(U16, 15)),
        DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, 0)),
        DataElement::new(tags::PIXEL_SPACING, VR::DS, ds(&[SPACING.0, SPACING.1])),
        DataElement::new(tags::RESCALE_INTERCEPT, VR::DS, ds(&[-1024.0])),
        DataElement::new(tags::RESCALE_SLOPE, VR::DS, ds(&[1.0])),
        DataElement::new(tags::WINDOW_CENTER, VR::DS, ds(&[-514.0])),
        DataElement::new(tags::WINDOW_WIDTH, VR::DS, ds(&[1020.0])),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ]);
    if frames.len() > 1 {
        obj.put(DataElement::new(
            tags::NUMBER_OF_FRAMES,
            VR::IS,
            frames.len().to_string(),
        ));
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .unwrap();
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    bytes
}

/// Runs the `medseg` binary: (success, stdout, stderr).
pub fn medseg(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
