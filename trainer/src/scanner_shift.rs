//! Simulated other scanners: what a slice from the training scanner would look like from a
//! scanner or protocol the model has never seen. Used to make test domains for data sets that
//! have only one (the real lumbar MRI set), next to the phone-capture domain: a model's worth
//! at a hospital is what it does on a machine it was not trained on.
//!
//! Each shift changes one thing, so a table can say which one a model cannot take:
//! - `contrast`: another tissue weighting (T1 against T2 swaps which tissues are bright): the
//!   gray levels are folded about a level `t`, so tissues on both sides of it end up bright
//!   and the order of gray values is no longer the training scanner's;
//! - `fov`: another field of view: the anatomy is zoomed out (background around it) or in
//!   (cropped);
//! - `resolution`: a coarser acquisition matrix: down-sampled by 2-3x and interpolated back;
//! - `noise`: a lower signal-to-noise ratio: Rician noise (the magnitude of complex Gaussian
//!   noise, as MR magnitude images have).
//!
//! Geometry moves the mask with the image (nearest neighbour), so labels stay exact.

use image::codecs::png::PngEncoder;
use image::imageops::{FilterType, resize};
use image::{DynamicImage, GrayImage, ImageEncoder, Luma, RgbImage};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde_json::Value;

use crate::derived_domain::{Derived, DomainMaker, encode_png};
use crate::synth::mix64;

/// One simulated scanner difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScannerShift {
    Contrast,
    Fov,
    Resolution,
    Noise,
}

impl ScannerShift {
    pub const ALL: [ScannerShift; 4] = [
        ScannerShift::Contrast,
        ScannerShift::Fov,
        ScannerShift::Resolution,
        ScannerShift::Noise,
    ];

    /// The domain name a data set gets for it.
    pub fn domain(self) -> &'static str {
        match self {
            ScannerShift::Contrast => "scanner-contrast",
            ScannerShift::Fov => "scanner-fov",
            ScannerShift::Resolution => "scanner-resolution",
            ScannerShift::Noise => "scanner-noise",
        }
    }

    /// Applies the shift with settings drawn from `rng`; the output has the input's size.
    pub fn apply(
        self,
        image: &GrayImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> (GrayImage, GrayImage) {
        match self {
            ScannerShift::Contrast => (
                fold_contrast(image, rng.random_range(0.35..0.6)),
                mask.clone(),
            ),
            ScannerShift::Fov => {
                let scale = if rng.random_bool(0.5) {
                    rng.random_range(0.6..0.8)
                } else {
                    rng.random_range(1.25..1.5)
                };
                rescale_about_centre(image, mask, scale)
            }
            ScannerShift::Resolution => (coarser(image, rng.random_range(2.0..3.0)), mask.clone()),
            ScannerShift::Noise => (
                rician(image, rng.random_range(0.06..0.12), rng),
                mask.clone(),
            ),
        }
    }
}

impl ScannerShift {
    /// What the shift draws, in words (stored in `splits.json` with the domain).
    pub fn describe(self) -> &'static str {
        match self {
            ScannerShift::Contrast => {
                "gray levels folded about t drawn in 0.35..0.6: v -> |v - t| / max(t, 1 - t)"
            }
            ScannerShift::Fov => {
                "field of view: zoomed about the centre by 0.6..0.8 (anatomy smaller) or 1.25..1.5 (cropped), half each"
            }
            ScannerShift::Resolution => {
                "down-sampled by 2..3x (area average) and interpolated back"
            }
            ScannerShift::Noise => "Rician noise, sigma 0.06..0.12 of the gray range",
        }
    }
}

/// Mixed into the image seeds of the simulated-scanner domains ("SCANNERS"), with the shift's
/// index, so that each domain and no training run draws the same seeds.
const SCANNER_SALT: u64 = 0x5343_414E_4E45_5253;

/// A simulated scanner as a derived test domain (`synth --domain scanner-contrast --from
/// DIR`): PNG images, so nothing is added beyond the shift itself. Gray slices are shifted as
/// they are; RGB ones (neighbouring slices stacked as channels) channel by channel with the
/// same draws, so the three slices stay one acquisition.
impl DomainMaker for ScannerShift {
    fn domain(&self) -> &str {
        ScannerShift::domain(*self)
    }

    fn extension(&self) -> &'static str {
        "png"
    }

    fn salt(&self) -> u64 {
        let index = ScannerShift::ALL
            .iter()
            .position(|s| s == self)
            .unwrap_or(0);
        SCANNER_SALT ^ mix64(index as u64 + 1)
    }

    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    fn make(
        &self,
        image: &DynamicImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> Result<Derived, String> {
        let (w, h) = (image.width(), image.height());
        let png_error = |e: image::ImageError| e.to_string();
        if !image.color().has_color() {
            let (img, m) = self.apply(&image.to_luma8(), mask, rng);
            let image_bytes = encode_png(&img).map_err(|e| e.to_string())?;
            return Ok(Derived {
                image_bytes,
                mask: m,
            });
        }
        let rgb = image.to_rgb8();
        let start = rng.clone();
        let mut out = RgbImage::new(w, h);
        let mut warped = mask.clone();
        for c in 0..3 {
            let plane = GrayImage::from_fn(w, h, |x, y| Luma([rgb.get_pixel(x, y).0[c]]));
            *rng = start.clone();
            let (shifted, m) = self.apply(&plane, mask, rng);
            for (x, y, px) in out.enumerate_pixels_mut() {
                px.0[c] = shifted.get_pixel(x, y).0[0];
            }
            warped = m;
        }
        let mut image_bytes = Vec::new();
        PngEncoder::new(&mut image_bytes)
            .write_image(out.as_raw(), w, h, image::ExtendedColorType::Rgb8)
            .map_err(png_error)?;
        Ok(Derived {
            image_bytes,
            mask: warped,
        })
    }

    fn provenance(&self) -> (String, Value) {
        (
            format!("{}_shift", ScannerShift::domain(*self).replace('-', "_")),
            serde_json::json!({ "shift": ScannerShift::domain(*self), "draws": self.describe() }),
        )
    }
}

/// `v -> |v - t| / max(t, 1 - t)` on the 0..1 range: gray levels folded about `t`.
fn fold_contrast(image: &GrayImage, t: f32) -> GrayImage {
    let span = t.max(1.0 - t);
    let lut: Vec<u8> = (0..=255u16)
        .map(|v| {
            let x = v as f32 / 255.0;
            (((x - t).abs() / span).clamp(0.0, 1.0) * 255.0).round() as u8
        })
        .collect();
    GrayImage::from_fn(image.width(), image.height(), |x, y| {
        Luma([lut[image.get_pixel(x, y).0[0] as usize]])
    })
}

/// Zooms image (bilinear) and mask (nearest) by `scale` about the centre; outside is 0.
fn rescale_about_centre(image: &GrayImage, mask: &GrayImage, scale: f32) -> (GrayImage, GrayImage) {
    let (cx, cy) = (
        (image.width() as f32 - 1.0) / 2.0,
        (image.height() as f32 - 1.0) / 2.0,
    );
    let p = Projection::translate(cx, cy)
        * Projection::scale(scale, scale)
        * Projection::translate(-cx, -cy);
    (
        warp(
            image,
            p,
            Interpolation::Bilinear,
            Border::Constant(Luma([0])),
        ),
        warp(mask, p, Interpolation::Nearest, Border::Constant(Luma([0]))),
    )
}

/// Down-sampled by `factor` (area average) and interpolated back to the same size.
fn coarser(image: &GrayImage, factor: f32) -> GrayImage {
    let (w, h) = image.dimensions();
    let small = resize(
        image,
        ((w as f32 / factor).round() as u32).max(1),
        ((h as f32 / factor).round() as u32).max(1),
        FilterType::Triangle,
    );
    resize(&small, w, h, FilterType::Triangle)
}

/// Rician noise of standard deviation `sigma` (on the 0..1 range).
fn rician(image: &GrayImage, sigma: f32, rng: &mut ChaCha8Rng) -> GrayImage {
    let normal = Normal::new(0.0f32, sigma).expect("sigma is positive");
    let mut out = image.clone();
    for px in out.pixels_mut() {
        let v = px.0[0] as f32 / 255.0;
        let (re, im) = (v + normal.sample(rng), normal.sample(rng));
        px.0[0] = ((re * re + im * im).sqrt().clamp(0.0, 1.0) * 255.0).round() as u8;
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn square() -> (GrayImage, GrayImage) {
        let img = GrayImage::from_fn(64, 64, |x, y| {
            Luma([if (20..44).contains(&x) && (24..40).contains(&y) {
                200
            } else {
                40
            }])
        });
        let mask = GrayImage::from_fn(64, 64, |x, y| {
            Luma([u8::from((20..44).contains(&x) && (24..40).contains(&y))])
        });
        (img, mask)
    }

    #[test]
    fn every_shift_is_seeded_keeps_the_size_and_changes_the_image() {
        let (img, mask) = square();
        for shift in ScannerShift::ALL {
            let run = |seed| shift.apply(&img, &mask, &mut ChaCha8Rng::seed_from_u64(seed));
            let (a, am) = run(3);
            assert_eq!(a.dimensions(), img.dimensions(), "{shift:?}");
            assert_eq!(am.dimensions(), mask.dimensions(), "{shift:?}");
            assert_eq!((a.clone(), am.clone()), run(3), "{shift:?} is not seeded");
            assert_ne!(a, img, "{shift:?} changed nothing");
        }
    }

    /// Each shift written as a test domain of a tiny data set (one gray, one RGB slice):
    /// readable, same patients, labels kept, and the four domains beside each other.
    #[test]
    fn every_shift_writes_a_readable_test_domain() {
        use crate::derived_domain::{DerivedSpec, write_derived_domain};
        use medseg_runtime::dataset::Dataset;
        use medseg_runtime::image_io::{load_image, load_mask};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("masks")).unwrap();
        let (img, mask) = square();
        img.save(root.join("images/g0.png")).unwrap();
        DynamicImage::ImageLuma8(img.clone())
            .to_rgb8()
            .save(root.join("images/c0.png"))
            .unwrap();
        for name in ["g0", "c0", "t0"] {
            mask.save(root.join(format!("masks/{name}.png"))).unwrap();
        }
        img.save(root.join("images/t0.png")).unwrap();
        std::fs::write(
            root.join("splits.json"),
            r#"{"name":"tiny","classes":["bg","fg"],
                "domains":{"mr":{"train":{"p0":["t0"]},"test":{"p1":["g0"],"p2":["c0"]}}}}"#,
        )
        .unwrap();
        let spec = DerivedSpec {
            root: root.to_path_buf(),
            source_domain: None,
            seed: 5,
            force: false,
        };
        for shift in ScannerShift::ALL {
            let summary = write_derived_domain(&spec, &shift, &mut |_, _| {}).unwrap();
            assert_eq!((summary.images, summary.patients), (2, 2), "{shift:?}");
        }
        let ds = Dataset::open(root).unwrap();
        for shift in ScannerShift::ALL {
            let test = ds.split(Some(shift.domain()), "test").unwrap();
            let names: Vec<&str> = test.iter().map(|s| s.name.as_str()).collect();
            let expected = [
                format!("{}_g0", shift.domain()),
                format!("{}_c0", shift.domain()),
            ];
            assert_eq!(names, expected, "{shift:?}");
            let gray = load_image(&test[0].image).unwrap();
            assert!(!gray.color().has_color(), "{shift:?}: gray stays gray");
            let rgb = load_image(&test[1].image).unwrap().to_rgb8();
            assert!(
                rgb.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]),
                "{shift:?}: equal channels get the same draws"
            );
            assert!(load_mask(&test[0].mask, 2).unwrap().data.contains(&1));
        }
        assert_eq!(
            ds.default_domain(),
            "mr",
            "the training domain stays the default"
        );
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(root.join("splits.json")).unwrap()).unwrap();
        assert_eq!(manifest["scanner_noise_shift"]["source_domain"], "mr");
        // The same seed makes the same domain again (with --force).
        let before = std::fs::read(root.join("images/scanner-noise_g0.png")).unwrap();
        let again = DerivedSpec {
            force: true,
            ..spec.clone()
        };
        write_derived_domain(&again, &ScannerShift::Noise, &mut |_, _| {}).unwrap();
        assert_eq!(
            std::fs::read(root.join("images/scanner-noise_g0.png")).unwrap(),
            before
        );
        let err = write_derived_domain(&spec, &ScannerShift::Noise, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--force") && err.contains("scanner-noise"),
            "{err}"
        );
    }

    #[test]
    fn fov_moves_the_label_with_the_image() {
        let (img, mask) = square();
        for seed in 0..8 {
            let (a, am) =
                ScannerShift::Fov.apply(&img, &mask, &mut ChaCha8Rng::seed_from_u64(seed));
            let labelled = am.pixels().filter(|p| p.0[0] == 1).count();
            // 24x16 = 384 px scaled by 0.6..1.5 per side: 138..864 px.
            assert!(
                (130..=870).contains(&labelled),
                "seed {seed}: {labelled} px"
            );
            for (p, m) in a.pixels().zip(am.pixels()) {
                if m.0[0] == 1 {
                    assert!(p.0[0] > 40, "seed {seed}: a label on the background");
                }
            }
        }
    }

    #[test]
    fn contrast_folds_the_order_of_gray_levels() {
        let ramp = GrayImage::from_fn(256, 1, |x, _| Luma([x as u8]));
        let folded = fold_contrast(&ramp, 0.5);
        let at = |x: u32| folded.get_pixel(x, 0).0[0];
        assert!(
            at(0) > 240 && at(255) > 240 && at(128) < 5,
            "{} {} {}",
            at(0),
            at(128),
            at(255)
        );
    }

    #[test]
    fn noise_and_resolution_leave_the_mask_alone() {
        let (img, mask) = square();
        for shift in [
            ScannerShift::Noise,
            ScannerShift::Resolution,
            ScannerShift::Contrast,
        ] {
            let (_, m) = shift.apply(&img, &mask, &mut ChaCha8Rng::seed_from_u64(1));
            assert_eq!(m, mask, "{shift:?}");
        }
    }
}
