//! Patients, splits and files: which patients a seed and scale give (cheap, no rendering),
//! and writing images, masks and `splits.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, GrayImage, ImageEncoder};
use serde::Serialize;

use super::domain::{DOMAINS, Domain};
use super::texture::{hash_str, mix64};
use super::{SynthConfig, SynthError, SynthSummary, render_slice};
use crate::parallel::for_each_with_progress;

/// Patient names carry three digits: p000..p999.
const MAX_PATIENTS: usize = 1000;

/// One patient of one split, before anything is rendered.
#[derive(Debug, Clone)]
pub struct PatientPlan {
    pub domain: &'static Domain,
    pub split: &'static str,
    pub index: usize,
    pub seed: u64,
    pub slices: usize,
}

impl PatientPlan {
    pub fn name(&self) -> String {
        format!("{}_{}_p{:03}", self.domain.name, self.split, self.index)
    }

    pub fn slice_name(&self, slice: usize) -> String {
        format!("{}_s{:03}", self.name(), slice)
    }
}

/// Seed of one patient. It depends only on its own identity, so changing `--scale` adds or
/// drops patients without changing anyone else's slices.
pub fn patient_seed(seed: u64, domain: &str, split: &str, index: usize) -> u64 {
    mix64(seed ^ mix64(hash_str(domain) ^ mix64(hash_str(split) ^ mix64(index as u64))))
}

/// Number of slices of a patient; also used by `render_slice` to fit the scan to the spine.
pub fn slice_count(domain: &Domain, patient_seed: u64) -> usize {
    let (lo, hi) = domain.slices;
    lo + (mix64(patient_seed ^ 0x5EED_51CE) % (hi - lo + 1) as u64) as usize
}

pub fn validate_scale(scale: f64) -> Result<(), SynthError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(())
    } else {
        Err(SynthError::InvalidScale(scale))
    }
}

/// All patients for a seed and scale, in output order.
pub fn plan(seed: u64, scale: f64) -> Result<Vec<PatientPlan>, SynthError> {
    validate_scale(scale)?;
    let mut patients = Vec::new();
    for domain in &DOMAINS {
        for &(split, base) in domain.splits {
            let count = (base as f64 * scale).round().max(1.0);
            if count > MAX_PATIENTS as f64 {
                let patients = count as usize;
                return Err(SynthError::ScaleTooLarge {
                    scale,
                    domain: domain.name,
                    split,
                    patients,
                });
            }
            patients.extend((0..count as usize).map(|index| {
                let seed = patient_seed(seed, domain.name, split, index);
                PatientPlan {
                    domain,
                    split,
                    index,
                    seed,
                    slices: slice_count(domain, seed),
                }
            }));
        }
    }
    Ok(patients)
}

#[derive(Serialize)]
struct Manifest<'a> {
    name: &'a str,
    classes: [&'a str; 2],
    seed: u64,
    scale: f64,
    domains: BTreeMap<&'a str, BTreeMap<&'a str, BTreeMap<String, Vec<String>>>>,
}

/// One slice to render and write.
struct Job<'a> {
    patient: &'a PatientPlan,
    slice: usize,
}

pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    on_slice: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary, SynthError> {
    let patients = plan(cfg.seed, cfg.scale)?;
    write_dataset(out, cfg, &patients, on_slice)
}

/// Writes the given patients' slices, then the manifest listing them.
fn write_dataset(
    out: &Path,
    cfg: &SynthConfig,
    patients: &[PatientPlan],
    on_slice: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary, SynthError> {
    // A manifest from an earlier run would vouch for images we are about to overwrite.
    let manifest_path = out.join("splits.json");
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(SynthError::RemoveStale {
                path: manifest_path,
                cause: e,
            });
        }
        _ => {}
    }
    for dir in ["images", "masks"] {
        let path = out.join(dir);
        std::fs::create_dir_all(&path).map_err(|cause| SynthError::CreateDir { path, cause })?;
    }
    let jobs: Vec<Job> = patients
        .iter()
        .flat_map(|p| (0..p.slices).map(move |slice| Job { patient: p, slice }))
        .collect();
    render_all(out, &jobs, on_slice)?;
    write_manifest(&manifest_path, cfg, patients)?;
    Ok(SynthSummary {
        slices: jobs.len(),
        patients: patients.len(),
    })
}

/// Renders and writes every job on all cores; progress is reported from this thread.
/// Output does not depend on scheduling: every slice is a pure function of its patient seed.
fn render_all(
    out: &Path,
    jobs: &[Job],
    on_slice: &mut dyn FnMut(usize, usize),
) -> Result<(), SynthError> {
    for_each_with_progress(jobs, |job| write_slice(out, job), on_slice)
}

fn write_slice(out: &Path, job: &Job) -> Result<(), SynthError> {
    let p = job.patient;
    let (image, mask) = render_slice(p.domain.name, p.seed, job.slice as f32);
    let file = format!("{}.png", p.slice_name(job.slice));
    write_png(&out.join("images").join(&file), &image)?;
    write_png(&out.join("masks").join(&file), &mask)
}

fn write_png(path: &Path, img: &GrayImage) -> Result<(), SynthError> {
    let mut bytes = Vec::with_capacity(img.len() / 2);
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Fast, FilterType::Adaptive)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::L8,
        )
        .map_err(|e| SynthError::Write {
            path: path.to_path_buf(),
            cause: std::io::Error::other(e),
        })?;
    std::fs::write(path, bytes).map_err(|cause| SynthError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

/// Written last and atomically (temp file + rename): its presence means the set is complete.
fn write_manifest(
    path: &Path,
    cfg: &SynthConfig,
    patients: &[PatientPlan],
) -> Result<(), SynthError> {
    let mut domains: BTreeMap<&str, BTreeMap<&str, BTreeMap<String, Vec<String>>>> =
        BTreeMap::new();
    for p in patients {
        let slices = (0..p.slices).map(|s| p.slice_name(s)).collect();
        domains
            .entry(p.domain.name)
            .or_default()
            .entry(p.split)
            .or_default()
            .insert(p.name(), slices);
    }
    let manifest = Manifest {
        name: "lumbar-ct-phantom",
        classes: ["background", "cancellous_bone"],
        seed: cfg.seed,
        scale: cfg.scale,
        domains,
    };
    let json =
        serde_json::to_vec_pretty(&manifest).expect("manifest of strings and numbers serialises");
    let tmp: PathBuf = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(|cause| SynthError::Write {
        path: tmp.clone(),
        cause,
    })?;
    std::fs::rename(&tmp, path).map_err(|cause| SynthError::Write {
        path: path.to_path_buf(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(scale: f64) -> BTreeMap<(String, String), (usize, usize)> {
        let mut m = BTreeMap::new();
        for p in plan(42, scale).expect("valid scale") {
            let e = m
                .entry((p.domain.name.to_string(), p.split.to_string()))
                .or_insert((0, 0));
            e.0 += 1;
            e.1 += p.slices;
        }
        m
    }

    #[test]
    fn full_scale_has_the_specified_patients_and_about_the_slices() {
        let c = counts(1.0);
        let expect = [
            ("xh", "train", 85, 1442),
            ("xh", "val", 31, 549),
            ("xh", "test", 36, 615),
            ("zs-big", "test", 134, 670),
            ("zs-small", "test", 134, 670),
        ];
        assert_eq!(c.len(), expect.len());
        for (d, s, patients, slices) in expect {
            let (n, k) = c[&(d.to_string(), s.to_string())];
            assert_eq!(n, patients, "{d}/{s} patients");
            let rel = (k as f64 - slices as f64).abs() / slices as f64;
            assert!(rel < 0.08, "{d}/{s}: {k} slices, expected about {slices}");
        }
    }

    #[test]
    fn tiny_scale_keeps_one_patient_per_split() {
        let c = counts(0.05);
        assert_eq!(c.len(), 5);
        assert!(c.values().all(|&(n, _)| n >= 1));
        assert_eq!(c[&("xh".to_string(), "train".to_string())].0, 4);
    }

    #[test]
    fn invalid_scales_are_rejected_with_their_value() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = plan(42, bad).expect_err("must reject");
            assert!(err.to_string().contains(&format!("{bad}")), "{err}");
        }
        assert!(matches!(
            plan(42, 100.0),
            Err(SynthError::ScaleTooLarge { .. })
        ));
    }

    #[test]
    fn scale_does_not_change_existing_patients() {
        let small = plan(42, 0.1).expect("valid");
        let full = plan(42, 1.0).expect("valid");
        for p in &small {
            let same = full
                .iter()
                .find(|q| q.name() == p.name())
                .expect("patient kept");
            assert_eq!((same.seed, same.slices), (p.seed, p.slices));
        }
    }

    #[test]
    fn writes_manifest_images_and_masks() {
        let dir = std::env::temp_dir().join(format!("synth-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("splits.json"), "stale").expect("stale manifest");
        // Rendering is the slow part: write two slices of one patient.
        let cfg = SynthConfig {
            scale: 0.001,
            seed: 7,
        };
        let mut patient = plan(cfg.seed, cfg.scale)
            .expect("plan")
            .pop()
            .expect("a patient");
        patient.slices = 2;
        let mut calls = 0;
        let summary = write_dataset(&dir, &cfg, &[patient], &mut |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .expect("write");
        assert_eq!((summary.patients, summary.slices, calls), (1, 2, 2));
        assert_eq!(calls, summary.slices);
        let text = std::fs::read_to_string(dir.join("splits.json")).expect("manifest");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        let names = json["domains"]["zs-small"]["test"]["zs-small_test_p000"]
            .as_array()
            .expect("slices");
        let first = names[0].as_str().expect("name");
        assert_eq!(first, "zs-small_test_p000_s000");
        let mask = image::open(dir.join("masks").join(format!("{first}.png")))
            .expect("mask")
            .to_luma8();
        assert!(mask.pixels().all(|p| p[0] <= 1));
        assert!(dir.join("images").join(format!("{first}.png")).is_file());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
