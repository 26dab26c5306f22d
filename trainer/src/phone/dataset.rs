//! Writing a `phone` test domain into a folder-layout data set (`medseg-train synth --domain
//! phone --from DIR`): every test slice of a source domain captured once by the simulator,
//! images as the camera's JPEG (`images/phone_NAME.jpg`), masks as PNG (`masks/phone_NAME.png`),
//! the same patients, and `splits.json` rewritten atomically with the domain added (every
//! other field kept).
//!
//! Each image's rng comes from (seed, [`DOMAIN_SALT`], the slice's name): the domain is the
//! same whatever the thread count or order, and a training augmentation, which draws fresh
//! per-step seeds with no salt, does not reproduce it (docs/PHONE_CAPTURE.md).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use medseg_runtime::dataset::{Dataset, Sample};
use medseg_runtime::image_io::{as_rgb, load_image, load_mask};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::{PhoneCapture, PhoneError};

/// The domain's name in `splits.json`.
pub const DOMAIN: &str = "phone";
/// Prefix of the domain's file names (images and masks share the data set's folders).
pub const FILE_PREFIX: &str = "phone_";
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneDomainSummary {
    pub source_domain: String,
    pub images: usize,
    pub patients: usize,
    /// The data set's `slices.csv` gives pixel spacings; the phone images have none (a photo
    /// of a screen has no known mm per pixel), so they are scored in pixels.
    pub spacing_dropped: bool,
}

/// io errors are part of each message (the CLI prints the chain with `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum PhoneDomainError {
    #[error(
        "{}: JMedSeg layout (train_label.json / test_label.json); the phone domain is written into folder-layout data sets (splits.json) only: import it into one first",
        path.display()
    )]
    JmedsegLayout { path: PathBuf },
    #[error(transparent)]
    Dataset(#[from] medseg_runtime::RuntimeError),
    #[error("{}: {reason}", path.display())]
    Splits { path: PathBuf, reason: String },
    #[error("{}: already has a '{DOMAIN}' domain; pass --force to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("'{DOMAIN}' cannot be its own source; name another domain with --source-domain")]
    SourceIsPhone,
    #[error("{}: {cause}", path.display())]
    Capture { path: PathBuf, cause: PhoneError },
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: exists and would be read instead of the phone JPEG; move it away", path.display())]
    Shadowed { path: PathBuf },
}

/// The rng of one test-domain image: a pure function of the seed and the slice's name.
pub fn image_rng(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(DOMAIN_SALT ^ hash_str(name))))
}

/// Writes the domain; `on_image(done, total)` after each written image.
pub fn write_phone_domain(
    spec: &PhoneDomainSpec,
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<PhoneDomainSummary, PhoneDomainError> {
    spec.settings
        .validate()
        .map_err(|cause| PhoneDomainError::Capture {
            path: spec.root.clone(),
            cause,
        })?;
    let root = &spec.root;
    let splits_path = root.join("splits.json");
    if !splits_path.is_file()
        && (root.join("train_label.json").is_file() || root.join("test_label.json").is_file())
    {
        return Err(PhoneDomainError::JmedsegLayout { path: root.clone() });
    }
    let ds = Dataset::open(root)?;
    let mut manifest = read_manifest(&splits_path)?;
    if ds.domains.contains_key(DOMAIN) && !spec.force {
        return Err(PhoneDomainError::Exists { path: splits_path });
    }
    let source = spec
        .source_domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    if source == DOMAIN {
        return Err(PhoneDomainError::SourceIsPhone);
    }
    let samples = ds.split(Some(&source), "test")?;
    check_names(&ds, samples)?;

    // A manifest that lists the old phone domain would vouch for images about to be
    // overwritten: drop the domain first, atomically, and add it back once all are written.
    if ds.domains.contains_key(DOMAIN) {
        domains_mut(&mut manifest, &splits_path)?.remove(DOMAIN);
        write_manifest(&splits_path, &manifest)?;
    }
    capture_all(spec, ds.classes.len(), samples, on_image)?;

    let mut test = serde_json::Map::new();
    for s in samples {
        let entry = test
            .entry(s.patient.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(names) = entry {
            names.push(Value::String(phone_name(&s.name)));
        }
    }
    let patients = test.len();
    let mut splits = serde_json::Map::new();
    splits.insert("test".into(), Value::Object(test));
    domains_mut(&mut manifest, &splits_path)?.insert(DOMAIN.into(), Value::Object(splits));
    if let Value::Object(top) = &mut manifest {
        // How the domain was made, so that it can be made again.
        top.insert(
            "phone_capture".into(),
            serde_json::json!({
                "source_domain": source,
                "seed": spec.seed,
                "domain_salt": format!("{DOMAIN_SALT:#018x}"),
                "settings": spec.settings,
            }),
        );
    }
    write_manifest(&splits_path, &manifest)?;
    let spacing_dropped = samples.iter().any(|s| s.spacing.is_some());
    Ok(PhoneDomainSummary {
        source_domain: source,
        images: samples.len(),
        patients,
        spacing_dropped,
    })
}

pub fn phone_name(name: &str) -> String {
    format!("{FILE_PREFIX}{name}")
}

/// New names must not collide with another domain's slices, nor with a PNG that the data set
/// reader would pick before our JPEG.
fn check_names(ds: &Dataset, samples: &[Sample]) -> Result<(), PhoneDomainError> {
    let taken: std::collections::BTreeSet<&str> = ds
        .domains
        .iter()
        .filter(|(d, _)| d.as_str() != DOMAIN)
        .flat_map(|(_, splits)| splits.values().flatten().map(|s| s.name.as_str()))
        .collect();
    for s in samples {
        let name = phone_name(&s.name);
        if taken.contains(name.as_str()) {
            return Err(PhoneDomainError::Splits {
                path: ds.root.join("splits.json"),
                reason: format!("another domain already lists a slice named {name}"),
            });
        }
        let png = ds.root.join("images").join(format!("{name}.png"));
        if png.exists() {
            return Err(PhoneDomainError::Shadowed { path: png });
        }
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Result<Value, PhoneDomainError> {
    let text = std::fs::read(path).map_err(|cause| PhoneDomainError::Write {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_json::from_slice(&text).map_err(|e| PhoneDomainError::Splits {
        path: path.to_path_buf(),
        reason: format!("not valid JSON ({e})"),
    })
}

fn domains_mut<'a>(
    manifest: &'a mut Value,
    path: &Path,
) -> Result<&'a mut serde_json::Map<String, Value>, PhoneDomainError> {
    manifest
        .get_mut("domains")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| PhoneDomainError::Splits {
            path: path.to_path_buf(),
            reason: "has no \"domains\" object".into(),
        })
}

/// Temp file + rename: a reader sees the old manifest or the new one, never half of one.
fn write_manifest(path: &Path, manifest: &Value) -> Result<(), PhoneDomainError> {
    let json = serde_json::to_vec_pretty(manifest).expect("a JSON value serialises");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|cause| PhoneDomainError::Write {
        path: tmp.clone(),
        cause,
    })?;
    std::fs::rename(&tmp, path).map_err(|cause| PhoneDomainError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// Captures and writes every sample on up to 8 threads; progress from this thread. Output
/// does not depend on scheduling: each image's rng depends only on its name.
fn capture_all(
    spec: &PhoneDomainSpec,
    classes: usize,
    samples: &[Sample],
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<(), PhoneDomainError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Result<(), PhoneDomainError>>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (tx, next, failed) = (tx.clone(), &next, &failed);
            s.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let Some(sample) = samples.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send(capture_one(spec, classes, sample)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for result in rx {
            if let Err(e) = result {
                failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
            done += 1;
            on_image(done, samples.len());
        }
        Ok(())
    })
}

fn capture_one(
    spec: &PhoneDomainSpec,
    classes: usize,
    sample: &Sample,
) -> Result<(), PhoneDomainError> {
    let image = load_image(&sample.image)?;
    let mask = load_mask(&sample.mask, classes)?.to_gray();
    let rgb = as_rgb(&image);
    let mut rng = image_rng(spec.seed, &sample.name);
    let (photo, jpeg, warped) = spec
        .settings
        .capture_encoded(&rgb, &mask, &mut rng)
        .map_err(|cause| PhoneDomainError::Capture {
            path: sample.mask.clone(),
            cause,
        })?;
    let name = phone_name(&sample.name);
    let image_path = spec.root.join("images").join(format!("{name}.jpg"));
    // The camera's own JPEG when it made one; at severity 0 (no JPEG step) the nearest to
    // lossless a JPEG gets.
    let bytes = match jpeg {
        Some(bytes) => bytes,
        None => {
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, 100)
                .encode_image(&photo)
                .map_err(|e| PhoneDomainError::Write {
                    path: image_path.clone(),
                    cause: std::io::Error::other(e),
                })?;
            bytes
        }
    };
    std::fs::write(&image_path, bytes).map_err(|cause| PhoneDomainError::Write {
        path: image_path.clone(),
        cause,
    })?;
    let mask_path = spec.root.join("masks").join(format!("{name}.png"));
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(
            warped.as_raw(),
            warped.width(),
            warped.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| PhoneDomainError::Write {
            path: mask_path.clone(),
            cause: std::io::Error::other(e),
        })?;
    std::fs::write(&mask_path, png).map_err(|cause| PhoneDomainError::Write {
        path: mask_path,
        cause,
    })
}

/// SplitMix64 finaliser (as the phantom's seeds).
fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma};

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
        assert!(matches!(err, PhoneDomainError::SourceIsPhone));
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
