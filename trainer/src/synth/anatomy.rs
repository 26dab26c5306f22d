//! The patient: habitus, body wall and the table, plus the level-to-slice mapping. Sampled
//! once per patient, then evaluated at a vertebral level so anatomy drifts smoothly along z.
//!
//! HU values are non-contrast CT: fat -100, muscle ~50, kidney ~32, blood ~40, bone 150-1600.

use std::f32::consts::{FRAC_PI_2, PI, TAU};

use rand::Rng;

use super::domain::{Domain, Framing};
use super::raster::{
    Bounds, Canvas, Ellipse, REGION_FAT, REGION_INTERIOR, REGION_SKIN, REGION_WALL, View,
    fast_atan2,
};
use super::texture::{ValueNoise, ZCurve, uniform};
use super::vertebra::{self, Spine};
use super::viscera::Viscera;

pub(super) const MUSCLE_HU: f32 = 50.0;
const SKIN_HU: f32 = 35.0;
const SKIN_PX: f32 = 1.3;
const CLOTH_HU: f32 = -350.0;
/// Radio-opaque skin markers (metal).
const MARKER_HU: f32 = 2000.0;
/// Highest level sampled (upper L5): lower down the iliac wings, not modelled, would show.
const MAX_LEVEL: f32 = 4.2;
const ANGLES: usize = 256;

pub struct Patient {
    pub view: View,
    /// Bigger bodies attenuate more: scales the domain's noise.
    pub noise_gain: f32,
    level0: f32,
    dlevel: f32,
    body: Body,
    spine: Spine,
    table: Table,
    viscera: Viscera,
}

pub(super) struct Body {
    pub(super) cx: f32,
    pub(super) cy: f32,
    pub(super) rx: f32,
    pub(super) ry: f32,
    exponent: f32,
    harmonics: [(f32, f32); 5],
    /// Where the back lies on the table the contour is flat (fraction of ry).
    flat: f32,
    pub(super) fat: f32,
    fat_ant: f32,
    fat_post: f32,
    fat_phase: f32,
    pub(super) wall: f32,
    pub(super) fat_hu: f32,
    visceral_fat: f32,
    size: ZCurve,
    cloth: Vec<Cloth>,
    markers: Vec<f32>,
    rib_end: f32,
}

/// A fold of gown or blanket: a thin faint line following the skin at a distance.
struct Cloth {
    gap: f32,
    from: f32,
    to: f32,
    wave: f32,
    phase: f32,
}

struct Table {
    cx: f32,
    top: f32,
    radius: f32,
    half_w: f32,
    thick: f32,
    shell_hu: f32,
    foam_hu: f32,
    pad_gap: f32,
}

/// Polar description of the body at one slice: skin radius, fat and wall depth per angle.
struct Contour {
    cx: f32,
    cy: f32,
    radius: [f32; ANGLES + 1],
    fat: [f32; ANGLES + 1],
    wall: [f32; ANGLES + 1],
    rmax: f32,
}

impl Patient {
    pub fn sample(rng: &mut impl Rng, d: &Domain, slices: usize) -> Self {
        let dlevel = uniform(rng, d.levels_per_slice.0, d.levels_per_slice.1);
        let span = dlevel * slices.saturating_sub(1) as f32;
        let level0 = uniform(rng, 0.15, (MAX_LEVEL - span).max(0.15));
        let spine = Spine::sample(rng);
        let body = Body::sample(rng, &spine);
        let table = Table::sample(rng, d, &body);
        let viscera = Viscera::sample(rng, &body, &spine);
        let zoom = uniform(rng, d.zoom.0, d.zoom.1);
        let (jx, jy) = (uniform(rng, -6.0, 6.0), uniform(rng, -6.0, 6.0));
        let (cx, cy) = match d.framing {
            Framing::Isocentre { dy } => (jx, dy + jy),
            Framing::Spine { dy } => (spine.x + jx, spine.y + dy + jy),
        };
        Self {
            view: View { zoom, cx, cy },
            noise_gain: (body.rx / 150.0).powf(1.2),
            level0,
            dlevel,
            body,
            spine,
            table,
            viscera,
        }
    }

    pub fn level(&self, z: f32) -> f32 {
        self.level0 + z * self.dlevel
    }

    /// Whether slice `z` passes through an intervertebral disc (empty mask).
    #[cfg(test)]
    pub fn is_disc(&self, z: f32) -> bool {
        self.spine.at(self.level(z)).disc
    }

    /// Paints the slice at `z` into `canvas` (HU, body regions and the label mask).
    pub fn paint(&self, canvas: &mut Canvas, z: f32, rng: &mut impl Rng) {
        let level = self.level(z);
        let v = self.spine.at(level);
        let contour = self.body.contour(level);
        self.table.paint(canvas);
        paint_body(canvas, &self.body, &contour, rng);
        if level < self.body.rib_end {
            paint_ribs(canvas, &contour);
        }
        self.viscera.paint(canvas, &self.body, &v, level, rng);
        vertebra::paint(canvas, &self.spine, &v, rng);
    }
}

impl Body {
    fn sample(rng: &mut impl Rng, spine: &Spine) -> Self {
        let habitus = rng.random::<f32>(); // 0 = slim, 1 = obese
        let rx = 135.0 + 48.0 * habitus + uniform(rng, -8.0, 8.0);
        let ry = rx * uniform(rng, 0.62, 0.78);
        let fat = 5.0 + 26.0 * habitus + uniform(rng, 0.0, 6.0);
        let fat_post = uniform(rng, 0.6, 1.0);
        let flat = uniform(rng, 0.9, 0.97);
        // Skin-to-vertebral-body-centre distance behind the spine: bone + paraspinals + fat.
        let back = uniform(rng, 66.0, 74.0) + fat * fat_post;
        let mut harmonics = [(0.0, 0.0); 5];
        for (k, h) in harmonics.iter_mut().enumerate() {
            *h = (
                uniform(rng, 0.0, 0.03) / (k as f32 + 1.0).sqrt(),
                uniform(rng, 0.0, TAU),
            );
        }
        let cloth = (0..rng.random_range(0..6))
            .map(|_| {
                let from = uniform(rng, 0.0, TAU);
                Cloth {
                    gap: uniform(rng, 2.0, 30.0),
                    from,
                    to: from + uniform(rng, 0.3, 1.5),
                    wave: uniform(rng, 1.0, 5.0),
                    phase: uniform(rng, 0.0, TAU),
                }
            })
            .collect();
        let markers = (0..rng.random_range(0..3))
            .map(|_| uniform(rng, -2.4, -0.7))
            .collect();
        Self {
            cx: spine.x + uniform(rng, -5.0, 5.0),
            cy: spine.y + back - ry * flat,
            rx,
            ry,
            exponent: uniform(rng, 2.0, 2.5),
            harmonics,
            flat,
            fat,
            fat_ant: uniform(rng, 1.0, 1.6),
            fat_post,
            fat_phase: uniform(rng, 0.0, TAU),
            wall: uniform(rng, 7.0, 11.0),
            fat_hu: uniform(rng, -110.0, -85.0),
            visceral_fat: 0.45 + 0.45 * habitus,
            size: ZCurve::new(rng, 1.0),
            cloth,
            markers,
            rib_end: uniform(rng, 0.4, 1.4),
        }
    }

    fn contour(&self, level: f32) -> Contour {
        let s = 1.0 + 0.015 * self.size.at(level);
        let (rx, ry) = (self.rx * s, self.ry * s);
        let mut c = Contour {
            cx: self.cx,
            cy: self.cy,
            radius: [0.0; ANGLES + 1],
            fat: [0.0; ANGLES + 1],
            wall: [0.0; ANGLES + 1],
            rmax: 0.0,
        };
        for i in 0..=ANGLES {
            let phi = i as f32 * TAU / ANGLES as f32;
            let (sin, cos) = phi.sin_cos();
            let mut r = superellipse_radius(rx, ry, self.exponent, cos, sin);
            r *= 1.0
                + self
                    .harmonics
                    .iter()
                    .enumerate()
                    .map(|(k, (a, p))| a * ((k + 2) as f32 * phi + p).cos())
                    .sum::<f32>();
            if sin > 0.0 {
                r = smooth_min(r, ry * self.flat / sin, 10.0);
            }
            let ap = if sin < 0.0 {
                self.fat_ant
            } else {
                self.fat_post
            };
            c.radius[i] = r;
            c.fat[i] = self.fat
                * (cos * cos + ap * sin * sin)
                * (1.0 + 0.15 * (3.0 * phi + self.fat_phase).cos());
            // Abdominal wall muscles in front and at the flanks, latissimus behind.
            c.wall[i] = self.wall * (cos * cos + if sin < 0.0 { 0.8 } else { 0.6 } * sin * sin);
            c.rmax = c.rmax.max(r);
        }
        c
    }
}

/// Polynomial smooth minimum: rounds the corner where the back flattens on the table.
fn smooth_min(a: f32, b: f32, k: f32) -> f32 {
    let h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0);
    // Blend as a weighted sum: `b` may be huge (near-horizontal rays) and must drop out exactly.
    a * h + b * (1.0 - h) - k * h * (1.0 - h)
}

fn superellipse_radius(rx: f32, ry: f32, p: f32, cos: f32, sin: f32) -> f32 {
    ((cos / rx).abs().powf(p) + (sin / ry).abs().powf(p)).powf(-1.0 / p)
}

impl Contour {
    /// (skin radius, fat depth, wall depth) in direction `phi` (radians, any range).
    fn at(&self, phi: f32) -> (f32, f32, f32) {
        let t = phi.rem_euclid(TAU) * (ANGLES as f32 / TAU);
        let i = (t as usize).min(ANGLES - 1);
        let f = t - i as f32;
        let lerp = |a: &[f32; ANGLES + 1]| a[i] + (a[i + 1] - a[i]) * f;
        (lerp(&self.radius), lerp(&self.fat), lerp(&self.wall))
    }

    /// World point at `depth` below the skin in direction `phi`.
    fn point(&self, phi: f32, depth: f32) -> (f32, f32) {
        let r = self.at(phi).0 - depth;
        (self.cx + r * phi.cos(), self.cy + r * phi.sin())
    }
}

/// Skin, subcutaneous fat, abdominal wall and the visceral background, plus clothing folds
/// and skin markers outside; records the layer of each pixel for clipping organs.
fn paint_body(canvas: &mut Canvas, body: &Body, c: &Contour, rng: &mut impl Rng) {
    let reach = c.rmax + 40.0;
    let visceral = ValueNoise::new(
        rng,
        c.cx - reach,
        c.cy - reach,
        2.0 * reach,
        2.0 * reach,
        12.0,
    );
    let view = canvas.view;
    view.for_pixels(Bounds::around(c.cx, c.cy, reach), |x, y, i| {
        let (dx, dy) = (x - c.cx, y - c.cy);
        let d = (dx * dx + dy * dy).sqrt();
        let phi = fast_atan2(dy, dx);
        let (r, fat, wall) = c.at(phi);
        let depth = r - d;
        if depth < 0.0 {
            if on_cloth(body, phi, depth) {
                canvas.hu[i] = CLOTH_HU;
            }
            if depth > -1.5 && on_marker(body, phi, r) {
                canvas.hu[i] = MARKER_HU;
            }
            return;
        }
        let (region, hu) = if depth < SKIN_PX {
            (REGION_SKIN, SKIN_HU)
        } else if depth < fat {
            (REGION_FAT, body.fat_hu)
        } else if depth < fat + wall {
            (REGION_WALL, MUSCLE_HU)
        } else {
            let f = (body.visceral_fat + 0.4 * visceral.at(x, y)).clamp(0.0, 1.0);
            (REGION_INTERIOR, 40.0 + (body.fat_hu - 40.0) * f)
        };
        canvas.region[i] = region;
        canvas.hu[i] = hu;
    });
}

fn angle_within(phi: f32, from: f32, to: f32) -> bool {
    (phi - from).rem_euclid(TAU) <= to - from
}

fn on_cloth(body: &Body, phi: f32, depth: f32) -> bool {
    body.cloth.iter().any(|c| {
        angle_within(phi, c.from, c.to)
            && (depth + c.gap + c.wave * (3.0 * phi + c.phase).sin()).abs() < 0.6
    })
}

fn on_marker(body: &Body, phi: f32, r: f32) -> bool {
    body.markers
        .iter()
        .any(|&m| ((phi - m + PI).rem_euclid(TAU) - PI).abs() * r < 2.0)
}

/// Lower rib tips in the posterolateral wall at upper lumbar levels.
fn paint_ribs(canvas: &mut Canvas, c: &Contour) {
    for phi in [
        FRAC_PI_2 - 1.05,
        FRAC_PI_2 - 1.35,
        FRAC_PI_2 + 1.05,
        FRAC_PI_2 + 1.35,
    ] {
        let (_, fat, _) = c.at(phi);
        let (x, y) = c.point(phi, fat + 4.0);
        let rib = Ellipse::new(x, y, 7.0, 3.2, phi + FRAC_PI_2);
        let view = canvas.view;
        view.for_pixels(rib.bounds(), |x, y, i| {
            if canvas.region[i] >= REGION_FAT && rib.norm2(x, y) < 1.0 {
                canvas.hu[i] = if rib.depth(x, y) < 1.2 { 900.0 } else { 250.0 };
            }
        });
    }
}

impl Table {
    fn sample(rng: &mut impl Rng, d: &Domain, body: &Body) -> Self {
        Self {
            cx: uniform(rng, -4.0, 4.0),
            top: body.cy + body.ry * body.flat + uniform(rng, 2.0, 7.0),
            radius: uniform(rng, 700.0, 900.0),
            half_w: uniform(rng, 195.0, 212.0),
            thick: uniform(rng, d.table_thickness.0, d.table_thickness.1),
            shell_hu: uniform(rng, 600.0, 900.0),
            foam_hu: d.table_foam_hu,
            pad_gap: uniform(rng, 0.0, 4.0),
        }
    }

    /// Curved tray (concave up) with a dense shell and foam core, and the mattress line.
    fn paint(&self, canvas: &mut Canvas) {
        let yc = self.top - self.radius;
        let mid = self.radius + self.thick / 2.0;
        let end_y = yc + (mid * mid - self.half_w * self.half_w).sqrt();
        let pad_r = self.radius - self.pad_gap - 2.0;
        let bounds = Bounds {
            x0: self.cx - self.half_w - self.thick,
            x1: self.cx + self.half_w + self.thick,
            y0: end_y - self.thick - 8.0,
            y1: self.top + self.thick + 2.0,
        };
        let view = canvas.view;
        view.for_pixels(bounds, |x, y, i| {
            let dx = x - self.cx;
            let d = (dx * dx + (y - yc) * (y - yc)).sqrt();
            let sdf = if dx.abs() <= self.half_w {
                (d - mid).abs() - self.thick / 2.0
            } else {
                let ex = dx.abs() - self.half_w;
                (ex * ex + (y - end_y) * (y - end_y)).sqrt() - self.thick / 2.0
            };
            if sdf < 0.0 {
                canvas.hu[i] = if sdf > -2.0 {
                    self.shell_hu
                } else {
                    self.foam_hu
                };
            } else if dx.abs() < self.half_w * 0.9 && (d - pad_r).abs() < 0.6 {
                canvas.hu[i] = -300.0;
            }
        });
    }
}
