//! The `phone` test domain (`medseg-train synth --domain phone --from DIR`): every test slice
//! of a source domain captured once by the simulator, images as the camera's JPEG
//! (`images/phone_NAME.jpg`), masks as PNG (`masks/phone_NAME.png`), written by the derived-
//! domain writer ([`crate::derived_domain`]).
//!
//! Each image's rng comes from (seed, [`DOMAIN_SALT`], the slice's name): a training
//! augmentation, which draws fresh per-step seeds with no salt, does not reproduce it
//! (docs/PHONE_CAPTURE.md).

use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GrayImage};
use medseg_runtime::image_io::as_rgb;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::PhoneCapture;
use crate::derived_domain::{
    Derived, DerivedDomainError, DerivedSpec, DerivedSummary, DomainMaker, derived_name,
    write_derived_domain,
};

/// The domain's name in `splits.json`.
pub const DOMAIN: &str = "phone";
/// Mixed into every image seed of the test domain ("PHONEDOM"): seeds a training run draws
/// do not carry it.
pub const DOMAIN_SALT: u64 = 0x5048_4F4E_4544_4F4D;

/// What to write.
#[derive(Debug, Clone)]
pub struct PhoneDomainSpec {
    /// The data set folder (folder layout, `splits.json`).
    pub root: PathBuf,
    /// The domain whose test split is captured; `None`: the data set's default domain.
    pub source_domain: Option<String>,
    pub seed: u64,
    /// Replace an existing `phone` domain.
    pub force: bool,
    pub settings: PhoneCapture,
}

/// The simulator as a maker of derived domains.
pub struct PhoneDomain<'a>(pub &'a PhoneCapture);

impl DomainMaker for PhoneDomain<'_> {
    fn domain(&self) -> &str {
        DOMAIN
    }

    fn extension(&self) -> &'static str {
        "jpg"
    }

    fn salt(&self) -> u64 {
        DOMAIN_SALT
    }

    fn validate(&self) -> Result<(), String> {
        self.0.validate().map_err(|e| e.to_string())
    }

    fn make(
        &self,
        image: &DynamicImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> Result<Derived, String> {
        let (photo, jpeg, warped) = self
            .0
            .capture_encoded(&as_rgb(image), mask, rng)
            .map_err(|e| e.to_string())?;
        // The camera's own JPEG when it made one; at severity 0 (no JPEG step) the nearest to
        // lossless a JPEG gets.
        let image_bytes = match jpeg {
            Some(bytes) => bytes,
            None => {
                let mut bytes = Vec::new();
                JpegEncoder::new_with_quality(&mut bytes, 100)
                    .encode_image(&photo)
                    .map_err(|e| e.to_string())?;
                bytes
            }
        };
        Ok(Derived {
            image_bytes,
            mask: warped,
        })
    }

    fn provenance(&self) -> (String, Value) {
        (
            "phone_capture".into(),
            serde_json::json!({ "settings": self.0 }),
        )
    }
}

/// Writes the domain; `on_image(done, total)` after each written image.
pub fn write_phone_domain(
    spec: &PhoneDomainSpec,
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<DerivedSummary, DerivedDomainError> {
    let derived = DerivedSpec {
        root: spec.root.clone(),
        source_domain: spec.source_domain.clone(),
        seed: spec.seed,
        force: spec.force,
    };
    write_derived_domain(&derived, &PhoneDomain(&spec.settings), on_image)
}

/// The rng of one test-domain image: a pure function of the seed and the slice's name.
pub fn image_rng(seed: u64, name: &str) -> ChaCha8Rng {
    crate::derived_domain::image_rng(seed, DOMAIN_SALT, name)
}

pub fn phone_name(name: &str) -> String {
    derived_name(DOMAIN, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;
    use medseg_runtime::dataset::Dataset;
    use medseg_runtime::image_io::load_mask;
    use rand::SeedableRng;
    use std::path::Path;

    /// A two-patient data set with a train domain `xh` and an extra manifest field.
    fn tiny_dataset(dir: &Path) {
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::create_dir_all(dir.join("masks")).unwrap();
        for name in ["a0", "a1", "b0", "t0"] {
            GrayImage::from_fn(48, 48, |x, y| {
                Luma([if (16..32).contains(&x) && (16..32).contains(&y) {
                    220
                } else {
                    30
                }])
            })
            .save(dir.join("images").join(format!("{name}.png")))
            .unwrap();
            GrayImage::from_fn(48, 48, |x, y| {
                Luma([u8::from((16..32).contains(&x) && (16..32).contains(&y))])
            })
            .save(dir.join("masks").join(format!("{name}.png")))
            .unwrap();
        }
        std::fs::write(
            dir.join("splits.json"),
            r#"{"name":"tiny","classes":["bg","fg"],"seed":7,
                "domains":{"xh":{"train":{"p9":["t0"]},"test":{"pa":["a0","a1"],"pb":["b0"]}}}}"#,
        )
        .unwrap();
    }

    fn spec(dir: &Path, force: bool) -> PhoneDomainSpec {
        PhoneDomainSpec {
            root: dir.to_path_buf(),
            source_domain: None,
            seed: 3,
            force,
            settings: PhoneCapture::default(),
        }
    }

    #[test]
    fn writes_a_readable_domain_of_the_same_patients() {
        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path());
        let mut calls = 0;
        let summary = write_phone_domain(&spec(dir.path(), false), &mut |_, _| calls += 1).unwrap();
        assert_eq!((summary.images, summary.patients, calls), (3, 2, 3));
        assert_eq!(summary.source_domain, "xh");
        assert!(!summary.spacing_dropped);
        let ds = Dataset::open(dir.path()).unwrap();
        let phone = ds.split(Some(DOMAIN), "test").unwrap();
        let names: Vec<_> = phone
            .iter()
            .map(|s| (s.patient.as_str(), s.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [("pa", "phone_a0"), ("pa", "phone_a1"), ("pb", "phone_b0")]
        );
        assert!(phone[0].image.ends_with("images/phone_a0.jpg"));
        let mask = load_mask(&phone[0].mask, 2).unwrap();
        assert!(mask.data.contains(&1), "label lost");
        // Nothing else in the manifest was lost, and the training domain stays the default.
        let json: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("splits.json")).unwrap())
                .unwrap();
        assert_eq!(json["seed"], 7);
        assert_eq!(json["phone_capture"]["source_domain"], "xh");
        assert_eq!(ds.default_domain(), "xh");
        assert!(!dir.path().join("splits.json.tmp").exists());
    }

    #[test]
    fn existing_domain_needs_force_and_output_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path());
        write_phone_domain(&spec(dir.path(), false), &mut |_, _| {}).unwrap();
        let first = std::fs::read(dir.path().join("images/phone_a1.jpg")).unwrap();
        let err = write_phone_domain(&spec(dir.path(), false), &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        write_phone_domain(&spec(dir.path(), true), &mut |_, _| {}).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("images/phone_a1.jpg")).unwrap(),
            first
        );
        let err = write_phone_domain(
            &PhoneDomainSpec {
                source_domain: Some(DOMAIN.into()),
                ..spec(dir.path(), true)
            },
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(matches!(err, DerivedDomainError::SourceIsItself { .. }));
    }

    #[test]
    fn refuses_jmedseg_layout_and_names_a_bad_mask() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_label.json"), "{}").unwrap();
        let err = write_phone_domain(&spec(dir.path(), false), &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("JMedSeg layout"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path());
        GrayImage::new(40, 40)
            .save(dir.path().join("masks/a1.png"))
            .unwrap();
        let err = write_phone_domain(&spec(dir.path(), false), &mut |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("a1.png"), "{err}");
        // The manifest is untouched by a failed run.
        let ds = Dataset::open(dir.path()).unwrap();
        assert!(!ds.domains.contains_key(DOMAIN));
    }

    #[test]
    fn phone_images_get_no_pixel_spacing() {
        use medseg_runtime::slice_table::{self, SliceRow};
        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path());
        let rows: Vec<SliceRow> = ["a0", "a1", "b0"]
            .iter()
            .map(|n| SliceRow {
                name: (*n).into(),
                patient: "pa".into(),
                domain: "xh".into(),
                split: "test".into(),
                source: "vol.nii.gz".into(),
                slice_index: Some(0),
                spacing_y_mm: Some(0.7),
                spacing_x_mm: Some(0.7),
                height: 48,
                width: 48,
                foreground_pixels: 256,
            })
            .collect();
        slice_table::write(&dir.path().join(slice_table::FILE_NAME), &rows).unwrap();
        let summary = write_phone_domain(&spec(dir.path(), false), &mut |_, _| {}).unwrap();
        assert!(summary.spacing_dropped);
        let ds = Dataset::open(dir.path()).unwrap();
        assert!(ds.split(Some("xh"), "test").unwrap()[0].spacing.is_some());
        assert!(
            ds.split(Some(DOMAIN), "test")
                .unwrap()
                .iter()
                .all(|s| s.spacing.is_none())
        );
    }

    #[test]
    fn image_seeds_depend_on_seed_and_name_only() {
        use rand::RngCore;
        let a = image_rng(1, "x").next_u64();
        assert_eq!(a, image_rng(1, "x").next_u64());
        assert_ne!(a, image_rng(2, "x").next_u64());
        assert_ne!(a, image_rng(1, "y").next_u64());
        // Not the seed a plain `seed_from_u64(seed)` would give a training run.
        assert_ne!(a, ChaCha8Rng::seed_from_u64(1).next_u64());
    }
}
