//! The lumbar vertebra: bean-shaped body (cortical shell around trabecular bone = the label),
//! spinal canal and posterior elements, or an intervertebral disc between two bodies.
//!
//! Local frame: origin at the body centre, u to the image right, w posterior, turned by the
//! patient's vertebral rotation. Lengths are world (hospital-A) pixels.

use std::f32::consts::PI;

use rand::Rng;

use super::raster::{Bounds, Canvas, Capsule, Ellipse};
use super::texture::{ValueNoise, ZCurve, uniform};

/// Half-width of the disc band in vertebral levels: ~10% of slices land on a disc.
const DISC_HALF: f32 = 0.05;
/// Levels over which the endplate's dense bone fades out beside a disc.
const ENDPLATE_FADE: f32 = 0.06;

/// A patient's spine, sampled once.
pub struct Spine {
    pub x: f32,
    pub y: f32,
    angle: f32,
    half_w: f32,
    half_d: f32,
    exponent: f32,
    concavity: f32,
    shell: f32,
    shell_hu: f32,
    cortical_hu: f32,
    cancellous_hu: f32,
    trabecular: f32,
    basivertebral: bool,
    osteophytes: bool,
    canal_rx: f32,
    canal_ry: f32,
    pedicle_r: f32,
    lamina_r: f32,
    spinous_len: f32,
    spinous_tilt: f32,
    transverse_len: f32,
    drift: [ZCurve; 4],
}

/// The spine at one slice.
pub struct Vertebra {
    pub x: f32,
    pub y: f32,
    angle: f32,
    cos: f32,
    sin: f32,
    /// Half-width and half-depth of the body.
    pub a: f32,
    pub b: f32,
    conc: f32,
    /// Canal centre (local w) and radii.
    pub canal_w: f32,
    pub canal_rx: f32,
    pub canal_ry: f32,
    pub transverse_len: f32,
    pub disc: bool,
    endplate: f32,
    pedicles: bool,
}

impl Spine {
    pub fn sample(rng: &mut impl Rng) -> Self {
        let half_w = uniform(rng, 18.5, 22.0);
        Self {
            x: uniform(rng, -10.0, 10.0),
            y: uniform(rng, 14.0, 38.0),
            angle: uniform(rng, -10.0, 10.0).to_radians(),
            half_w,
            half_d: half_w * uniform(rng, 0.8, 0.92),
            exponent: uniform(rng, 2.0, 2.6),
            concavity: uniform(rng, 2.0, 5.0),
            // The body's shell is thin: partial volume keeps it well below compact bone.
            shell: uniform(rng, 1.3, 2.3),
            shell_hu: uniform(rng, 1000.0, 1400.0),
            cortical_hu: uniform(rng, 950.0, 1250.0),
            cancellous_hu: uniform(rng, 150.0, 300.0),
            trabecular: uniform(rng, 80.0, 140.0),
            basivertebral: rng.random_bool(0.6),
            osteophytes: rng.random_bool(0.3),
            canal_rx: uniform(rng, 8.0, 10.0),
            canal_ry: uniform(rng, 6.5, 8.0),
            pedicle_r: uniform(rng, 4.3, 5.3),
            lamina_r: uniform(rng, 3.4, 4.3),
            spinous_len: uniform(rng, 15.0, 22.0),
            spinous_tilt: uniform(rng, -3.0, 3.0),
            transverse_len: uniform(rng, 14.0, 22.0),
            drift: [(); 4].map(|_| ZCurve::new(rng, 0.7)),
        }
    }

    /// Geometry at vertebral `level` (integer = disc centre; L1 body spans 0..1).
    pub fn at(&self, level: f32) -> Vertebra {
        let frac = level.rem_euclid(1.0);
        let from_disc = frac.min(1.0 - frac);
        let disc = from_disc < DISC_HALF;
        let endplate = if disc {
            0.0
        } else {
            (1.0 - (from_disc - DISC_HALF) / ENDPLATE_FADE).clamp(0.0, 1.0)
        };
        // Lower levels are bigger; bodies flare towards the endplates (waist in the middle).
        let size = (1.0 + 0.035 * (level - 2.0))
            * (1.0 + 0.05 * (2.0 * PI * frac).cos())
            * (1.0 + 0.025 * self.drift[3].at(level));
        let angle = self.angle + 0.035 * self.drift[2].at(level);
        let (a, b) = (self.half_w * size, self.half_d * size);
        // Lordosis brings the mid-lumbar spine forward.
        let y = self.y + 4.0 * self.drift[1].at(level) - 5.0 * (PI * level / 4.5).sin();
        Vertebra {
            x: self.x + 2.5 * self.drift[0].at(level),
            y,
            angle,
            cos: angle.cos(),
            sin: angle.sin(),
            a,
            b,
            conc: self.concavity * size,
            canal_w: b - self.concavity * size + self.canal_ry * 0.95,
            canal_rx: self.canal_rx,
            canal_ry: self.canal_ry,
            transverse_len: self.transverse_len * (1.0 - 0.12 * (level - 2.5).abs()),
            disc,
            endplate,
            pedicles: (0.15..0.65).contains(&frac),
        }
    }
}

impl Vertebra {
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.x, y - self.y);
        (
            dx * self.cos + dy * self.sin,
            -dx * self.sin + dy * self.cos,
        )
    }

    pub fn world(&self, u: f32, w: f32) -> (f32, f32) {
        (
            self.x + u * self.cos - w * self.sin,
            self.y + u * self.sin + w * self.cos,
        )
    }

    fn capsule_bounds(&self, caps: &[Capsule]) -> Bounds {
        caps.iter()
            .map(|c| {
                let r = c.ra.max(c.rb);
                let (ax, ay) = self.world(c.a.0, c.a.1);
                let (bx, by) = self.world(c.b.0, c.b.1);
                Bounds::around(ax, ay, r).union(Bounds::around(bx, by, r))
            })
            .reduce(Bounds::union)
            .unwrap_or(Bounds::around(self.x, self.y, 1.0))
    }
}

/// Mirror pair of a capsule about the sagittal plane (u -> -u).
fn mirrored(c: Capsule) -> [Capsule; 2] {
    let m = Capsule {
        a: (-c.a.0, c.a.1),
        b: (-c.b.0, c.b.1),
        ..c
    };
    [c, m]
}

/// Draws the vertebra at one slice; sets the mask on its cancellous bone.
pub fn paint(canvas: &mut Canvas, sp: &Spine, v: &Vertebra, rng: &mut impl Rng) {
    paint_posterior(canvas, sp, v);
    paint_canal(canvas, v);
    if v.disc {
        paint_disc(canvas, sp, v, rng);
    } else {
        paint_body(canvas, sp, v, rng);
    }
}

/// Pedicles, laminae, spinous and transverse processes, facet joints: one union of capsules,
/// compact bone with a slightly less dense core, at least as bright as the body's thin shell.
fn paint_posterior(canvas: &mut Canvas, sp: &Spine, v: &Vertebra) {
    let (cw, cry) = (v.canal_w, v.canal_ry);
    let side = v.canal_rx + 1.5;
    let lamina_end = (0.0, cw + cry + 2.5);
    let mut caps = Vec::with_capacity(9);
    caps.extend(mirrored(Capsule {
        a: (side, cw + 0.1 * cry),
        b: lamina_end,
        ra: sp.lamina_r,
        rb: sp.lamina_r * 0.9,
    }));
    caps.push(Capsule {
        a: lamina_end,
        b: (sp.spinous_tilt, lamina_end.1 + sp.spinous_len),
        ra: 4.6,
        rb: 3.4,
    });
    if v.pedicles {
        caps.extend(mirrored(Capsule {
            a: (v.a * 0.55, v.b * 0.45),
            b: (side, cw - 0.1 * cry),
            ra: sp.pedicle_r,
            rb: sp.pedicle_r,
        }));
        let tw = cw - 0.15 * cry;
        caps.extend(mirrored(Capsule {
            a: (side, tw),
            b: (side + v.transverse_len, tw - 4.0),
            ra: 3.8,
            rb: 2.6,
        }));
    }
    // Articular processes; the joint space runs along their axis.
    let facets = mirrored(Capsule {
        a: (side + 2.5, cw + 0.05 * cry),
        b: (side + 4.5, cw + 1.0 * cry),
        ra: 5.2,
        rb: 5.2,
    });
    caps.extend(facets);

    let bounds = v.capsule_bounds(&caps);
    // Posterior elements are mostly compact bone: a dense core, not a hollow outline.
    let core = sp.cortical_hu * 0.85;
    let view = canvas.view;
    view.for_pixels(bounds, |x, y, i| {
        let (u, w) = v.local(x, y);
        let d = caps
            .iter()
            .map(|c| c.sdf(u, w))
            .fold(f32::INFINITY, f32::min);
        if d >= 0.0 {
            return;
        }
        let joint = facets
            .iter()
            .any(|f| (f.sdf(u, w) + f.ra).abs() < 0.45 && f.sdf(u, w) < -0.8);
        canvas.hu[i] = if joint {
            30.0
        } else if d > -1.3 {
            sp.cortical_hu
        } else {
            core
        };
    });
}

/// Epidural fat around the thecal sac (CSF): darker than muscle in the bone window.
fn paint_canal(canvas: &mut Canvas, v: &Vertebra) {
    let (cx, cy) = v.world(0.0, v.canal_w);
    let canal = Ellipse::new(cx, cy, v.canal_rx, v.canal_ry, v.angle);
    let (sx, sy) = v.world(0.0, v.canal_w - 0.4);
    let sac = Ellipse::new(sx, sy, v.canal_rx * 0.72, v.canal_ry * 0.75, v.angle);
    let view = canvas.view;
    view.for_pixels(canal.bounds(), |x, y, i| {
        if canal.norm2(x, y) < 1.0 {
            canvas.hu[i] = if sac.norm2(x, y) < 1.0 { 12.0 } else { -60.0 };
        }
    });
}

/// Bean: superellipse with the posterior border bitten by a circle (the concavity facing the
/// canal). `inset` shrinks it uniformly, which is how the cancellous core sits in the shell.
struct Bean {
    a: f32,
    b: f32,
    p: f32,
    bite_w: f32,
    bite_r: f32,
}

impl Bean {
    fn new(a: f32, b: f32, p: f32, conc: f32) -> Self {
        let bite_r = a * 0.8;
        Self {
            a,
            b,
            p,
            bite_w: b + bite_r - conc,
            bite_r,
        }
    }

    fn inset(&self, t: f32) -> Self {
        Self {
            a: self.a - t,
            b: self.b - t,
            bite_r: self.bite_r + t,
            ..*self
        }
    }

    fn contains(&self, u: f32, w: f32) -> bool {
        let dw = w - self.bite_w;
        (u / self.a).abs().powf(self.p) + (w / self.b).abs().powf(self.p) < 1.0
            && u * u + dw * dw > self.bite_r * self.bite_r
    }
}

fn paint_body(canvas: &mut Canvas, sp: &Spine, v: &Vertebra, rng: &mut impl Rng) {
    if sp.osteophytes && v.endplate > 0.3 {
        paint_osteophytes(canvas, sp, v);
    }
    let outer = Bean::new(v.a, v.b, sp.exponent, v.conc);
    // Near an endplate the cortex is thicker and the trabeculae denser.
    let inner = outer.inset(sp.shell + v.endplate);
    let bounds = Bounds::around(v.x, v.y, v.a.max(v.b) + 2.0);
    let fine = ValueNoise::over(rng, &bounds, 1.3);
    let coarse = ValueNoise::over(rng, &bounds, 5.0);
    let vein = sp.basivertebral.then_some((v.b - v.conc - 5.0, 3.5, 2.5));
    let base = sp.cancellous_hu + 150.0 * v.endplate;
    let view = canvas.view;
    view.for_pixels(bounds, |x, y, i| {
        let (u, w) = v.local(x, y);
        if !outer.contains(u, w) {
            return;
        }
        if !inner.contains(u, w) {
            canvas.hu[i] = sp.shell_hu;
            return;
        }
        let mut hu = base + sp.trabecular * (0.65 * fine.at(x, y) + 0.35 * coarse.at(x, y));
        // Basivertebral vein: a small venous channel at the back of the body.
        if let Some((vw, rx, ry)) = vein
            && (u / rx).powi(2) + ((w - vw) / ry).powi(2) < 1.0
        {
            hu = 70.0;
        }
        canvas.hu[i] = hu;
        canvas.mask[i] = 1;
    });
}

/// Marginal spurs at the anterolateral endplate rims of older spines (bone, not label).
fn paint_osteophytes(canvas: &mut Canvas, sp: &Spine, v: &Vertebra) {
    let caps = mirrored(Capsule {
        a: (v.a * 0.75, -v.b * 0.7),
        b: (v.a + 1.5, -v.b * 0.6 - 1.5),
        ra: 2.6,
        rb: 1.6,
    });
    let bounds = v.capsule_bounds(&caps);
    let view = canvas.view;
    view.for_pixels(bounds, |x, y, i| {
        let (u, w) = v.local(x, y);
        if caps.iter().any(|c| c.sdf(u, w) < 0.0) {
            canvas.hu[i] = sp.shell_hu;
        }
    });
}

/// Disc: annulus fibrosus a little denser than the nucleus; soft tissue, no shell, no label.
fn paint_disc(canvas: &mut Canvas, sp: &Spine, v: &Vertebra, rng: &mut impl Rng) {
    let outer = Bean::new(v.a * 1.04, v.b * 1.03, sp.exponent, v.conc * 0.6);
    let nucleus = Bean::new(v.a * 0.7, v.b * 0.65, 2.0, 0.0);
    let bounds = Bounds::around(v.x, v.y, v.a.max(v.b) * 1.05 + 2.0);
    let grain = ValueNoise::over(rng, &bounds, 3.0);
    let view = canvas.view;
    view.for_pixels(bounds, |x, y, i| {
        let (u, w) = v.local(x, y);
        if outer.contains(u, w) {
            let hu = if nucleus.contains(u, w + v.b * 0.1) {
                60.0
            } else {
                95.0
            };
            canvas.hu[i] = hu + 12.0 * grain.at(x, y);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn disc_band_is_about_ten_percent() {
        let sp = Spine::sample(&mut ChaCha8Rng::seed_from_u64(3));
        let n = 10_000;
        let discs = (0..n)
            .filter(|i| sp.at(*i as f32 * 4.0 / n as f32).disc)
            .count();
        assert!((900..=1100).contains(&discs), "{discs} disc samples of {n}");
    }

    #[test]
    fn inset_bean_lies_inside() {
        let outer = Bean::new(20.0, 17.0, 2.3, 3.0);
        let inner = outer.inset(2.0);
        for i in 0..60 {
            for j in 0..60 {
                let (u, w) = (i as f32 - 30.0, j as f32 - 30.0);
                assert!(!inner.contains(u, w) || outer.contains(u, w));
            }
        }
    }
}
