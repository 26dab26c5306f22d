//! Attributes of one frame of a DICOM object. Classic files (one image per file) hold them at
//! the top level; enhanced multi-frame files (Enhanced CT/MR, SEG) hold them in functional
//! groups: the frame's item of PerFrameFunctionalGroupsSequence, or the one shared item.

use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::{InMemDicomObject, Tag};

/// The first item of sequence `seq` (a functional-group macro, a reference).
pub fn first_item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
    obj.element(seq).ok()?.items()?.first()
}

/// Element `tag` of frame `frame` (from 0): at the top level, else in macro `group` of the
/// frame's functional group, else in the shared one.
pub fn frame_element(
    obj: &InMemDicomObject,
    frame: usize,
    group: Tag,
    tag: Tag,
) -> Option<&InMemElement> {
    if let Ok(e) = obj.element(tag) {
        return Some(e);
    }
    fn in_group(g: &InMemDicomObject, group: Tag, tag: Tag) -> Option<&InMemElement> {
        first_item(g, group)?.element(tag).ok()
    }
    obj.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .and_then(|e| e.items())
        .and_then(|items| items.get(frame))
        .and_then(|g| in_group(g, group, tag))
        .or_else(|| {
            first_item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
                .and_then(|g| in_group(g, group, tag))
        })
}

/// [`frame_element`] as numbers; `None` when absent or not numeric.
pub fn frame_floats(
    obj: &InMemDicomObject,
    frame: usize,
    group: Tag,
    tag: Tag,
) -> Option<Vec<f64>> {
    frame_element(obj, frame, group, tag)?
        .to_multi_float64()
        .ok()
}

/// NumberOfFrames, 1 when absent (classic files).
pub fn number_of_frames(obj: &InMemDicomObject) -> usize {
    obj.element(tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .map_or(1, |n| n as usize)
}
