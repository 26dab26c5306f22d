//! Procedural lumbar CT phantom: the default data set, standing in for JMedSeg's lumbar CT
//! (not public). Axial 512x512 slices in a bone window; the label is the cancellous bone
//! inside the vertebral body (class 1), surrounded by a cortical shell and posterior elements
//! as bright as the shell, so no threshold finds it.
//!
//! Three domains, split by patient: `xh` (hospital A; train/val/test) and hospital B's
//! `zs-big` (tight field of view) and `zs-small` (wide field of view with the reconstruction
//! circle visible), test only. Every slice is a pure function of (domain, patient seed,
//! slice position), so output is byte-identical for a seed whatever the thread count.
//!
//! - `anatomy`: patient habitus, body wall, table, slice-to-level mapping;
//! - `viscera`: bowel, kidneys, liver, muscles, vessels;
//! - `vertebra`: vertebral body (label), canal, posterior elements, discs;
//! - `domain`: per-hospital acquisition (field of view, blur, kernel, noise, window);
//! - `texture`: seeds, noise fields, smooth z-curves, filters;
//! - `raster`: HU canvas, world-to-pixel view, shape primitives;
//! - `layout`: patients per split, file names, writing images, masks and `splits.json`.

mod anatomy;
mod domain;
mod layout;
mod raster;
mod texture;

pub use texture::{hash_str, mix64};
mod vertebra;
mod viscera;

use std::path::{Path, PathBuf};

use image::GrayImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Names of the generated domains, in output order.
pub const DOMAINS: [&str; 3] = ["xh", "zs-big", "zs-small"];

#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Multiplies every split's patient count (rounded, at least one patient per split).
    pub scale: f64,
    pub seed: u64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            scale: 1.0,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    pub slices: usize,
    pub patients: usize,
}

/// io errors are part of each message, not a `source`: the CLI prints the chain with `{:#}`,
/// which would repeat them.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("invalid scale {0}: expected a finite number > 0")]
    InvalidScale(f64),
    #[error(
        "scale {scale} gives {patients} patients in {domain}/{split}; patient names (p000..p999) hold at most 1000"
    )]
    ScaleTooLarge {
        scale: f64,
        domain: &'static str,
        split: &'static str,
        patients: usize,
    },
    #[error("cannot create directory {}: {cause}", path.display())]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot remove stale {}: {cause}", path.display())]
    RemoveStale {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write {}: {cause}", path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Generates the full phantom set under `out`: `images/NAME.png` (8-bit grey),
/// `masks/NAME.png` (class index 0/1) and, last and atomically, `splits.json`.
/// `on_slice(done, total)` is called after each written slice.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    on_slice: &mut dyn FnMut(usize, usize),
) -> Result<SynthSummary, SynthError> {
    layout::generate(out, cfg, on_slice)
}

/// Renders one slice: (image, mask with class indices 0/1). `patient_seed` fixes the whole
/// patient (the data set derives it from seed, domain, split and patient index); `z` is the
/// slice position within the patient in slice units (the data set uses 0, 1, ...; fractions
/// interpolate smoothly, since anatomy is a smooth function of z).
///
/// # Panics
/// If `domain` is not one of [`DOMAINS`].
pub fn render_slice(domain: &str, patient_seed: u64, z: f32) -> (GrayImage, GrayImage) {
    let d = domain::find(domain).unwrap_or_else(|| {
        panic!(
            "unknown synth domain '{domain}'; expected one of {}",
            DOMAINS.join(", ")
        )
    });
    let patient = patient(d, patient_seed);
    let mut rng = slice_rng(patient_seed, z);
    let mut canvas = d.blank_canvas(patient.view);
    patient.paint(&mut canvas, z, &mut rng);
    d.acquire(canvas, patient.noise_gain, &mut rng)
}

fn patient(d: &domain::Domain, patient_seed: u64) -> anatomy::Patient {
    let slices = layout::slice_count(d, patient_seed);
    anatomy::Patient::sample(&mut ChaCha8Rng::seed_from_u64(patient_seed), d, slices)
}

/// Per-slice randomness (textures, noise), independent of the order slices are rendered in.
fn slice_rng(patient_seed: u64, z: f32) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(texture::mix64(
        patient_seed ^ texture::mix64(u64::from(z.to_bits())),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disc(domain: &str, seed: u64, z: f32) -> bool {
        patient(domain::find(domain).expect("known domain"), seed).is_disc(z)
    }

    #[test]
    fn same_seed_gives_identical_bytes() {
        let a = render_slice("zs-small", 99, 2.0);
        let b = render_slice("zs-small", 99, 2.0);
        assert_eq!(a.0.as_raw(), b.0.as_raw());
        assert_eq!(a.1.as_raw(), b.1.as_raw());
        let c = render_slice("zs-small", 100, 2.0);
        assert_ne!(a.0.as_raw(), c.0.as_raw());
    }

    #[test]
    fn mask_is_binary_nonempty_off_disc_and_empty_on_disc() {
        for (i, domain) in DOMAINS.iter().enumerate() {
            for seed in 0..2u64 {
                let seed = seed * 31 + i as u64;
                let z = 1.0;
                let (_, mask) = render_slice(domain, seed, z);
                let ones = mask.pixels().filter(|p| p[0] == 1).count();
                assert!(
                    mask.pixels().all(|p| p[0] <= 1),
                    "{domain}: mask not binary"
                );
                if disc(domain, seed, z) {
                    assert_eq!(ones, 0, "{domain} seed {seed}: disc slice has a label");
                } else {
                    assert!(ones > 300, "{domain} seed {seed}: only {ones} label pixels");
                }
            }
        }
    }

    #[test]
    fn about_ten_percent_of_slices_are_discs() {
        let d = domain::find("xh").expect("xh");
        let (mut discs, mut total) = (0, 0);
        for seed in 0..200u64 {
            let p = patient(d, seed);
            let n = layout::slice_count(d, seed);
            discs += (0..n).filter(|&s| p.is_disc(s as f32)).count();
            total += n;
        }
        let frac = discs as f64 / total as f64;
        assert!((0.06..0.14).contains(&frac), "disc fraction {frac}");
    }

    #[test]
    fn label_lies_inside_a_brighter_shell() {
        for domain in DOMAINS {
            let seed = (0..20u64)
                .find(|&s| !disc(domain, s, 0.0))
                .expect("a vertebra slice");
            let (img, mask) = render_slice(domain, seed, 0.0);
            let (inside, ring) = inside_and_ring_means(&img, &mask);
            assert!(
                ring > inside + 5.0,
                "{domain}: ring {ring} vs inside {inside}"
            );
        }
    }

    /// Mean grey inside the mask and in the 2-pixel ring just outside it.
    fn inside_and_ring_means(img: &GrayImage, mask: &GrayImage) -> (f64, f64) {
        let (w, h) = mask.dimensions();
        let on = |x: i64, y: i64| {
            x >= 0
                && y >= 0
                && x < w as i64
                && y < h as i64
                && mask.get_pixel(x as u32, y as u32)[0] == 1
        };
        let (mut sin, mut nin, mut sring, mut nring) = (0.0, 0, 0.0, 0);
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                let v = f64::from(img.get_pixel(x as u32, y as u32)[0]);
                if on(x, y) {
                    sin += v;
                    nin += 1;
                } else if (-2..=2).any(|dy| (-2..=2).any(|dx| on(x + dx, y + dy))) {
                    sring += v;
                    nring += 1;
                }
            }
        }
        (sin / nin.max(1) as f64, sring / nring.max(1) as f64)
    }

    #[test]
    fn public_domain_names_match_the_domain_table() {
        let names: Vec<&str> = domain::DOMAINS.iter().map(|d| d.name).collect();
        assert_eq!(names, DOMAINS);
    }

    #[test]
    #[should_panic(expected = "unknown synth domain")]
    fn unknown_domain_panics_with_the_choices() {
        render_slice("nope", 1, 0.0);
    }
}
