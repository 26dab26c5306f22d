//! The HU canvas, the world-to-pixel mapping and the shape primitives anatomy is drawn with.
//!
//! World coordinates are hospital-A pixels relative to the image centre (x right = patient's
//! left, y down = posterior), so anatomy is described once and each domain only changes the
//! view (zoom and centre).

use std::f32::consts::{FRAC_PI_2, PI};

/// Slices are SIZE x SIZE pixels.
pub const SIZE: usize = 512;
const HALF: f32 = SIZE as f32 / 2.0;

/// Body layer of each pixel, from the outside in, so organs can be clipped to their layer.
pub const REGION_OUTSIDE: u8 = 0;
pub const REGION_SKIN: u8 = 1;
pub const REGION_FAT: u8 = 2;
pub const REGION_WALL: u8 = 3;
pub const REGION_INTERIOR: u8 = 4;

/// Axis-aligned world-space box.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Bounds {
    pub fn around(cx: f32, cy: f32, r: f32) -> Self {
        Self {
            x0: cx - r,
            y0: cy - r,
            x1: cx + r,
            y1: cy + r,
        }
    }

    pub fn union(self, o: Self) -> Self {
        Self {
            x0: self.x0.min(o.x0),
            y0: self.y0.min(o.y0),
            x1: self.x1.max(o.x1),
            y1: self.y1.max(o.y1),
        }
    }
}

/// Maps world coordinates to pixels: world point (cx, cy) lands on the image centre.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub zoom: f32,
    pub cx: f32,
    pub cy: f32,
}

impl View {
    /// Calls `f(world_x, world_y, pixel_index)` for every pixel whose centre lies in `b`.
    pub fn for_pixels(&self, b: Bounds, mut f: impl FnMut(f32, f32, usize)) {
        // Pixel p has its centre at p + 0.5 in pixel coordinates.
        let first = |w: f32, c: f32| {
            ((w - c) * self.zoom + HALF - 0.5)
                .ceil()
                .clamp(0.0, SIZE as f32) as usize
        };
        let end = |w: f32, c: f32| {
            ((w - c) * self.zoom + HALF + 0.5)
                .floor()
                .clamp(0.0, SIZE as f32) as usize
        };
        let (px0, px1) = (first(b.x0, self.cx), end(b.x1, self.cx));
        let (py0, py1) = (first(b.y0, self.cy), end(b.y1, self.cy));
        let inv = 1.0 / self.zoom;
        for py in py0..py1 {
            let wy = (py as f32 + 0.5 - HALF) * inv + self.cy;
            for px in px0..px1 {
                let wx = (px as f32 + 0.5 - HALF) * inv + self.cx;
                f(wx, wy, py * SIZE + px);
            }
        }
    }

    /// World position of a pixel centre.
    #[cfg(test)]
    pub fn world(&self, px: usize, py: usize) -> (f32, f32) {
        let inv = 1.0 / self.zoom;
        (
            (px as f32 + 0.5 - HALF) * inv + self.cx,
            (py as f32 + 0.5 - HALF) * inv + self.cy,
        )
    }
}

/// Hounsfield units per pixel, body-layer region per pixel, and the label mask.
pub struct Canvas {
    pub view: View,
    pub hu: Vec<f32>,
    pub region: Vec<u8>,
    pub mask: Vec<u8>,
}

impl Canvas {
    pub fn new(view: View, fill_hu: f32) -> Self {
        Self {
            view,
            hu: vec![fill_hu; SIZE * SIZE],
            region: vec![REGION_OUTSIDE; SIZE * SIZE],
            mask: vec![0; SIZE * SIZE],
        }
    }

    /// Fills `e` with `hu(x, y)` where the body region is the abdominal cavity.
    pub fn fill_interior(&mut self, e: &Ellipse, mut hu: impl FnMut(f32, f32) -> f32) {
        let view = self.view;
        view.for_pixels(e.bounds(), |x, y, i| {
            if self.region[i] == REGION_INTERIOR && e.norm2(x, y) < 1.0 {
                self.hu[i] = hu(x, y);
            }
        });
    }
}

/// Rotated ellipse.
#[derive(Clone, Copy, Debug)]
pub struct Ellipse {
    pub cx: f32,
    pub cy: f32,
    pub rx: f32,
    pub ry: f32,
    cos: f32,
    sin: f32,
}

impl Ellipse {
    pub fn new(cx: f32, cy: f32, rx: f32, ry: f32, angle: f32) -> Self {
        Self {
            cx,
            cy,
            rx,
            ry,
            cos: angle.cos(),
            sin: angle.sin(),
        }
    }

    pub fn circle(cx: f32, cy: f32, r: f32) -> Self {
        Self::new(cx, cy, r, r, 0.0)
    }

    /// Coordinates in the ellipse frame, not normalised.
    pub fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (
            dx * self.cos + dy * self.sin,
            -dx * self.sin + dy * self.cos,
        )
    }

    /// Squared normalised radius: < 1 inside.
    pub fn norm2(&self, x: f32, y: f32) -> f32 {
        let (u, v) = self.local(x, y);
        (u / self.rx).powi(2) + (v / self.ry).powi(2)
    }

    /// Distance inside the edge along the ray from the centre (negative outside).
    pub fn depth(&self, x: f32, y: f32) -> f32 {
        let (u, v) = self.local(x, y);
        let n = ((u / self.rx).powi(2) + (v / self.ry).powi(2)).sqrt();
        let d = (u * u + v * v).sqrt();
        if n < 1e-6 {
            self.rx.min(self.ry)
        } else {
            d / n - d
        }
    }

    pub fn bounds(&self) -> Bounds {
        Bounds::around(self.cx, self.cy, self.rx.max(self.ry))
    }

    pub fn grown(&self, d: f32) -> Self {
        Self {
            rx: self.rx + d,
            ry: self.ry + d,
            ..*self
        }
    }
}

/// Segment with a radius that tapers linearly from `ra` at `a` to `rb` at `b`.
#[derive(Clone, Copy, Debug)]
pub struct Capsule {
    pub a: (f32, f32),
    pub b: (f32, f32),
    pub ra: f32,
    pub rb: f32,
}

impl Capsule {
    /// Approximate signed distance (negative inside).
    pub fn sdf(&self, x: f32, y: f32) -> f32 {
        let (ex, ey) = (self.b.0 - self.a.0, self.b.1 - self.a.1);
        let (px, py) = (x - self.a.0, y - self.a.1);
        let t = ((px * ex + py * ey) / (ex * ex + ey * ey).max(1e-6)).clamp(0.0, 1.0);
        let (dx, dy) = (px - t * ex, py - t * ey);
        (dx * dx + dy * dy).sqrt() - (self.ra + (self.rb - self.ra) * t)
    }
}

/// atan2 to ~2e-5 rad, a few times faster than libm; used per pixel for polar contours.
pub fn fast_atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let (mn, mx) = if ax < ay { (ax, ay) } else { (ay, ax) };
    if mx == 0.0 {
        return 0.0;
    }
    let a = mn / mx;
    let s = a * a;
    let mut r =
        a * (0.999_866 + s * (-0.330_299_5 + s * (0.180_141 + s * (-0.085_133 + s * 0.020_835_1))));
    if ay > ax {
        r = FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = PI - r;
    }
    if y < 0.0 { -r } else { r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_atan2_matches_libm() {
        for i in 0..720 {
            let t = i as f32 * PI / 360.0 - PI + 0.001;
            let (y, x) = (3.0 * t.sin(), 3.0 * t.cos());
            assert!((fast_atan2(y, x) - y.atan2(x)).abs() < 1e-4, "angle {t}");
        }
    }

    #[test]
    fn view_round_trips_pixels() {
        let v = View {
            zoom: 1.5,
            cx: 10.0,
            cy: -20.0,
        };
        let (wx, wy) = v.world(300, 100);
        let mut hit = None;
        v.for_pixels(Bounds::around(wx, wy, 0.1), |_, _, i| hit = Some(i));
        assert_eq!(hit, Some(100 * SIZE + 300));
    }
}
