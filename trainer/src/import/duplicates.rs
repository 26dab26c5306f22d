//! Finds slices whose pixels are identical to an earlier slice's. Public collections do hold
//! the same subject twice under two ids (spine-mri-vb: four pairs, docs/REAL_DATA.md). Within a
//! split that only double-counts a patient; across splits it puts test images into training,
//! which would make every later score meaningless, so the import refuses it unless the copies
//! are dropped (`--drop-duplicates`).

use std::collections::{BTreeMap, HashMap};

use image::DynamicImage;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// (patient, split)
type PatientInSplit = (String, String);

/// Two patients (or one patient twice) with identical slices, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicatePatients {
    pub first: PatientInSplit,
    pub second: PatientInSplit,
    pub slices: usize,
    /// One pair of identical slices, for the message.
    pub example: (String, String),
    /// The second patient's copies were left out of the data set.
    pub dropped: bool,
}

impl DuplicatePatients {
    /// True when the two copies sit in different splits.
    pub fn crosses_splits(&self) -> bool {
        self.first.1 != self.second.1
    }

    /// True for one patient's slice repeated within that patient.
    pub fn same_patient(&self) -> bool {
        self.first.0 == self.second.0
    }
}

impl std::fmt::Display for DuplicatePatients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ((p1, s1), (p2, s2)) = (&self.first, &self.second);
        write!(
            f,
            "{} slices of patient {p1} ({s1}) are identical to slices of patient {p2} ({s2}), e.g. {} and {}",
            self.slices, self.example.0, self.example.1
        )
    }
}

struct Seen {
    name: String,
    patient: String,
    split: String,
}

#[derive(Default)]
pub struct DuplicateFinder {
    /// Leave out slices identical to an earlier slice of another patient.
    pub drop: bool,
    seen: HashMap<[u8; 32], Seen>,
    /// (first, second) -> (identical slices, one example pair of slice names)
    pairs: BTreeMap<(PatientInSplit, PatientInSplit), (usize, (String, String))>,
}

impl DuplicateFinder {
    /// Records one slice and says whether to keep it (false: a copy to drop). Constant images
    /// (blank slices outside the body, common when all slices of a volume are imported) are
    /// alike in every patient and are not compared.
    pub fn add(&mut self, image: &DynamicImage, name: &str, patient: &str, split: &str) -> bool {
        let bytes = image.as_bytes();
        let px = usize::from(image.color().bytes_per_pixel()).max(1);
        if bytes.chunks_exact(px).all(|p| p == &bytes[..px]) {
            return true;
        }
        let mut hasher = Sha256::new();
        hasher.update(image.width().to_le_bytes());
        hasher.update(image.height().to_le_bytes());
        hasher.update(format!("{:?}", image.color()).as_bytes());
        hasher.update(bytes);
        let key: [u8; 32] = hasher.finalize().into();
        match self.seen.get(&key) {
            Some(first) => {
                let entry = self
                    .pairs
                    .entry((
                        (first.patient.clone(), first.split.clone()),
                        (patient.to_string(), split.to_string()),
                    ))
                    .or_insert_with(|| (0, (first.name.clone(), name.to_string())));
                entry.0 += 1;
                !self.drops(&first.patient, patient)
            }
            None => {
                self.seen.insert(
                    key,
                    Seen {
                        name: name.to_string(),
                        patient: patient.to_string(),
                        split: split.to_string(),
                    },
                );
                true
            }
        }
    }

    /// The one rule for leaving a copy out: `drop` is on and the copy belongs to another
    /// patient (a slice repeated within one patient stays).
    fn drops(&self, first_patient: &str, patient: &str) -> bool {
        self.drop && first_patient != patient
    }

    pub fn found(&self) -> Vec<DuplicatePatients> {
        self.pairs
            .iter()
            .map(|((first, second), (slices, example))| DuplicatePatients {
                first: first.clone(),
                second: second.clone(),
                slices: *slices,
                example: example.clone(),
                dropped: self.drops(&first.0, &second.0),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    fn img(seed: u8) -> DynamicImage {
        DynamicImage::ImageLuma8(GrayImage::from_fn(4, 3, |x, y| {
            image::Luma([seed.wrapping_add((x * 7 + y) as u8)])
        }))
    }

    #[test]
    fn pairs_patients_with_identical_slices() {
        let mut d = DuplicateFinder::default();
        for (image, name, patient) in [(0, "a_1", "a"), (1, "a_2", "a"), (9, "c_1", "c")] {
            assert!(d.add(&img(image), name, patient, "test"));
        }
        // Kept: without `drop` copies are only reported.
        assert!(d.add(&img(0), "b_1", "b", "test"));
        assert!(d.add(&img(1), "b_2", "b", "test"));
        let found = d.found();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].first, ("a".into(), "test".into()));
        assert_eq!(found[0].second, ("b".into(), "test".into()));
        assert_eq!(found[0].slices, 2);
        assert!(!found[0].crosses_splits());
        assert!(found[0].to_string().contains("a_1 and b_1"));
    }

    #[test]
    fn drop_leaves_out_another_patients_copies_only() {
        let mut d = DuplicateFinder {
            drop: true,
            ..Default::default()
        };
        assert!(d.add(&img(0), "a_1", "a", "train"));
        assert!(
            d.add(&img(0), "a_2", "a", "train"),
            "a repeat within a patient stays"
        );
        assert!(!d.add(&img(0), "b_1", "b", "test"));
        let found = d.found();
        assert_eq!(found.len(), 2);
        assert!(found.iter().any(|f| f.same_patient() && !f.dropped));
        assert!(found.iter().any(|f| f.crosses_splits() && f.dropped));
    }

    #[test]
    fn blank_slices_are_not_duplicates() {
        let mut d = DuplicateFinder::default();
        let blank =
            DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(4, 3, image::Luma([300u16])));
        d.drop = true;
        assert!(d.add(&blank, "a_1", "a", "train"));
        assert!(d.add(&blank, "b_1", "b", "test"));
        assert!(d.found().is_empty());
    }

    #[test]
    fn same_pixels_of_another_size_differ() {
        let mut d = DuplicateFinder::default();
        let wide = DynamicImage::ImageLuma8(
            GrayImage::from_raw(6, 2, img(3).to_luma8().into_raw()).unwrap(),
        );
        assert!(d.add(&img(3), "a_1", "a", "train"));
        assert!(d.add(&wide, "b_1", "b", "test"));
        assert!(d.found().is_empty());
    }
}
