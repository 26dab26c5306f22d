//! The camera's geometry and the scene around the image. A pinhole camera at a fixed distance
//! from the screen, tilted about both screen axes, rolled in its own plane, zoomed and aimed
//! off centre: a homography from image pixels to photo pixels. Around the image: the
//! screen's black margin, the bezel, the desk or wall behind.
//!
//! The photo is rendered by mapping each photo pixel back into the image plane (2x2 samples
//! per pixel, so the sub-pixel grid aliases into moire as on a real sensor); the mask by the
//! same map at the pixel centre, nearest neighbour, so labels are exact.

use image::{GrayImage, RgbImage};
use rand::Rng;

use super::monitor::{CAMERA_GAMMA, Monitor};
use super::{PhoneCapture, Planes};

/// Camera distance from the screen in image sides: about a phone held to fill its frame with
/// the image. Closer means stronger keystone for the same tilt.
const DISTANCE_SIDES: f64 = 1.6;

/// Sample offsets inside a photo pixel.
const SUBSAMPLES: [(f64, f64); 4] = [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)];

/// A plane projective map: `(x, y) -> (m00 x + m01 y + m02, m10 x + ...) / (m20 x + ...)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Homography {
    pub m: [[f64; 3]; 3],
}

impl Homography {
    pub const IDENTITY: Self = Self {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };

    /// The mapped point; `None` where the point maps to infinity or behind the camera.
    pub fn apply(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let m = &self.m;
        let w = m[2][0] * x + m[2][1] * y + m[2][2];
        if w <= 1e-12 {
            return None;
        }
        Some((
            (m[0][0] * x + m[0][1] * y + m[0][2]) / w,
            (m[1][0] * x + m[1][1] * y + m[1][2]) / w,
        ))
    }

    pub fn compose(&self, then: &Self) -> Self {
        let (a, b) = (&then.m, &self.m);
        let mut m = [[0.0; 3]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
            }
        }
        Self { m }
    }

    /// The inverse, scaled so that `m[2][2]` is 1 (keeps `w` positive in front of the
    /// camera); `None` when singular.
    pub fn inverse(&self) -> Option<Self> {
        let m = &self.m;
        let c = |i: usize, j: usize| {
            let (i1, i2) = ((i + 1) % 3, (i + 2) % 3);
            let (j1, j2) = ((j + 1) % 3, (j + 2) % 3);
            m[i1][j1] * m[i2][j2] - m[i1][j2] * m[i2][j1]
        };
        let det = m[0][0] * c(0, 0) + m[0][1] * c(0, 1) + m[0][2] * c(0, 2);
        if det.abs() < 1e-18 {
            return None;
        }
        // inverse[i][j] = cofactor(j, i) / det
        let mut inv = [[0.0; 3]; 3];
        for (i, row) in inv.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = c(j, i) / det;
            }
        }
        let s = inv[2][2];
        if s.abs() < 1e-18 {
            return None;
        }
        for row in &mut inv {
            for v in row {
                *v /= s;
            }
        }
        Some(Self { m: inv })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Camera {
    pub photo_to_image: Homography,
    width: u32,
    height: u32,
    /// The screen's visible area in image pixels: `[left, right) x [top, bottom)`. Wider
    /// than the image (black margin) or narrower (the viewer panned the image past the
    /// bezel, which hides that part: it is class 0 in the mask).
    screen: [f64; 4],
    bezel: f64,
    /// Linear light of the bezel and the background (lit by the room).
    bezel_light: f32,
    background: [f32; 3],
}

impl Camera {
    pub fn sample(cfg: &PhoneCapture, s: f32, width: u32, height: u32, rng: &mut impl Rng) -> Self {
        let (w, h) = (f64::from(width), f64::from(height));
        let side = w.max(h);
        let tilt = f64::from(s * cfg.tilt_deg.sample(rng)).to_radians();
        let tilt_dir = rng.random::<f64>() * std::f64::consts::TAU;
        let roll = f64::from(s * cfg.roll_deg.signed(rng)).to_radians();
        let zoom = f64::from(1.0 + s * cfg.zoom.sample(rng)).max(0.2);
        let shift = f64::from(s * cfg.shift.sample(rng)) * side;
        let shift_dir = rng.random::<f64>() * std::f64::consts::TAU;
        // Scaled by severity up to 1 only: a harsher shot does not hide more of the image.
        let mut margin = || f64::from(s.min(1.0) * cfg.screen_margin.sample(rng)) * side;
        let screen = [-margin(), w + margin(), -margin(), h + margin()];
        let bezel = f64::from(cfg.bezel_width.sample(rng)) * side;
        let bezel_light = linear(cfg.bezel_level.sample(rng));
        let bg = cfg.background_level.sample(rng);
        let warm = 0.06 * (2.0 * rng.random::<f32>() - 1.0);
        let background = [
            linear(bg * (1.0 + warm)),
            linear(bg),
            linear(bg * (1.0 - warm)),
        ];

        let forward = project(
            w,
            h,
            tilt * tilt_dir.cos(),
            tilt * tilt_dir.sin(),
            roll,
            zoom,
            (
                w / 2.0 + shift * shift_dir.cos(),
                h / 2.0 + shift * shift_dir.sin(),
            ),
        );
        // A camera at most 60 degrees off the screen's normal sees the whole plane in front
        // of it, so the forward map is invertible; the identity is the safe fallback.
        let photo_to_image = forward.inverse().unwrap_or(Homography::IDENTITY);
        Self {
            photo_to_image,
            width,
            height,
            screen,
            bezel,
            bezel_light,
            background,
        }
    }

    /// What the camera sees, in linear light, before lighting and the sensor.
    pub fn render(&self, image: &RgbImage, monitor: &Monitor) -> Planes {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut rgb = [
            vec![0.0f32; w * h],
            vec![0.0f32; w * h],
            vec![0.0f32; w * h],
        ];
        let mut glossy = vec![0.0f32; w * h];
        let n = SUBSAMPLES.len() as f32;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0.0f32; 3];
                let mut gloss = 0.0f32;
                for (ox, oy) in SUBSAMPLES {
                    let (light, on_glass) =
                        self.sample_point(image, monitor, x as f64 + ox, y as f64 + oy);
                    for c in 0..3 {
                        acc[c] += light[c];
                    }
                    gloss += f32::from(u8::from(on_glass));
                }
                let i = y * w + x;
                for c in 0..3 {
                    rgb[c][i] = acc[c] / n;
                }
                glossy[i] = gloss / n;
            }
        }
        Planes {
            width: w,
            height: h,
            rgb,
            glossy,
        }
    }

    /// Light at photo point `(px, py)` and whether it lies on the glossy screen or bezel.
    fn sample_point(
        &self,
        image: &RgbImage,
        monitor: &Monitor,
        px: f64,
        py: f64,
    ) -> ([f32; 3], bool) {
        let Some((u, v)) = self.photo_to_image.apply(px, py) else {
            return (self.background, false);
        };
        let amb = monitor.ambient;
        let [l, r, t, b] = self.screen;
        if self.shows_image(u, v) {
            let e = monitor.emit(image, u, v);
            ([e[0] + amb[0], e[1] + amb[1], e[2] + amb[2]], true)
        } else if (l..r).contains(&u) && (t..b).contains(&v) {
            (amb, true)
        } else if (l - self.bezel..r + self.bezel).contains(&u)
            && (t - self.bezel..b + self.bezel).contains(&v)
        {
            ([self.bezel_light; 3], true)
        } else {
            (self.background, false)
        }
    }

    /// Is image point `(u, v)` on the image and on the visible screen?
    fn shows_image(&self, u: f64, v: f64) -> bool {
        let [l, r, t, b] = self.screen;
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        (0.0f64.max(l)..w.min(r)).contains(&u) && (0.0f64.max(t)..h.min(b)).contains(&v)
    }

    /// The mask as the photo sees it: the class of the image pixel under each photo pixel's
    /// centre, 0 where no image is shown (off the image, behind the bezel).
    pub fn warp_mask(&self, mask: &GrayImage) -> GrayImage {
        let (w, h) = (self.width, self.height);
        GrayImage::from_fn(w, h, |x, y| {
            let label = self
                .photo_to_image
                .apply(f64::from(x) + 0.5, f64::from(y) + 0.5)
                .and_then(|(u, v)| {
                    let (i, j) = (u.floor(), v.floor());
                    (self.shows_image(u, v) && i < f64::from(w) && j < f64::from(h))
                        .then(|| mask.get_pixel(i as u32, j as u32)[0])
                });
            image::Luma([label.unwrap_or(0)])
        })
    }
}

/// Image pixels -> photo pixels for a camera `DISTANCE_SIDES` sides from the screen, looking
/// at `aim` (image pixels), rotated by `pitch` (about the image's x axis), `yaw` (y axis) and
/// `roll` (the optical axis), with magnification `zoom` at the aim point. With no rotation,
/// zoom 1 and the aim at the centre, it is the identity.
fn project(
    w: f64,
    h: f64,
    pitch: f64,
    yaw: f64,
    roll: f64,
    zoom: f64,
    aim: (f64, f64),
) -> Homography {
    let d = DISTANCE_SIDES * w.max(h);
    let f = zoom * d;
    let r = matmul(rot_z(roll), matmul(rot_x(pitch), rot_y(yaw)));
    // Columns: the image's x and y axes in camera space, then the aim point's position.
    let (r1, r2) = ([r[0][0], r[1][0], r[2][0]], [r[0][1], r[1][1], r[2][1]]);
    let t = [
        -r1[0] * aim.0 - r2[0] * aim.1,
        -r1[1] * aim.0 - r2[1] * aim.1,
        d - r1[2] * aim.0 - r2[2] * aim.1,
    ];
    let plane = Homography {
        m: [
            [r1[0], r2[0], t[0]],
            [r1[1], r2[1], t[1]],
            [r1[2], r2[2], t[2]],
        ],
    };
    let k = Homography {
        m: [[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]],
    };
    plane.compose(&k)
}

type Mat3 = [[f64; 3]; 3];

fn matmul(a: Mat3, b: Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn rot_x(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

fn rot_y(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

fn rot_z(a: f64) -> Mat3 {
    let (s, c) = a.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

/// Display value (0..1) to linear light.
fn linear(v: f32) -> f32 {
    v.clamp(0.0, 1.0).powf(CAMERA_GAMMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn straight_camera_is_the_identity() {
        let hm = project(64.0, 48.0, 0.0, 0.0, 0.0, 1.0, (32.0, 24.0));
        let inv = hm.inverse().unwrap();
        for (x, y) in [(0.5, 0.5), (63.5, 47.5), (10.25, 30.75)] {
            let (u, v) = inv.apply(x, y).unwrap();
            assert!(
                (u - x).abs() < 1e-9 && (v - y).abs() < 1e-9,
                "({x},{y}) -> ({u},{v})"
            );
        }
    }

    #[test]
    fn inverse_round_trips_a_tilted_camera() {
        let hm = project(512.0, 512.0, 0.2, -0.15, 0.1, 1.3, (270.0, 240.0));
        let inv = hm.inverse().unwrap();
        for (x, y) in [(0.0, 0.0), (511.0, 3.0), (100.0, 400.0)] {
            let (u, v) = hm.apply(x, y).unwrap();
            let (bx, by) = inv.apply(u, v).unwrap();
            assert!((bx - x).abs() < 1e-6 && (by - y).abs() < 1e-6);
        }
        // The aim point lands at the photo's centre, magnified by the zoom.
        let (cx, cy) = hm.apply(270.0, 240.0).unwrap();
        assert!((cx - 256.0).abs() < 1e-6 && (cy - 256.0).abs() < 1e-6);
    }

    #[test]
    fn tilt_makes_a_keystone() {
        // Pitch: the image's top and bottom edges come out with different widths.
        let hm = project(512.0, 512.0, 0.3, 0.0, 0.0, 1.0, (256.0, 256.0));
        let width_at = |y: f64| {
            let (a, _) = hm.apply(0.0, y).unwrap();
            let (b, _) = hm.apply(512.0, y).unwrap();
            b - a
        };
        let (top, bottom) = (width_at(0.0), width_at(512.0));
        assert!(
            (top - bottom).abs() > 0.1 * top,
            "top {top} bottom {bottom}"
        );
    }
}
