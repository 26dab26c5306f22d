//! The room and the lens's light fall-off: uneven illumination across the frame, a glare
//! spot (a lamp or window reflected by the glossy screen and bezel), vignetting, the white
//! balance (colour cast) and the exposure error. All in linear light, in photo coordinates.

use rand::Rng;

use super::{PhoneCapture, Planes};

#[derive(Debug, Clone)]
struct Glare {
    /// Centre as fractions of the photo's width and height.
    cx: f32,
    cy: f32,
    /// Radii along its two axes (pixels) and the axes' angle: lamps reflect as ovals.
    rx: f32,
    ry: f32,
    angle: f32,
    strength: f32,
}

#[derive(Debug, Clone)]
pub(crate) struct Lighting {
    /// Relative brightness change from the centre to an edge, and its direction.
    gradient: f32,
    gradient_dir: f32,
    glare: Option<Glare>,
    vignetting: f32,
    /// White balance gains (R, G, B) times the exposure.
    gains: [f32; 3],
    /// Colour of the room light reflected by the screen (the cast shows most in the blacks).
    ambient_tint: [f32; 3],
}

impl Lighting {
    pub fn sample(cfg: &PhoneCapture, s: f32, width: u32, height: u32, rng: &mut impl Rng) -> Self {
        let side = width.max(height) as f32;
        let gradient = s * cfg.illumination_gradient.sample(rng);
        let gradient_dir = rng.random::<f32>() * std::f32::consts::TAU;
        let has_glare = rng.random::<f32>() < cfg.glare_probability;
        let glare = Glare {
            cx: 0.15 + 0.7 * rng.random::<f32>(),
            cy: 0.1 + 0.6 * rng.random::<f32>(),
            rx: cfg.glare_radius.sample(rng) * side,
            ry: cfg.glare_radius.sample(rng) * side * 0.7,
            angle: rng.random::<f32>() * std::f32::consts::PI,
            strength: s * cfg.glare_strength.sample(rng),
        };
        let glare = (has_glare && glare.strength > 0.0 && glare.rx > 0.0).then_some(glare);
        let vignetting = (s * cfg.vignetting.sample(rng)).clamp(0.0, 0.95);
        let blue = s * cfg.cast_blue.sample(rng);
        let tint = s * cfg.cast_tint.signed(rng);
        let exposure = (s * cfg.exposure_stops.signed(rng)).exp2();
        let wb = [1.0 - 0.5 * blue, 1.0 + tint, 1.0 + 0.5 * blue];
        Self {
            gradient,
            gradient_dir,
            glare,
            vignetting,
            gains: wb.map(|g| (g * exposure).max(0.0)),
            ambient_tint: [1.0 - 2.0 * blue, 1.0 + tint, 1.0 + blue].map(|g: f32| g.max(0.0)),
        }
    }

    /// Colour of reflected room light, by which the monitor's ambient term is multiplied.
    pub fn ambient_tint(&self) -> [f32; 3] {
        self.ambient_tint
    }

    pub fn apply(&self, planes: &mut Planes) {
        let (w, h) = (planes.width, planes.height);
        let (gx, gy) = (self.gradient_dir.cos(), self.gradient_dir.sin());
        let half_diag2 = ((w * w + h * h) as f32 / 4.0).max(1.0);
        let glare = self.glare.as_ref().map(|g| {
            let (s, c) = g.angle.sin_cos();
            (g.cx * w as f32, g.cy * h as f32, s, c, g)
        });
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                let (fx, fy) = (
                    (x as f32 + 0.5) / w as f32 - 0.5,
                    (y as f32 + 0.5) / h as f32 - 0.5,
                );
                let illum = (1.0 + 2.0 * self.gradient * (fx * gx + fy * gy)).max(0.0);
                let (dx, dy) = (
                    x as f32 + 0.5 - w as f32 / 2.0,
                    y as f32 + 0.5 - h as f32 / 2.0,
                );
                let vignette = 1.0 - self.vignetting * (dx * dx + dy * dy) / half_diag2;
                let spot = match glare {
                    Some((cx, cy, s, c, g)) => {
                        let (ex, ey) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                        let (a, b) = ((c * ex + s * ey) / g.rx, (-s * ex + c * ey) / g.ry);
                        planes.glossy[i] * g.strength * (-0.5 * (a * a + b * b)).exp()
                    }
                    None => 0.0,
                };
                for c in 0..3 {
                    // The glare is a near-white lamp: it is not tinted by the room's cast.
                    let v = planes.rgb[c][i] * illum * self.gains[c] + spot;
                    planes.rgb[c][i] = v * vignette;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn flat(w: usize, h: usize, v: f32) -> Planes {
        Planes {
            width: w,
            height: h,
            rgb: [vec![v; w * h], vec![v; w * h], vec![v; w * h]],
            glossy: vec![1.0; w * h],
        }
    }

    #[test]
    fn severity_zero_changes_nothing() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let l = Lighting::sample(&PhoneCapture::default(), 0.0, 32, 32, &mut rng);
        let mut p = flat(32, 32, 0.4);
        l.apply(&mut p);
        assert!(p.rgb.iter().flatten().all(|&v| (v - 0.4).abs() < 1e-6));
        assert_eq!(l.ambient_tint(), [1.0; 3]);
    }

    #[test]
    fn default_darkens_corners_adds_glare_and_casts_blue() {
        let cfg = PhoneCapture {
            glare_probability: 1.0,
            cast_blue: super::super::Span::new(0.1, 0.1),
            exposure_stops: super::super::Span::new(0.0, 0.0),
            illumination_gradient: super::super::Span::new(0.0, 0.0),
            ..PhoneCapture::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let l = Lighting::sample(&cfg, 1.0, 64, 64, &mut rng);
        let mut p = flat(64, 64, 0.3);
        l.apply(&mut p);
        let at = |c: usize, x: usize, y: usize| p.rgb[c][y * 64 + x];
        assert!(
            at(1, 0, 0) < 0.3 && at(1, 63, 63) < 0.3,
            "corners not darkened"
        );
        let peak = p.rgb[1].iter().cloned().fold(0.0, f32::max);
        assert!(peak > 0.4, "no glare spot: peak {peak}");
        assert!(at(2, 32, 32) > at(0, 32, 32), "no blue cast");
    }
}
