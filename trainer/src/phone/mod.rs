//! Phone-capture simulator: what a phone photo of an image shown on a monitor looks like.
//!
//! JMedSeg's generalization claim is about a phone photo of a CT slice on a screen: tilted,
//! zoomed in, with the monitor's gamma and pixel grid, glare, a colour cast, blur, noise and
//! JPEG. [`PhoneCapture`] turns any (image, mask) into such a photo, and warps the mask by
//! exactly the same geometry (nearest neighbour), so the labels stay exact.
//!
//! The stages, one file each, in the order light travels:
//! - `monitor`: display gamma, the black level, ambient reflection, the RGB sub-pixel grid;
//! - `camera`: the homography of a tilted, rotated, zoomed, shifted camera; the scene around
//!   the image (the screen's black margin, the bezel, the desk or wall behind); supersampled
//!   rendering, which aliases the sub-pixel grid into moire as a real sensor does;
//! - `lighting`: uneven illumination, a glare spot, vignetting, white balance and exposure;
//! - `sensor`: defocus and motion blur, sensor noise, the camera's tone curve, JPEG.
//!
//! Every random choice is drawn first into a [`Shot`] (the sampled parameters), then rendered;
//! the same rng state gives the same bytes.
//!
//! `dataset` writes a `phone` test domain into a folder-layout data set (`medseg-train synth
//! --domain phone`); docs/PHONE_CAPTURE.md says how that domain differs from the training
//! augmentation ([`PhoneCapture::training`]).

mod camera;
pub mod dataset;
mod lighting;
mod monitor;
mod sensor;

use image::{GrayImage, RgbImage};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use camera::Homography;

/// A range `[lo, hi]` of one effect's strength at severity 1. Zero is always "no effect" (a
/// screenshot): the severity multiplies what is drawn from the range.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub lo: f32,
    pub hi: f32,
}

impl Span {
    pub const fn new(lo: f32, hi: f32) -> Self {
        Self { lo, hi }
    }

    /// Uniform in `[lo, hi]` (tolerates `lo == hi`, unlike `random_range`).
    fn sample(&self, rng: &mut impl Rng) -> f32 {
        self.lo + (self.hi - self.lo) * rng.random::<f32>()
    }

    /// A magnitude from the range with a random sign (for effects with no preferred side).
    fn signed(&self, rng: &mut impl Rng) -> f32 {
        let m = self.sample(rng);
        if rng.random::<bool>() { m } else { -m }
    }

    fn is_valid(&self) -> bool {
        self.lo.is_finite() && self.hi.is_finite() && self.lo <= self.hi
    }
}

/// Settings of the simulator. `Default` looks like the reference photo (JMedSeg's 'Original'
/// panel): 10-20 degrees of tilt, zoomed in so the body fills the frame, glare, a dark bezel
/// at the edge, a blue cast, soft focus. Every effect is a [`Span`] of strengths at severity 1;
/// `severity` scales them all (0 = nearly a screenshot, 1 = default, 2 = harsh).
///
/// Lengths are fractions of the image's longer side unless named `_px`, which are pixels of
/// a 512-pixel image (scaled with the image size). Light levels are linear (0 = black,
/// 1 = the monitor's white).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhoneCapture {
    /// Multiplies every effect's strength: 0 = nearly a screenshot, 1 = default, 2 = harsh.
    pub severity: f32,
    /// Each capture draws its own severity uniformly in `severity * [1 - spread, 1 + spread]`
    /// (0 = always `severity`); the training variant uses it to cover gentle and harsh shots.
    pub severity_spread: f32,

    // monitor
    /// Display gamma minus 2.2 (the camera encodes with 1/2.2), random sign.
    pub gamma_shift: Span,
    /// Monitor pixels per image pixel (the viewer's zoom); sets the moire's period.
    pub monitor_pixels_per_pixel: Span,
    /// Contrast of the RGB sub-pixel stripes and the dark gaps between pixel rows (0..1).
    pub subpixel_contrast: Span,
    /// Room light reflected by the screen (linear): lifts black to the dark gray of a photo.
    pub ambient_reflection: Span,

    // camera
    /// Camera tilt out of the screen plane, in degrees, split at random between the two axes.
    pub tilt_deg: Span,
    /// In-plane rotation in degrees, random sign.
    pub roll_deg: Span,
    /// Magnification minus 1: 0.3 = the image 30% larger than the frame, edges cropped.
    pub zoom: Span,
    /// Where the camera aims, off the image centre (fraction of the side, random direction).
    pub shift: Span,
    /// Screen between the image's edge and the bezel, drawn for each side (fraction of the
    /// side; scaled by severity up to 1). Negative: the viewer shows the image past that screen
    /// edge, so the bezel hides a strip of it (class 0 in the mask) and can come into a
    /// zoomed-in frame, as in the reference photo.
    pub screen_margin: Span,
    /// Bezel width (fraction of the side).
    pub bezel_width: Span,
    /// Bezel brightness (display value 0..1, not scaled by severity).
    pub bezel_level: Span,
    /// Desk or wall behind the monitor (display value 0..1, not scaled by severity).
    pub background_level: Span,

    // lighting
    /// Brightness gradient across the frame: relative change from the centre to an edge.
    pub illumination_gradient: Span,
    /// Probability that a capture has a glare spot.
    pub glare_probability: f32,
    /// Peak of the glare spot (linear light added on the glossy screen and bezel).
    pub glare_strength: Span,
    /// Glare spot radius (fraction of the side; not scaled by severity).
    pub glare_radius: Span,
    /// Darkening at the frame's corners (0..1).
    pub vignetting: Span,
    /// White balance shift towards blue (negative: towards orange).
    pub cast_blue: Span,
    /// White balance shift along green-magenta, random sign.
    pub cast_tint: Span,
    /// Exposure error in stops, random sign.
    pub exposure_stops: Span,

    // sensor
    /// Defocus blur: Gaussian sigma in pixels of a 512-pixel image.
    pub defocus_px: Span,
    /// Hand-shake motion blur: streak length in pixels of a 512-pixel image.
    pub motion_px: Span,
    /// Sensor read noise (linear standard deviation); shot noise grows with it.
    pub noise: Span,
    /// 100 minus the JPEG quality.
    pub jpeg_loss: Span,
}

impl Default for PhoneCapture {
    fn default() -> Self {
        Self {
            severity: 1.0,
            severity_spread: 0.0,
            gamma_shift: Span::new(0.0, 0.25),
            monitor_pixels_per_pixel: Span::new(1.3, 2.2),
            subpixel_contrast: Span::new(0.15, 0.4),
            ambient_reflection: Span::new(0.015, 0.04),
            tilt_deg: Span::new(10.0, 20.0),
            roll_deg: Span::new(2.0, 8.0),
            zoom: Span::new(0.3, 0.65),
            shift: Span::new(0.02, 0.1),
            screen_margin: Span::new(-0.15, 0.05),
            bezel_width: Span::new(0.02, 0.05),
            bezel_level: Span::new(0.04, 0.15),
            background_level: Span::new(0.2, 0.85),
            illumination_gradient: Span::new(0.1, 0.3),
            glare_probability: 0.85,
            glare_strength: Span::new(0.1, 0.3),
            glare_radius: Span::new(0.05, 0.12),
            vignetting: Span::new(0.1, 0.3),
            cast_blue: Span::new(0.0, 0.15),
            cast_tint: Span::new(0.0, 0.04),
            exposure_stops: Span::new(0.0, 0.3),
            defocus_px: Span::new(0.6, 1.6),
            motion_px: Span::new(0.0, 3.0),
            noise: Span::new(0.002, 0.007),
            jpeg_loss: Span::new(10.0, 35.0),
        }
    }
}

/// Invalid settings or inputs; the message names the value and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum PhoneError {
    #[error("phone capture setting {name} = {value}: {expected}")]
    BadSetting {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("image is {image_w}x{image_h} px but its mask is {mask_w}x{mask_h}; they must match")]
    SizeMismatch {
        image_w: u32,
        image_h: u32,
        mask_w: u32,
        mask_h: u32,
    },
    #[error("{what}: {reason}")]
    BadInput { what: &'static str, reason: String },
}

impl PhoneCapture {
    /// Settings for training-time augmentation: a wider spread of severities (0.2..1.8),
    /// wider angles and zooms (zooming out too), glare less often, other colour casts. Paired
    /// with fresh per-step seeds, the training augmentation never reproduces a capture of the
    /// benchmark's `phone` test domain (docs/PHONE_CAPTURE.md).
    pub fn training() -> Self {
        Self {
            severity_spread: 0.8,
            tilt_deg: Span::new(0.0, 22.0),
            roll_deg: Span::new(0.0, 12.0),
            zoom: Span::new(-0.1, 0.5),
            shift: Span::new(0.0, 0.12),
            glare_probability: 0.6,
            cast_blue: Span::new(-0.1, 0.15),
            cast_tint: Span::new(0.0, 0.06),
            ..Self::default()
        }
    }

    /// The default settings with every strength scaled by `severity`.
    pub fn with_severity(severity: f32) -> Self {
        Self {
            severity,
            ..Self::default()
        }
    }

    /// Checks every setting; [`Self::try_capture`] calls it.
    pub fn validate(&self) -> Result<(), PhoneError> {
        let bad = |name: &'static str, value: String, expected: &'static str| {
            Err(PhoneError::BadSetting {
                name,
                value,
                expected,
            })
        };
        if !(self.severity.is_finite() && (0.0..=4.0).contains(&self.severity)) {
            return bad(
                "severity",
                self.severity.to_string(),
                "expected 0 (nearly a screenshot) to 4 (1 is the default)",
            );
        }
        if !(self.severity_spread.is_finite() && (0.0..=1.0).contains(&self.severity_spread)) {
            return bad(
                "severity_spread",
                self.severity_spread.to_string(),
                "expected 0..=1",
            );
        }
        if !(0.0..=1.0).contains(&self.glare_probability) {
            return bad(
                "glare_probability",
                self.glare_probability.to_string(),
                "expected a probability 0..=1",
            );
        }
        for (name, span) in self.spans() {
            if !span.is_valid() {
                return bad(
                    name,
                    format!("[{}, {}]", span.lo, span.hi),
                    "expected finite lo <= hi",
                );
            }
        }
        let unit = [
            ("subpixel_contrast", self.subpixel_contrast),
            ("bezel_level", self.bezel_level),
            ("background_level", self.background_level),
            ("vignetting", self.vignetting),
        ];
        for (name, span) in unit {
            if span.lo < 0.0 || span.hi > 1.0 {
                return bad(
                    name,
                    format!("[{}, {}]", span.lo, span.hi),
                    "expected within 0..=1",
                );
            }
        }
        let non_negative = [
            ("ambient_reflection", self.ambient_reflection),
            ("tilt_deg", self.tilt_deg),
            ("roll_deg", self.roll_deg),
            ("shift", self.shift),
            ("bezel_width", self.bezel_width),
            ("glare_strength", self.glare_strength),
            ("glare_radius", self.glare_radius),
            ("illumination_gradient", self.illumination_gradient),
            ("defocus_px", self.defocus_px),
            ("motion_px", self.motion_px),
            ("noise", self.noise),
            ("jpeg_loss", self.jpeg_loss),
        ];
        for (name, span) in non_negative {
            if span.lo < 0.0 {
                return bad(name, format!("[{}, {}]", span.lo, span.hi), "expected >= 0");
            }
        }
        if self.tilt_deg.hi > 60.0 || self.roll_deg.hi > 180.0 {
            return bad(
                "tilt_deg / roll_deg",
                format!("{} / {}", self.tilt_deg.hi, self.roll_deg.hi),
                "expected tilt <= 60 and roll <= 180 degrees",
            );
        }
        if self.screen_margin.lo < -0.4
            || self.zoom.lo <= -0.8
            || self.monitor_pixels_per_pixel.lo < 0.5
            || self.jpeg_loss.hi > 95.0
        {
            return bad(
                "screen_margin / zoom / monitor_pixels_per_pixel / jpeg_loss",
                format!(
                    "{} / {} / {} / {}",
                    self.screen_margin.lo,
                    self.zoom.lo,
                    self.monitor_pixels_per_pixel.lo,
                    self.jpeg_loss.hi
                ),
                "expected screen_margin >= -0.4, zoom > -0.8, at least 0.5 monitor pixels per \
                 pixel, jpeg_loss <= 95",
            );
        }
        Ok(())
    }

    fn spans(&self) -> [(&'static str, Span); 23] {
        [
            ("gamma_shift", self.gamma_shift),
            ("monitor_pixels_per_pixel", self.monitor_pixels_per_pixel),
            ("subpixel_contrast", self.subpixel_contrast),
            ("ambient_reflection", self.ambient_reflection),
            ("tilt_deg", self.tilt_deg),
            ("roll_deg", self.roll_deg),
            ("zoom", self.zoom),
            ("shift", self.shift),
            ("screen_margin", self.screen_margin),
            ("bezel_width", self.bezel_width),
            ("bezel_level", self.bezel_level),
            ("background_level", self.background_level),
            ("illumination_gradient", self.illumination_gradient),
            ("glare_strength", self.glare_strength),
            ("glare_radius", self.glare_radius),
            ("vignetting", self.vignetting),
            ("cast_blue", self.cast_blue),
            ("cast_tint", self.cast_tint),
            ("exposure_stops", self.exposure_stops),
            ("defocus_px", self.defocus_px),
            ("motion_px", self.motion_px),
            ("noise", self.noise),
            ("jpeg_loss", self.jpeg_loss),
        ]
    }

    /// Draws one capture's parameters for a `width` x `height` image.
    pub fn sample(&self, width: u32, height: u32, rng: &mut ChaCha8Rng) -> Shot {
        let s = if self.severity_spread > 0.0 {
            let k = 1.0 + self.severity_spread * (2.0 * rng.random::<f32>() - 1.0);
            self.severity * k
        } else {
            self.severity
        };
        let side = width.max(height).max(1) as f32;
        let px = side / 512.0;
        let mut monitor = monitor::Monitor::sample(self, s, rng);
        let camera = camera::Camera::sample(self, s, width, height, rng);
        let lighting = lighting::Lighting::sample(self, s, width, height, rng);
        let sensor = sensor::Sensor::sample(self, s, px, rng);
        // The screen reflects the room's light, whose colour is the cast.
        for (a, t) in monitor.ambient.iter_mut().zip(lighting.ambient_tint()) {
            *a *= t;
        }
        Shot {
            severity: s,
            monitor,
            camera,
            lighting,
            sensor,
        }
    }

    /// Simulates a phone photo of `image` on a monitor: the photo (same size as the input)
    /// and the mask warped by the same geometry (pixels off the image are class 0).
    ///
    /// # Panics
    /// If the settings are invalid or the mask's size differs from the image's; call
    /// [`Self::try_capture`] on input that was not checked.
    pub fn capture(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> (RgbImage, GrayImage) {
        self.try_capture(image, mask, rng)
            .unwrap_or_else(|e| panic!("phone capture: {e}"))
    }

    /// [`Self::capture`] returning bad settings or mismatched sizes as errors.
    pub fn try_capture(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> Result<(RgbImage, GrayImage), PhoneError> {
        let (photo, _, mask) = self.capture_encoded(image, mask, rng)?;
        Ok((photo, mask))
    }

    /// The capture plus the JPEG file the camera wrote (when JPEG was applied), so that the
    /// test domain stores the camera's own JPEG instead of compressing it a second time.
    pub(crate) fn capture_encoded(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> Result<(RgbImage, Option<Vec<u8>>, GrayImage), PhoneError> {
        self.validate()?;
        if image.dimensions() != mask.dimensions() {
            return Err(PhoneError::SizeMismatch {
                image_w: image.width(),
                image_h: image.height(),
                mask_w: mask.width(),
                mask_h: mask.height(),
            });
        }
        if image.width() == 0 || image.height() == 0 {
            return Err(PhoneError::BadInput {
                what: "image",
                reason: "has zero size".into(),
            });
        }
        let shot = self.sample(image.width(), image.height(), rng);
        Ok(shot.render(image, mask, rng))
    }

    /// The same on a square training sample: `channels` (1 or 3) planes of `side` x `side`
    /// values in display units [0, 1], channel-major, and its mask. Gray input comes back as
    /// the photo's luma (the conversion the runtime applies to a colour photo for a gray
    /// model); values pass through 8 bits, as the JPEG needs.
    ///
    /// # Panics
    /// On invalid settings, a channel count other than 1 or 3, or buffer lengths that do not
    /// match; [`Self::try_capture_planes`] returns those as errors.
    pub fn capture_planes(
        &self,
        planes01: &[f32],
        channels: usize,
        side: usize,
        mask: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<u8>) {
        self.try_capture_planes(planes01, channels, side, mask, rng)
            .unwrap_or_else(|e| panic!("phone capture: {e}"))
    }

    /// [`Self::capture_planes`] returning bad input as an error.
    pub fn try_capture_planes(
        &self,
        planes01: &[f32],
        channels: usize,
        side: usize,
        mask: &[u8],
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<f32>, Vec<u8>), PhoneError> {
        let n = side * side;
        if channels != 1 && channels != 3 {
            return Err(PhoneError::BadInput {
                what: "channels",
                reason: format!("{channels}; expected 1 (gray) or 3 (RGB)"),
            });
        }
        if planes01.len() != channels * n || mask.len() != n || side == 0 {
            return Err(PhoneError::BadInput {
                what: "planes",
                reason: format!(
                    "{} values and a mask of {} for {channels} x {side} x {side}; expected {} and {n} (side > 0)",
                    planes01.len(),
                    mask.len(),
                    channels * n
                ),
            });
        }
        let to_u8 = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8; // NaN -> 0
        let mut rgb = Vec::with_capacity(3 * n);
        for i in 0..n {
            for c in 0..3 {
                let plane = if channels == 1 { 0 } else { c };
                rgb.push(to_u8(planes01[plane * n + i]));
            }
        }
        let side32 = side as u32;
        let image = RgbImage::from_raw(side32, side32, rgb).expect("3 bytes per pixel");
        let mask = GrayImage::from_raw(side32, side32, mask.to_vec()).expect("1 byte per pixel");
        let (photo, mask) = self.try_capture(&image, &mask, rng)?;
        let out = if channels == 1 {
            let gray = image::DynamicImage::ImageRgb8(photo).into_luma8();
            gray.as_raw()
                .iter()
                .map(|&v| f32::from(v) / 255.0)
                .collect()
        } else {
            let raw = photo.as_raw();
            (0..3)
                .flat_map(|c| (0..n).map(move |i| f32::from(raw[3 * i + c]) / 255.0))
                .collect()
        };
        Ok((out, mask.into_raw()))
    }
}

/// One capture's drawn parameters: where the camera was, how the room was lit, what the
/// sensor did. Rendering it needs only the rng for the noise.
#[derive(Debug, Clone)]
pub struct Shot {
    /// The severity this capture was drawn at (after `severity_spread`).
    pub severity: f32,
    monitor: monitor::Monitor,
    camera: camera::Camera,
    lighting: lighting::Lighting,
    sensor: sensor::Sensor,
}

impl Shot {
    /// Maps output (photo) pixel coordinates to image pixel coordinates (continuous: pixel
    /// `(x, y)` covers `[x, x+1) x [y, y+1)`).
    pub fn photo_to_image(&self) -> &Homography {
        &self.camera.photo_to_image
    }

    fn render(
        &self,
        image: &RgbImage,
        mask: &GrayImage,
        rng: &mut ChaCha8Rng,
    ) -> (RgbImage, Option<Vec<u8>>, GrayImage) {
        let (w, h) = image.dimensions();
        let mut planes = self.camera.render(image, &self.monitor);
        self.lighting.apply(&mut planes);
        let (photo, jpeg) = self.sensor.develop(planes, rng);
        debug_assert_eq!(photo.dimensions(), (w, h));
        (photo, jpeg, self.camera.warp_mask(mask))
    }
}

/// Linear RGB planes of the photo being formed (channel-major), plus where the glossy screen
/// and bezel are (glare lies on them only).
pub(crate) struct Planes {
    pub width: usize,
    pub height: usize,
    pub rgb: [Vec<f32>; 3],
    /// 0..1: fraction of the pixel showing the screen or bezel.
    pub glossy: Vec<f32>,
}

#[cfg(test)]
mod tests;
