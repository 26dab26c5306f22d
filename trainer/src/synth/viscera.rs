//! Abdominal contents: bowel (gas, fluid, stool), kidneys, liver tip, muscles and vessels.
//! Everything is clipped to the abdominal cavity and placed relative to the body or spine.

use std::f32::consts::{PI, TAU};

use rand::Rng;

use super::anatomy::{Body, MUSCLE_HU};
use super::raster::{Bounds, Canvas, Ellipse, REGION_INTERIOR, fast_atan2};
use super::texture::{ValueNoise, ZCurve, uniform};
use super::vertebra::{Spine, Vertebra};

const BOWEL_WALL_HU: f32 = 45.0;
const GAS_HU: f32 = -990.0;

pub(super) struct Viscera {
    kidneys: [Kidney; 2],
    colon: [Loop; 2],
    loops: Vec<Loop>,
    liver_end: f32,
    aorta_r: f32,
    aorta_dx: f32,
    calcification: Option<f32>,
    ivc_dx: f32,
    paraspinal: (f32, f32),
}

struct Kidney {
    side: f32,
    dx: f32,
    dy: f32,
    rx: f32,
    ry: f32,
    angle: f32,
    centre: f32,
    half_extent: f32,
}

#[derive(Clone, Copy)]
enum Content {
    Fluid(f32),
    Stool,
}

/// A bowel loop in world coordinates, drifting with level.
struct Loop {
    x: f32,
    y: f32,
    rx: f32,
    ry: f32,
    angle: f32,
    content: Content,
    /// Fraction of the loop height filled with gas (0 = none); gas rises anteriorly.
    gas: f32,
    drift: [ZCurve; 3],
}

impl Viscera {
    pub(super) fn sample(rng: &mut impl Rng, body: &Body, spine: &Spine) -> Self {
        let kidney = |rng: &mut _, side: f32, lower: f32| Kidney {
            side,
            dx: uniform(rng, 56.0, 70.0),
            dy: uniform(rng, 0.0, 12.0),
            rx: uniform(rng, 21.0, 26.0),
            ry: uniform(rng, 13.0, 17.0),
            angle: side * uniform(rng, -0.95, -0.6),
            centre: uniform(rng, 0.7, 1.3) + lower,
            half_extent: uniform(rng, 1.5, 2.0),
        };
        // The right kidney (image left) sits lower, under the liver.
        let kidneys = [kidney(rng, -1.0, 0.3), kidney(rng, 1.0, 0.0)];
        let inner_rx = body.rx - body.fat - body.wall;
        let colon = [-1.0f32, 1.0].map(|side| {
            let r = uniform(rng, 11.0, 17.0);
            let y = body.cy - body.ry * uniform(rng, 0.0, 0.2);
            Loop::sample(
                rng,
                body.cx + side * (inner_rx - r - 6.0),
                y,
                r,
                Content::Stool,
                0.75,
            )
        });
        let loops = (0..rng.random_range(8..16))
            .map(|_| {
                let x = body.cx + inner_rx * uniform(rng, -0.5, 0.5);
                // Keep small bowel in front of the aorta and the retroperitoneum.
                let y = (body.cy - body.ry * uniform(rng, 0.15, 0.65))
                    .min(spine.y - uniform(rng, 60.0, 80.0));
                let content = if rng.random_bool(0.25) {
                    Content::Stool
                } else {
                    Content::Fluid(uniform(rng, 20.0, 50.0))
                };
                let r = uniform(rng, 8.0, 16.0);
                Loop::sample(rng, x, y, r, content, 0.3)
            })
            .collect();
        Self {
            kidneys,
            colon,
            loops,
            liver_end: uniform(rng, 0.3, 1.4),
            aorta_r: uniform(rng, 8.5, 12.0),
            aorta_dx: uniform(rng, 4.0, 16.0),
            calcification: rng.random_bool(0.35).then(|| uniform(rng, 0.0, TAU)),
            ivc_dx: uniform(rng, 20.0, 28.0),
            paraspinal: (uniform(rng, 22.0, 28.0), uniform(rng, 19.0, 25.0)),
        }
    }

    pub(super) fn paint(
        &self,
        canvas: &mut Canvas,
        body: &Body,
        v: &Vertebra,
        level: f32,
        rng: &mut impl Rng,
    ) {
        let inner = Bounds::around(body.cx, body.cy, body.rx);
        let fine = ValueNoise::over(rng, &inner, 2.2);
        let coarse = ValueNoise::over(rng, &inner, 6.0);
        for l in self.colon.iter().chain(&self.loops) {
            l.paint(canvas, level, &fine, &coarse);
        }
        if level < self.liver_end {
            let s = (1.0 - level / self.liver_end).sqrt();
            let liver = Ellipse::new(
                body.cx - body.rx * 0.55,
                body.cy - body.ry * 0.05,
                body.rx * 0.36 * s,
                body.ry * 0.6 * s,
                0.3,
            );
            canvas.fill_interior(&liver, |_, _| 58.0);
        }
        for k in &self.kidneys {
            k.paint(canvas, v, level, body.fat_hu);
        }
        self.paint_muscles(canvas, v, level, body.fat_hu);
        self.paint_vessels(canvas, v, body.fat_hu);
    }

    /// Paraspinal, quadratus lumborum and psoas, each in a thin fat sheath.
    fn paint_muscles(&self, canvas: &mut Canvas, v: &Vertebra, level: f32, fat_hu: f32) {
        let (prx, pry) = self.paraspinal;
        let psoas = (5.0 + 3.6 * level, 8.0 + 2.4 * level);
        let ql_x = v.canal_rx + 1.5 + v.transverse_len + 6.0;
        for side in [-1.0f32, 1.0] {
            let (px, py) = v.world(side * (5.0 + prx), v.canal_w + v.canal_ry + 10.0);
            let (qx, qy) = v.world(side * ql_x, v.canal_w + 2.0);
            let (sx, sy) = v.world(side * (v.a + psoas.0 * 0.85), 2.0);
            for m in [
                Ellipse::new(px, py, prx, pry, 0.0),
                Ellipse::new(qx, qy, 12.0, 7.0, side * 0.5),
                Ellipse::new(sx, sy, psoas.0, psoas.1, side * 0.3),
            ] {
                // A fascial fat plane, thinner than a pixel: partial-volumed to half fat.
                canvas.fill_interior(&m.grown(1.2), |_, _| 0.5 * (fat_hu + MUSCLE_HU));
                canvas.fill_interior(&m, |_, _| MUSCLE_HU);
            }
        }
    }

    /// Aorta (anterior-left of the body, sometimes calcified), IVC, SMA and SMV.
    fn paint_vessels(&self, canvas: &mut Canvas, v: &Vertebra, fat_hu: f32) {
        let r = self.aorta_r;
        let (ax, ay) = (v.x + self.aorta_dx, v.y - v.b - r - 3.0);
        let aorta = Ellipse::circle(ax, ay, r);
        canvas.fill_interior(&aorta.grown(3.0), |_, _| fat_hu);
        let calc = self.calcification;
        canvas.fill_interior(&aorta, |x, y| match calc {
            Some(t)
                if aorta.depth(x, y) < 1.5
                    && ((fast_atan2(y - ay, x - ax) - t + PI).rem_euclid(TAU) - PI).abs() < 0.5 =>
            {
                700.0
            }
            _ => 42.0,
        });
        canvas.fill_interior(
            &Ellipse::new(v.x - self.ivc_dx, v.y - v.b - 5.0, 11.0, 6.5, 0.0),
            |_, _| 38.0,
        );
        let (smx, smy) = (ax - 3.0, ay - r - 14.0);
        canvas.fill_interior(&Ellipse::circle(smx, smy, 7.0), |_, _| fat_hu);
        canvas.fill_interior(&Ellipse::circle(smx, smy, 3.0), |_, _| 45.0);
        canvas.fill_interior(&Ellipse::circle(smx - 10.0, smy + 1.0, 4.5), |_, _| 40.0);
    }
}

impl Kidney {
    /// Perirenal fat, parenchyma and, away from the poles, the renal sinus fat and pelvis.
    fn paint(&self, canvas: &mut Canvas, v: &Vertebra, level: f32, fat_hu: f32) {
        let t = (level - self.centre) / self.half_extent;
        let s = 1.0 - t * t;
        if s < 0.08 {
            return;
        }
        // Lower poles drift laterally and forward.
        let x = v.x + self.side * (self.dx + 5.0 * t);
        let y = v.y + self.dy - 4.0 * t;
        let k = Ellipse::new(
            x,
            y,
            self.rx * s.powf(0.3),
            self.ry * s.powf(0.45),
            self.angle,
        );
        canvas.fill_interior(&k.grown(5.0), |_, _| fat_hu);
        canvas.fill_interior(&k, |_, _| 32.0);
        if s > 0.55 {
            // The hilum opens anteromedially: sinus fat breaks through the medial border.
            let (hx, hy) = (-self.side * 0.6, -0.8);
            let off = k.ry * 0.8;
            let sinus = Ellipse::new(
                x + hx * off,
                y + hy * off,
                k.rx * 0.32,
                k.ry * 0.38,
                self.angle,
            );
            canvas.fill_interior(&sinus, |_, _| fat_hu + 30.0);
            let pelvis = Ellipse::new(
                x + hx * off * 0.9,
                y + hy * off * 0.9,
                sinus.rx * 0.45,
                sinus.ry * 0.5,
                self.angle,
            );
            canvas.fill_interior(&pelvis, |_, _| 8.0);
        }
    }
}

impl Loop {
    fn sample(rng: &mut impl Rng, x: f32, y: f32, r: f32, content: Content, gas_p: f64) -> Self {
        let gas = if rng.random_bool(gas_p) {
            uniform(rng, 0.15, 0.5)
        } else {
            0.0
        };
        Self {
            x,
            y,
            rx: r,
            ry: r * uniform(rng, 0.6, 1.0),
            angle: uniform(rng, 0.0, PI),
            content,
            gas,
            drift: [(); 3].map(|_| ZCurve::new(rng, 0.5)),
        }
    }

    fn paint(&self, canvas: &mut Canvas, level: f32, fine: &ValueNoise, coarse: &ValueNoise) {
        let size = 1.0 + 0.25 * self.drift[2].at(level);
        let angle = self.angle + 0.4 * self.drift[2].at(level + 3.0);
        let e = Ellipse::new(
            self.x + 10.0 * self.drift[0].at(level),
            self.y + 8.0 * self.drift[1].at(level),
            self.rx * size,
            self.ry * size,
            angle,
        );
        // Air-fluid level: roughly horizontal, gas above (anterior).
        let half_h = ((e.rx * angle.sin()).powi(2) + (e.ry * angle.cos()).powi(2)).sqrt();
        let gas_line = e.cy - half_h + 2.0 * half_h * self.gas;
        let r_min = e.rx.min(e.ry);
        let view = canvas.view;
        view.for_pixels(e.grown(0.3 * r_min).bounds(), |x, y, i| {
            if canvas.region[i] != REGION_INTERIOR {
                return;
            }
            // Haustra and peristalsis make loops lumpy rather than elliptical.
            let edge = 1.0 + 0.22 * coarse.at(x + 37.0, y - 11.0);
            let depth = (edge - e.norm2(x, y).sqrt()) * r_min;
            if depth < 0.0 {
                return;
            }
            canvas.hu[i] = if depth < 1.4 {
                BOWEL_WALL_HU
            } else if y < gas_line + 3.0 * coarse.at(x - 53.0, y + 29.0) {
                GAS_HU
            } else {
                match self.content {
                    Content::Fluid(hu) => hu,
                    Content::Stool => stool_hu(fine.at(x, y), coarse.at(x, y)),
                }
            };
        });
    }
}

/// Faeces: mottled soft tissue with small gas bubbles.
fn stool_hu(fine: f32, coarse: f32) -> f32 {
    if fine < -0.5 {
        GAS_HU
    } else {
        -40.0 + 70.0 * coarse + 40.0 * fine
    }
}
