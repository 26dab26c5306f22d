//! Derived test domains: a new domain of a folder-layout data set made from the test split of
//! one of its domains, one output slice per input slice (same patients, same names with the
//! domain as prefix), written beside the others (`images/DOMAIN_NAME.EXT`,
//! `masks/DOMAIN_NAME.png`) and added to `splits.json` atomically, every other field kept.
//! The phone-capture domain ([`crate::phone::dataset`]) and the simulated other scanners
//! ([`crate::scanner_shift`]) are the two kinds; each says how it turns one slice into another
//! ([`DomainMaker`]), this file does the rest once.
//!
//! Each image's rng comes from (seed, the kind's salt, the slice's name): the domain is the
//! same whatever the thread count or order, and a training augmentation, which draws fresh
//! per-step seeds with no salt, does not reproduce it.

use std::path::{Path, PathBuf};

use image::codecs::png::PngEncoder;
use image::{DynamicImage, GrayImage, ImageEncoder};
use medseg_runtime::dataset::{Dataset, Sample};
use medseg_runtime::image_io::{load_image, load_mask};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::parallel::for_each_with_progress;
use crate::synth::{hash_str, mix64};

/// One derived slice: the encoded image (in the maker's [`DomainMaker::extension`]) and the
/// mask (class indices).
pub struct Derived {
    pub image_bytes: Vec<u8>,
    pub mask: GrayImage,
}

/// What makes one kind of derived domain.
pub trait DomainMaker: Sync {
    /// The domain's name in `splits.json` (also the file name prefix).
    fn domain(&self) -> &str;
    /// File extension of the encoded images ("jpg", "png").
    fn extension(&self) -> &'static str;
    /// Mixed into every image seed, so no training run draws the domain's seeds.
    fn salt(&self) -> u64;
    /// Checks the settings before anything is written.
    fn validate(&self) -> Result<(), String>;
    /// Turns one slice into its derived version.
    fn make(
        &self,
        image: &DynamicImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> Result<Derived, String>;
    /// Key and value stored in `splits.json` beside the domains: how the domain was made, so
    /// that it can be made again.
    fn provenance(&self) -> (String, Value);
}

/// Where and from what to write a derived domain.
#[derive(Debug, Clone)]
pub struct DerivedSpec {
    /// The data set folder (folder layout, `splits.json`).
    pub root: PathBuf,
    /// The domain whose test split is used; `None`: the data set's default domain.
    pub source_domain: Option<String>,
    pub seed: u64,
    /// Replace the domain if the data set already has it.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedSummary {
    pub source_domain: String,
    pub images: usize,
    pub patients: usize,
    /// The data set's `slices.csv` gives pixel spacings; derived images are left out of it
    /// (a photo of a screen has no known mm per pixel, a changed field of view another one),
    /// so they are scored in pixels.
    pub spacing_dropped: bool,
}

/// io errors are part of each message (the CLI prints the chain with `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum DerivedDomainError {
    #[error(
        "{}: JMedSeg layout (train_label.json / test_label.json); derived domains are written into folder-layout data sets (splits.json) only: import it into one first",
        path.display()
    )]
    JmedsegLayout { path: PathBuf },
    #[error(transparent)]
    Dataset(#[from] medseg_runtime::RuntimeError),
    #[error("{}: {reason}", path.display())]
    Splits { path: PathBuf, reason: String },
    #[error("{}: already has a '{domain}' domain; pass --force to replace it", path.display())]
    Exists { path: PathBuf, domain: String },
    #[error("'{domain}' cannot be its own source; name another domain with --source-domain")]
    SourceIsItself { domain: String },
    #[error("{}: {cause}", path.display())]
    Make { path: PathBuf, cause: String },
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: exists and would be read instead of the derived image; move it away", path.display())]
    Shadowed { path: PathBuf },
}

/// The rng of one derived image: a pure function of the seed, the kind's salt and the name.
pub fn image_rng(seed: u64, salt: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(seed ^ mix64(salt ^ hash_str(name))))
}

/// The derived slice's name: `DOMAIN_NAME`.
pub fn derived_name(domain: &str, name: &str) -> String {
    format!("{domain}_{name}")
}

/// Writes the domain; `on_image(done, total)` after each written image.
pub fn write_derived_domain(
    spec: &DerivedSpec,
    maker: &dyn DomainMaker,
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<DerivedSummary, DerivedDomainError> {
    let root = &spec.root;
    let domain = maker.domain().to_string();
    maker.validate().map_err(|cause| DerivedDomainError::Make {
        path: root.clone(),
        cause,
    })?;
    let splits_path = root.join("splits.json");
    if !splits_path.is_file()
        && (root.join("train_label.json").is_file() || root.join("test_label.json").is_file())
    {
        return Err(DerivedDomainError::JmedsegLayout { path: root.clone() });
    }
    let ds = Dataset::open(root)?;
    let mut manifest = read_manifest(&splits_path)?;
    if ds.domains.contains_key(&domain) && !spec.force {
        return Err(DerivedDomainError::Exists {
            path: splits_path,
            domain,
        });
    }
    let source = spec
        .source_domain
        .clone()
        .unwrap_or_else(|| ds.default_domain().to_string());
    if source == domain {
        return Err(DerivedDomainError::SourceIsItself { domain });
    }
    let samples = ds.split(Some(&source), "test")?;
    check_names(&ds, &domain, maker.extension(), samples)?;

    // A manifest that lists the old domain would vouch for images about to be overwritten:
    // drop the domain first, atomically, and add it back once all are written.
    if ds.domains.contains_key(&domain) {
        domains_mut(&mut manifest, &splits_path)?.remove(&domain);
        write_manifest(&splits_path, &manifest)?;
    }
    make_all(spec, maker, ds.classes.len(), samples, on_image)?;

    let mut test = serde_json::Map::new();
    for s in samples {
        let entry = test
            .entry(s.patient.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(names) = entry {
            names.push(Value::String(derived_name(&domain, &s.name)));
        }
    }
    let patients = test.len();
    let mut splits = serde_json::Map::new();
    splits.insert("test".into(), Value::Object(test));
    domains_mut(&mut manifest, &splits_path)?.insert(domain.clone(), Value::Object(splits));
    if let Value::Object(top) = &mut manifest {
        let (key, mut made) = maker.provenance();
        if let Value::Object(m) = &mut made {
            m.insert("source_domain".into(), Value::String(source.clone()));
            m.insert("seed".into(), spec.seed.into());
            m.insert(
                "domain_salt".into(),
                Value::String(format!("{:#018x}", maker.salt())),
            );
        }
        top.insert(key, made);
    }
    write_manifest(&splits_path, &manifest)?;
    let spacing_dropped = samples.iter().any(|s| s.spacing.is_some());
    Ok(DerivedSummary {
        source_domain: source,
        images: samples.len(),
        patients,
        spacing_dropped,
    })
}

/// New names must not collide with another domain's slices, nor with a PNG that the data set
/// reader would pick before ours.
fn check_names(
    ds: &Dataset,
    domain: &str,
    extension: &str,
    samples: &[Sample],
) -> Result<(), DerivedDomainError> {
    let taken: std::collections::BTreeSet<&str> = ds
        .domains
        .iter()
        .filter(|(d, _)| d.as_str() != domain)
        .flat_map(|(_, splits)| splits.values().flatten().map(|s| s.name.as_str()))
        .collect();
    for s in samples {
        let name = derived_name(domain, &s.name);
        if taken.contains(name.as_str()) {
            return Err(DerivedDomainError::Splits {
                path: ds.root.join("splits.json"),
                reason: format!("another domain already lists a slice named {name}"),
            });
        }
        // The reader tries PNG first: a PNG of that name would shadow any other format.
        let png = ds.root.join("images").join(format!("{name}.png"));
        if extension != "png" && png.exists() {
            return Err(DerivedDomainError::Shadowed { path: png });
        }
    }
    Ok(())
}

fn read_manifest(path: &Path) -> Result<Value, DerivedDomainError> {
    let text = std::fs::read(path).map_err(|cause| DerivedDomainError::Write {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_json::from_slice(&text).map_err(|e| DerivedDomainError::Splits {
        path: path.to_path_buf(),
        reason: format!("not valid JSON ({e})"),
    })
}

fn domains_mut<'a>(
    manifest: &'a mut Value,
    path: &Path,
) -> Result<&'a mut serde_json::Map<String, Value>, DerivedDomainError> {
    manifest
        .get_mut("domains")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| DerivedDomainError::Splits {
            path: path.to_path_buf(),
            reason: "has no \"domains\" object".into(),
        })
}

/// Temp file + rename: a reader sees the old manifest or the new one, never half of one.
fn write_manifest(path: &Path, manifest: &Value) -> Result<(), DerivedDomainError> {
    let json = serde_json::to_vec_pretty(manifest).expect("a JSON value serialises");
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|cause| DerivedDomainError::Write {
        path: tmp.clone(),
        cause,
    })?;
    std::fs::rename(&tmp, path).map_err(|cause| DerivedDomainError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// Makes and writes every sample on all cores; progress from this thread. Output does not
/// depend on scheduling: each image's rng depends only on its name.
fn make_all(
    spec: &DerivedSpec,
    maker: &dyn DomainMaker,
    classes: usize,
    samples: &[Sample],
    on_image: &mut dyn FnMut(usize, usize),
) -> Result<(), DerivedDomainError> {
    for_each_with_progress(samples, |s| make_one(spec, maker, classes, s), on_image)
}

fn make_one(
    spec: &DerivedSpec,
    maker: &dyn DomainMaker,
    classes: usize,
    sample: &Sample,
) -> Result<(), DerivedDomainError> {
    let image = load_image(&sample.image)?;
    let mask = load_mask(&sample.mask, classes)?.to_gray();
    let mut rng = image_rng(spec.seed, maker.salt(), &sample.name);
    let derived =
        maker
            .make(&image, &mask, &mut rng)
            .map_err(|cause| DerivedDomainError::Make {
                path: sample.image.clone(),
                cause,
            })?;
    let name = derived_name(maker.domain(), &sample.name);
    let image_path = spec
        .root
        .join("images")
        .join(format!("{name}.{}", maker.extension()));
    std::fs::write(&image_path, derived.image_bytes).map_err(|cause| {
        DerivedDomainError::Write {
            path: image_path.clone(),
            cause,
        }
    })?;
    let mask_path = spec.root.join("masks").join(format!("{name}.png"));
    let png = encode_png(&derived.mask).map_err(|cause| DerivedDomainError::Write {
        path: mask_path.clone(),
        cause,
    })?;
    std::fs::write(&mask_path, png).map_err(|cause| DerivedDomainError::Write {
        path: mask_path,
        cause,
    })
}

/// A gray image as PNG bytes.
pub fn encode_png(image: &GrayImage) -> std::io::Result<Vec<u8>> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(std::io::Error::other)?;
    Ok(png)
}
