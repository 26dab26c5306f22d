//! A DICOM Segmentation object (binary) for a segmented DICOM file, so the result can go back
//! to the hospital's archive and open over the image in its viewer.
//!
//! One segment per class but the background (SegmentLabel = the class name), one frame per
//! segment and source frame, bits packed least significant first with no padding between
//! frames (PS3.3 C.8.20, C.7.6.3.1.2). The patient, study and frame of reference are the
//! source's; every frame refers to its source image and frame and carries its plane position,
//! so a viewer lays it over the image. Segmented property codes are SNOMED CT "Tissue" in
//! category "Tissue" for every class: the model card names its classes but does not code them.

use std::path::Path;

use anyhow::{Context, ensure};
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};

use super::dicom_file::text;
use super::dicom_frames::{frame_floats, number_of_frames};
use crate::image_io::Mask;

/// What a SEG needs of its source file, kept when the file is read.
#[derive(Debug, Clone)]
pub struct DicomSource {
    /// Patient, study and frame-of-reference attributes, copied as they are.
    copied: Vec<InMemElement>,
    sop_class_uid: String,
    sop_instance_uid: String,
    series_instance_uid: String,
    /// ImageOrientationPatient (shared by the frames: a file's frames are one plane).
    orientation: Option<Vec<f64>>,
    /// ImagePositionPatient of each frame.
    positions: Vec<Option<Vec<f64>>>,
    pixel_spacing: Option<Vec<f64>>,
    slice_thickness: Option<f64>,
}

/// The attributes a derived object keeps from its source (patient, study, frame of reference).
const COPIED: [Tag; 13] = [
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::STUDY_ID,
    tags::ACCESSION_NUMBER,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::FRAME_OF_REFERENCE_UID,
    tags::POSITION_REFERENCE_INDICATOR,
];

impl DicomSource {
    pub fn of(obj: &DefaultDicomObject) -> Self {
        let text = |tag| text(obj, tag).unwrap_or_default();
        let frames = number_of_frames(obj);
        Self {
            copied: COPIED
                .iter()
                .filter_map(|&t| obj.element(t).ok().cloned())
                .collect(),
            sop_class_uid: text(tags::SOP_CLASS_UID),
            sop_instance_uid: text(tags::SOP_INSTANCE_UID),
            series_instance_uid: text(tags::SERIES_INSTANCE_UID),
            orientation: frame_floats(
                obj,
                0,
                tags::PLANE_ORIENTATION_SEQUENCE,
                tags::IMAGE_ORIENTATION_PATIENT,
            ),
            positions: (0..frames)
                .map(|f| {
                    frame_floats(
                        obj,
                        f,
                        tags::PLANE_POSITION_SEQUENCE,
                        tags::IMAGE_POSITION_PATIENT,
                    )
                })
                .collect(),
            pixel_spacing: frame_floats(obj, 0, tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING),
            slice_thickness: frame_floats(
                obj,
                0,
                tags::PIXEL_MEASURES_SEQUENCE,
                tags::SLICE_THICKNESS,
            )
            .and_then(|v| v.first().copied()),
        }
    }

    /// The source image as a reference: its SOP class and instance UIDs.
    fn reference(&self) -> Vec<InMemElement> {
        vec![
            DataElement::new(
                tags::REFERENCED_SOP_CLASS_UID,
                VR::UI,
                self.sop_class_uid.as_str(),
            ),
            DataElement::new(
                tags::REFERENCED_SOP_INSTANCE_UID,
                VR::UI,
                self.sop_instance_uid.as_str(),
            ),
        ]
    }

    /// Why this source cannot take a SEG, if it cannot: a SEG places its frames in the
    /// patient's frame of reference, which a screen capture or an anonymized export without
    /// geometry does not have.
    pub fn seg_refusal(&self) -> Option<String> {
        let has = |tag| self.copied.iter().any(|e| e.header().tag == tag);
        if !has(tags::STUDY_INSTANCE_UID) || self.sop_instance_uid.is_empty() {
            return Some("it has no StudyInstanceUID or SOPInstanceUID to refer to".into());
        }
        if !has(tags::FRAME_OF_REFERENCE_UID) {
            return Some("it has no FrameOfReferenceUID".into());
        }
        if self.orientation.as_ref().is_none_or(|o| o.len() != 6)
            || self
                .positions
                .iter()
                .any(|p| p.as_ref().is_none_or(|p| p.len() != 3))
            || self.pixel_spacing.as_ref().is_none_or(|s| s.len() != 2)
        {
            return Some(
                "it lacks ImageOrientationPatient, ImagePositionPatient or PixelSpacing".into(),
            );
        }
        None
    }
}

/// A UID of the "2.25" form (a 128-bit number; PS3.5 B.2), from a hash of what makes it
/// unique here: the source, the purpose, the time and the process.
fn new_uid(source: &str, purpose: &str) -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let hash = Sha256::new()
        .chain_update(source)
        .chain_update(purpose)
        .chain_update(now.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .finalize();
    let n = u128::from_le_bytes(hash[..16].try_into().expect("16 bytes"));
    format!("2.25.{n}")
}

fn ds(values: &[f64]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|v| format!("{v}")).collect())
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn item(elements: Vec<InMemElement>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

/// A sequence of one item holding `elements` (a functional-group macro, a reference).
fn one_item(tag: Tag, elements: Vec<InMemElement>) -> InMemElement {
    seq(tag, vec![item(elements)])
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(vec![
        DataElement::new(tags::CODE_VALUE, VR::SH, value),
        DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        DataElement::new(tags::CODE_MEANING, VR::LO, meaning),
    ])
}

/// Writes the SEG of `masks` (source frame index, its class mask at the source's size) to
/// `path`. `classes` are the model's (class 0 the background); `algorithm` names the model.
pub fn write_seg(
    source: &DicomSource,
    masks: &[(usize, &Mask)],
    classes: &[String],
    algorithm: &str,
    path: &Path,
) -> anyhow::Result<()> {
    if let Some(why) = source.seg_refusal() {
        anyhow::bail!("no DICOM SEG written to {}: {why}", path.display());
    }
    ensure!(
        !masks.is_empty() && classes.len() > 1,
        "nothing to write in a SEG"
    );
    let (rows, cols) = (masks[0].1.height, masks[0].1.width);
    ensure!(
        masks
            .iter()
            .all(|(_, m)| (m.height, m.width) == (rows, cols)),
        "the masks of one SEG must share their size"
    );
    let orientation = source.orientation.clone().expect("checked above");
    let segments = 1..classes.len();
    let single_frame_source = source.positions.len() == 1;
    let mut per_frame = Vec::new();
    let mut bits = vec![0u8; (masks.len() * segments.len() * rows * cols).div_ceil(8)];
    let mut n = 0usize;
    // Frames ordered by segment, then by source frame (what the dimension index says).
    for segment in segments.clone() {
        for &(frame, mask) in masks {
            for &label in &mask.data {
                if usize::from(label) == segment {
                    bits[n / 8] |= 1 << (n % 8);
                }
                n += 1;
            }
            // A NumberOfFrames that disagrees with the pixel data can leave a frame unplaced.
            let position = source
                .positions
                .get(frame)
                .cloned()
                .flatten()
                .with_context(|| format!("frame {} has no ImagePositionPatient", frame + 1))?;
            let mut source_image = source.reference();
            source_image.push(seq(
                tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
                vec![code(
                    "121322",
                    "DCM",
                    "Source image for image processing operation",
                )],
            ));
            if !single_frame_source {
                source_image.push(DataElement::new(
                    tags::REFERENCED_FRAME_NUMBER,
                    VR::IS,
                    (frame + 1).to_string(),
                ));
            }
            per_frame.push(item(vec![
                one_item(
                    tags::DERIVATION_IMAGE_SEQUENCE,
                    vec![
                        one_item(tags::SOURCE_IMAGE_SEQUENCE, source_image),
                        seq(
                            tags::DERIVATION_CODE_SEQUENCE,
                            vec![code("113076", "DCM", "Segmentation")],
                        ),
                    ],
                ),
                one_item(
                    tags::FRAME_CONTENT_SEQUENCE,
                    vec![DataElement::new(
                        tags::DIMENSION_INDEX_VALUES,
                        VR::UL,
                        PrimitiveValue::U32(vec![segment as u32, frame as u32 + 1].into()),
                    )],
                ),
                one_item(
                    tags::PLANE_POSITION_SEQUENCE,
                    vec![DataElement::new(
                        tags::IMAGE_POSITION_PATIENT,
                        VR::DS,
                        ds(&position),
                    )],
                ),
                one_item(
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    vec![DataElement::new(
                        tags::REFERENCED_SEGMENT_NUMBER,
                        VR::US,
                        dicom_value!(U16, segment as u16),
                    )],
                ),
            ]));
        }
    }
    if bits.len() % 2 == 1 {
        bits.push(0);
    }
    let segment_items = segments
        .clone()
        .map(|s| {
            item(vec![
                DataElement::new(tags::SEGMENT_NUMBER, VR::US, dicom_value!(U16, s as u16)),
                DataElement::new(tags::SEGMENT_LABEL, VR::LO, classes[s].as_str()),
                DataElement::new(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
                DataElement::new(tags::SEGMENT_ALGORITHM_NAME, VR::LO, algorithm),
                seq(
                    tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
                    vec![code("85756007", "SCT", "Tissue")],
                ),
                seq(
                    tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
                    vec![code("85756007", "SCT", "Tissue")],
                ),
            ])
        })
        .collect();
    let mut pixel_measures = vec![DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        ds(source.pixel_spacing.as_deref().expect("checked above")),
    )];
    if let Some(t) = source.slice_thickness {
        pixel_measures.push(DataElement::new(tags::SLICE_THICKNESS, VR::DS, ds(&[t])));
    }
    let dimension_uid = new_uid(&source.sop_instance_uid, "dimension organization");
    let dimension = |pointer: Tag, group: Tag, label: &str| {
        item(vec![
            DataElement::new(
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                dimension_uid.as_str(),
            ),
            DataElement::new(
                tags::DIMENSION_INDEX_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![pointer].into()),
            ),
            DataElement::new(
                tags::FUNCTIONAL_GROUP_POINTER,
                VR::AT,
                PrimitiveValue::Tags(vec![group].into()),
            ),
            DataElement::new(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    let sop_instance_uid = new_uid(&source.sop_instance_uid, "segmentation instance");
    let (date, time) = now_date_time();
    let mut obj = InMemDicomObject::from_element_iter(source.copied.iter().cloned());
    for e in [
        DataElement::new(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE),
        DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid.as_str()),
        DataElement::new(tags::MODALITY, VR::CS, "SEG"),
        DataElement::new(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            new_uid(&source.sop_instance_uid, "segmentation series"),
        ),
        DataElement::new(tags::SERIES_NUMBER, VR::IS, "901"),
        DataElement::new(
            tags::SERIES_DESCRIPTION,
            VR::LO,
            format!("medseg {algorithm}"),
        ),
        DataElement::new(tags::INSTANCE_NUMBER, VR::IS, "1"),
        DataElement::new(tags::CONTENT_DATE, VR::DA, date.as_str()),
        DataElement::new(tags::CONTENT_TIME, VR::TM, time.as_str()),
        DataElement::new(tags::MANUFACTURER, VR::LO, "medseg"),
        DataElement::new(tags::MANUFACTURER_MODEL_NAME, VR::LO, "medseg"),
        DataElement::new(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0"),
        DataElement::new(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::Strs(vec!["DERIVED".into(), "PRIMARY".into()].into()),
        ),
        DataElement::new(tags::CONTENT_LABEL, VR::CS, "MEDSEG"),
        DataElement::new(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            format!("medseg {algorithm}"),
        ),
        DataElement::new(tags::CONTENT_CREATOR_NAME, VR::PN, "medseg"),
        DataElement::new(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, dicom_value!(U16, 1)),
        DataElement::new(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        DataElement::new(tags::ROWS, VR::US, dicom_value!(U16, rows as u16)),
        DataElement::new(tags::COLUMNS, VR::US, dicom_value!(U16, cols as u16)),
        DataElement::new(tags::BITS_ALLOCATED, VR::US, dicom_value!(U16, 1)),
        DataElement::new(tags::BITS_STORED, VR::US, dicom_value!(U16, 1)),
        DataElement::new(tags::HIGH_BIT, VR::US, dicom_value!(U16, 0)),
        DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, dicom_value!(U16, 0)),
        DataElement::new(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, per_frame.len().to_string()),
        seq(tags::SEGMENT_SEQUENCE, segment_items),
        one_item(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![DataElement::new(
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                dimension_uid.as_str(),
            )],
        ),
        seq(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dimension(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "ReferencedSegmentNumber",
                ),
                dimension(
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                    "ImagePositionPatient",
                ),
            ],
        ),
        one_item(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![
                one_item(tags::PIXEL_MEASURES_SEQUENCE, pixel_measures),
                one_item(
                    tags::PLANE_ORIENTATION_SEQUENCE,
                    vec![DataElement::new(
                        tags::IMAGE_ORIENTATION_PATIENT,
                        VR::DS,
                        ds(&orientation),
                    )],
                ),
            ],
        ),
        seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        one_item(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![
                DataElement::new(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    source.series_instance_uid.as_str(),
                ),
                one_item(tags::REFERENCED_INSTANCE_SEQUENCE, source.reference()),
            ],
        ),
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(bits.into())),
    ] {
        obj.put(e);
    }
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .context("building the SEG's file meta group")?;
    let tmp = path.with_extension("partial");
    file.write_to_file(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Today's date (YYYYMMDD) and time (HHMMSS) in UTC.
fn now_date_time() -> (String, String) {
    let now = chrono::Utc::now();
    (
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    )
}
