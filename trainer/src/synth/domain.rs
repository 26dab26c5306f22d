//! Per-hospital acquisition: splits, slice sampling, field of view, reconstruction and window.
//!
//! Hospital A (`xh`) is the training domain: full field of view, smooth kernel, a wide bone
//! window (-950..2050 HU: air clipped to black, fat ~72, muscle ~85, compact bone ~175, close
//! to what the reference slice shows). Hospital B (`zs-*`) uses another window (-1025..1775 HU: brighter
//! and more contrast, air just above black), an edge-enhancing kernel with more noise, and
//! either a tight (`zs-big`) or a wide (`zs-small`) field of view.

use image::GrayImage;
use rand::RngCore;

use super::raster::{Canvas, SIZE, View};
use super::texture::{ct_noise, gaussian_blur, sharpen, window};

/// Below this (after blur) a pixel counts as air for the noise level.
const AIR_THRESHOLD_HU: f32 = -800.0;

/// Where the field of view is centred.
#[derive(Clone, Copy, Debug)]
pub enum Framing {
    /// On the scanner isocentre, offset by `dy` world pixels (the table sits below it).
    Isocentre { dy: f32 },
    /// On the spine, offset by `dy`: a targeted reconstruction.
    Spine { dy: f32 },
}

#[derive(Debug)]
pub struct Domain {
    pub name: &'static str,
    /// (split, patients at scale 1).
    pub splits: &'static [(&'static str, usize)],
    /// Slices per patient, inclusive range.
    pub slices: (usize, usize),
    /// Vertebral levels advanced per slice (1.0 = one vertebra + disc).
    pub levels_per_slice: (f32, f32),
    pub zoom: (f32, f32),
    pub framing: Framing,
    /// Radius of the reconstruction circle in pixels; outside it the scanner writes padding.
    pub fov_radius: f32,
    /// Display window: lower bound and width in HU.
    pub window: (f32, f32),
    /// Partial-volume blur, edge enhancement, noise (HU) and noise grain; blur and grain
    /// are in hospital-A pixels (physical), so they widen in pixels when zoomed in.
    pub blur: f32,
    pub sharpen: f32,
    pub noise: f32,
    pub noise_grain: f32,
    /// Air inside the circle, and how much brighter it gets in the outer fifth of the circle.
    pub air_hu: f32,
    pub air_rim: f32,
    pub table_foam_hu: f32,
    pub table_thickness: (f32, f32),
}

/// Hospital B with its tight field of view; `zs-small` differs only in framing.
const ZS_BIG: Domain = Domain {
    name: "zs-big",
    splits: &[("test", 134)],
    slices: (4, 6),
    levels_per_slice: (0.4, 0.7),
    zoom: (1.45, 1.65),
    framing: Framing::Spine { dy: -52.0 },
    fov_radius: 1.0e6,
    window: (-1025.0, 2800.0),
    blur: 0.55,
    sharpen: 0.5,
    noise: 34.0,
    noise_grain: 0.5,
    air_hu: -1000.0,
    air_rim: 0.0,
    table_foam_hu: -650.0,
    table_thickness: (20.0, 28.0),
};

pub const DOMAINS: [Domain; 3] = [
    Domain {
        name: "xh",
        splits: &[("train", 85), ("val", 31), ("test", 36)],
        slices: (14, 20),
        levels_per_slice: (0.12, 0.19),
        zoom: (0.95, 1.05),
        framing: Framing::Isocentre { dy: 0.0 },
        fov_radius: 1.0e6,
        window: (-950.0, 3000.0),
        blur: 0.85,
        sharpen: 0.0,
        noise: 22.0,
        noise_grain: 0.6,
        air_hu: -1000.0,
        air_rim: 0.0,
        table_foam_hu: -900.0,
        table_thickness: (18.0, 26.0),
    },
    ZS_BIG,
    Domain {
        name: "zs-small",
        zoom: (0.72, 0.84),
        framing: Framing::Isocentre { dy: -28.0 },
        // The reconstruction circle just fits the frame, so its rim shows in the corners.
        fov_radius: 255.0,
        air_rim: 55.0,
        ..ZS_BIG
    },
];

/// The domain called `name`, if any.
pub fn find(name: &str) -> Option<&'static Domain> {
    DOMAINS.iter().find(|d| d.name == name)
}

impl Domain {
    /// A canvas of air as this scanner reconstructs it: faintly brighter towards the rim of
    /// the reconstruction circle, which is what makes the circle visible in `zs-small`.
    pub fn blank_canvas(&self, view: View) -> Canvas {
        let mut canvas = Canvas::new(view, self.air_hu);
        if self.air_rim > 0.0 {
            for (i, hu) in canvas.hu.iter_mut().enumerate() {
                let r = radius2_from_centre(i).sqrt() / self.fov_radius;
                let t = ((r - 0.8) / 0.1).clamp(0.0, 1.0);
                *hu += self.air_rim * t * t * (3.0 - 2.0 * t);
            }
        }
        canvas
    }

    /// Scanner and display: partial-volume blur, reconstruction kernel, noise, window, and
    /// padding outside the reconstruction circle. Returns (image, mask).
    pub fn acquire(
        &self,
        mut canvas: Canvas,
        noise_gain: f32,
        rng: &mut impl RngCore,
    ) -> (GrayImage, GrayImage) {
        gaussian_blur(&mut canvas.hu, SIZE, SIZE, self.blur * canvas.view.zoom);
        sharpen(&mut canvas.hu, SIZE, SIZE, self.sharpen);
        let noise = ct_noise(SIZE, SIZE, rng, self.noise_grain * canvas.view.zoom);
        let sigma = self.noise * noise_gain;
        for (hu, n) in canvas.hu.iter_mut().zip(&noise) {
            // Rays that miss the patient are barely attenuated: air is much less noisy.
            *hu += n * if *hu < AIR_THRESHOLD_HU {
                0.15 * sigma
            } else {
                sigma
            };
        }
        let r2_max = self.fov_radius * self.fov_radius;
        let (lower, width) = self.window;
        let pixels = canvas
            .hu
            .iter()
            .enumerate()
            .map(|(i, &hu)| {
                if radius2_from_centre(i) > r2_max {
                    0
                } else {
                    window(hu, lower, width)
                }
            })
            .collect();
        let side = SIZE as u32;
        let image = GrayImage::from_raw(side, side, pixels).expect("buffer is SIZE x SIZE");
        let mask = GrayImage::from_raw(side, side, canvas.mask).expect("buffer is SIZE x SIZE");
        (image, mask)
    }
}

/// Squared distance of pixel `i`'s centre from the image centre, in pixels.
fn radius2_from_centre(i: usize) -> f32 {
    let half = SIZE as f32 / 2.0;
    let (x, y) = (
        (i % SIZE) as f32 + 0.5 - half,
        (i / SIZE) as f32 + 0.5 - half,
    );
    x * x + y * y
}
