//! Whole-pipeline tests: exact geometry for the mask, identity at severity 0, determinism,
//! the planes API, settings validation.

use image::{GrayImage, Luma, Rgb, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

/// A smooth, textured test card: gradients plus a checker, so shifts and blurs show.
fn card(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let check = if (x / 4 + y / 4) % 2 == 0 { 40 } else { 0 };
        Rgb([
            (x * 200 / w) as u8 + check,
            (y * 200 / h) as u8 + check,
            ((x + y) * 100 / (w + h)) as u8 + 60,
        ])
    })
}

/// A dark image with a bright square at `[x0, x1) x [y0, y1)`, labelled 1.
fn square(side: u32, x0: u32, x1: u32, y0: u32, y1: u32) -> (RgbImage, GrayImage) {
    let inside = |x: u32, y: u32| (x0..x1).contains(&x) && (y0..y1).contains(&y);
    let img = RgbImage::from_fn(side, side, |x, y| {
        if inside(x, y) {
            Rgb([235; 3])
        } else {
            Rgb([25; 3])
        }
    });
    let mask = GrayImage::from_fn(side, side, |x, y| Luma([u8::from(inside(x, y))]));
    (img, mask)
}

fn luma(p: &Rgb<u8>) -> f64 {
    0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])
}

#[test]
fn severity_zero_is_nearly_a_screenshot() {
    let img = card(64, 48);
    let mask = GrayImage::from_fn(64, 48, |x, y| Luma([u8::from(x > 20 && y < 30) * 2]));
    let cfg = PhoneCapture::with_severity(0.0);
    let (photo, warped) = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(9));
    assert_eq!(photo.dimensions(), img.dimensions());
    assert_eq!(warped, mask, "the mask moved at severity 0");
    let diffs: Vec<i32> = photo
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
        .collect();
    let max = diffs.iter().max().copied().unwrap_or(0);
    assert!(max <= 1, "severity 0 changed a value by {max}");
}

#[test]
fn same_seed_gives_the_same_bytes() {
    let img = card(96, 80);
    let mask = GrayImage::from_fn(96, 80, |x, _| Luma([u8::from(x > 40)]));
    let cfg = PhoneCapture::default();
    let a = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(11));
    let b = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(11));
    assert_eq!(a.0.as_raw(), b.0.as_raw());
    assert_eq!(a.1.as_raw(), b.1.as_raw());
    let c = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(12));
    assert_ne!(a.0.as_raw(), c.0.as_raw());
}

#[test]
fn default_capture_is_not_a_screenshot() {
    let img = card(96, 96);
    let mask = GrayImage::new(96, 96);
    let (photo, _) =
        PhoneCapture::default().capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(2));
    let mean_diff = photo
        .as_raw()
        .iter()
        .zip(img.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .sum::<f64>()
        / img.as_raw().len() as f64;
    assert!(
        mean_diff > 10.0,
        "default capture too close to the input: {mean_diff}"
    );
}

/// The mask's labelled square lands where the bright square's light went: brighter inside
/// than just outside, and (with no glare to pull it) the bright pixels' centroid on the
/// label's centroid; and the label is where the sampled homography maps the square.
#[test]
fn labelled_square_stays_on_its_light() {
    let side = 128;
    let (img, mask) = square(side, 48, 80, 52, 84);
    // No glare and a dark desk: nothing else in the frame is as bright as the square.
    let cfg = PhoneCapture {
        glare_probability: 0.0,
        background_level: Span::new(0.0, 0.1),
        ..PhoneCapture::default()
    };
    for seed in 0..16u64 {
        let shot = cfg.sample(side, side, &mut ChaCha8Rng::seed_from_u64(seed));
        let (photo, warped) = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(seed));
        let labelled: Vec<(u32, u32)> = warped
            .enumerate_pixels()
            .filter(|(_, _, p)| p[0] == 1)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(
            labelled.len() > 500,
            "seed {seed}: {} labelled pixels",
            labelled.len()
        );
        // Every labelled photo pixel's centre maps into the square under the sampled map.
        for &(x, y) in &labelled {
            let (u, v) = shot
                .photo_to_image()
                .apply(f64::from(x) + 0.5, f64::from(y) + 0.5)
                .expect("in front of the camera");
            assert!(
                (48.0..80.0).contains(&u) && (52.0..84.0).contains(&v),
                "({u},{v})"
            );
        }
        let on = |x: i64, y: i64| {
            x >= 0
                && y >= 0
                && x < side as i64
                && y < side as i64
                && warped.get_pixel(x as u32, y as u32)[0] == 1
        };
        let (mut sin, mut nin, mut sring, mut nring) = (0.0, 0, 0.0, 0);
        for (x, y, p) in photo.enumerate_pixels() {
            let (x, y) = (i64::from(x), i64::from(y));
            if on(x, y) {
                sin += luma(p);
                nin += 1;
            } else if (-4..=4).any(|dy| (-4..=4).any(|dx| on(x + dx, y + dy))) {
                sring += luma(p);
                nring += 1;
            }
        }
        let (inside, ring) = (sin / f64::from(nin), sring / f64::from(nring.max(1)));
        assert!(
            inside > ring + 60.0,
            "seed {seed}: inside {inside} ring {ring}"
        );
        // Centroid of the pixels brighter than halfway, against the label's centroid.
        let half = (inside + ring) / 2.0;
        let (mut bx, mut by, mut bn) = (0.0, 0.0, 0.0);
        let near = |x: i64, y: i64| (-6..=6).any(|dy| (-6..=6).any(|dx| on(x + dx, y + dy)));
        for (x, y, p) in photo.enumerate_pixels() {
            if luma(p) > half && near(i64::from(x), i64::from(y)) {
                bx += f64::from(x);
                by += f64::from(y);
                bn += 1.0;
            }
        }
        let n = labelled.len() as f64;
        let lx = labelled.iter().map(|p| f64::from(p.0)).sum::<f64>() / n;
        let ly = labelled.iter().map(|p| f64::from(p.1)).sum::<f64>() / n;
        let (bx, by) = (bx / bn, by / bn);
        assert!(
            (bx - lx).abs() < 1.0 && (by - ly).abs() < 1.0,
            "seed {seed}: light at ({bx:.2},{by:.2}), label at ({lx:.2},{ly:.2})"
        );
    }
}

#[test]
fn labels_keep_their_values() {
    let img = card(64, 64);
    let mask = GrayImage::from_fn(64, 64, |x, y| Luma([((x / 16 + y / 16) % 4) as u8]));
    let (_, warped) =
        PhoneCapture::with_severity(2.0).capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(4));
    assert!(warped.pixels().all(|p| p[0] < 4));
    assert!((1..4).all(|k| warped.pixels().any(|p| p[0] == k)));
}

#[test]
fn planes_api_matches_capture_for_rgb_and_gives_luma_for_gray() {
    let side = 48usize;
    let img = card(side as u32, side as u32);
    let mask = GrayImage::from_fn(side as u32, side as u32, |x, _| Luma([u8::from(x > 20)]));
    let n = side * side;
    let raw = img.as_raw();
    let planes: Vec<f32> = (0..3)
        .flat_map(|c| (0..n).map(move |i| f32::from(raw[3 * i + c]) / 255.0))
        .collect();
    let cfg = PhoneCapture::default();
    let (out, m) = cfg.capture_planes(
        &planes,
        3,
        side,
        mask.as_raw(),
        &mut ChaCha8Rng::seed_from_u64(8),
    );
    let (photo, warped) = cfg.capture(&img, &mask, &mut ChaCha8Rng::seed_from_u64(8));
    assert_eq!(m, warped.into_raw());
    let out = &out;
    let back: Vec<u8> = (0..n)
        .flat_map(|i| (0..3).map(move |c| (out[c * n + i] * 255.0).round() as u8))
        .collect();
    assert_eq!(back, photo.into_raw());

    let gray: Vec<f32> = planes[n..2 * n].to_vec();
    let (out, m) = cfg.capture_planes(
        &gray,
        1,
        side,
        mask.as_raw(),
        &mut ChaCha8Rng::seed_from_u64(8),
    );
    assert_eq!((out.len(), m.len()), (n, n));
    assert!(out.iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn bad_planes_and_sizes_are_errors() {
    let cfg = PhoneCapture::default();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = cfg
        .try_capture_planes(&[0.0; 8], 2, 2, &[0; 4], &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("expected 1 (gray) or 3"), "{err}");
    let err = cfg
        .try_capture_planes(&[0.0; 5], 1, 2, &[0; 4], &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("5 values"), "{err}");
    let err = cfg
        .try_capture(&RgbImage::new(4, 4), &GrayImage::new(4, 5), &mut rng)
        .unwrap_err();
    assert!(err.to_string().contains("4x5"), "{err}");
}

#[test]
fn settings_are_validated_and_round_trip_through_json() {
    let cfg = PhoneCapture::default();
    cfg.validate().unwrap();
    PhoneCapture::training().validate().unwrap();
    let json = serde_json::to_string(&cfg).unwrap();
    let back: PhoneCapture = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cfg);
    let partial: PhoneCapture = serde_json::from_str(r#"{"severity": 2.0}"#).unwrap();
    assert_eq!(partial, PhoneCapture::with_severity(2.0));
    assert!(serde_json::from_str::<PhoneCapture>(r#"{"severty": 2.0}"#).is_err());
    for bad in [
        PhoneCapture::with_severity(f32::NAN),
        PhoneCapture::with_severity(-1.0),
        PhoneCapture {
            tilt_deg: Span::new(20.0, 10.0),
            ..PhoneCapture::default()
        },
        PhoneCapture {
            jpeg_loss: Span::new(10.0, 100.0),
            ..PhoneCapture::default()
        },
    ] {
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("expected"), "{err}");
    }
}

#[test]
fn training_variant_spreads_severity() {
    let t = PhoneCapture::training();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let s: Vec<f32> = (0..200)
        .map(|_| t.sample(64, 64, &mut rng).severity)
        .collect();
    let (lo, hi) = s
        .iter()
        .fold((f32::MAX, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(
        lo < 0.4 && hi > 1.6 && lo >= 0.2 && hi <= 1.8,
        "severities {lo}..{hi}"
    );
}
