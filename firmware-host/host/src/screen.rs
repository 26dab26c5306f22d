//! The device screen: an RGB565 frame buffer drawn with embedded-graphics (the same calls a
//! firmware makes on its display driver), written to PNG for `--screenshot`, cut into
//! `DisplayChunk`s for screens driven over the link, and rebuilt from them on the other side.

use std::path::Path;

use anyhow::{Context, bail};
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::ascii::{FONT_6X10, FONT_9X15};
use embedded_graphics::pixelcolor::raw::RawU16;
use embedded_graphics::pixelcolor::{Rgb565, Rgb888};
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use image::{DynamicImage, RgbImage, imageops::FilterType};
use medseg_protocol::{DisplayChunk, MAX_CHUNK, SegResult};

/// Screen sizes the layout is designed for; others in between also work.
pub const LAYOUTS: [(u32, u32); 2] = [(320, 240), (480, 320)];

/// Parses `WIDTHxHEIGHT`, e.g. `320x240`.
pub fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = s
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?)));
    let Some((w, h)) = parsed else {
        bail!("display size {s:?} is not WIDTHxHEIGHT (e.g. 320x240 or 480x320)");
    };
    if !(160..=1024).contains(&w) || !(120..=1024).contains(&h) || w <= h {
        bail!(
            "display size {w}x{h} is not supported: a landscape screen from 160x120 to \
             1024x1024 is needed (the layouts are designed for 320x240 and 480x320)"
        );
    }
    Ok((w, h))
}

/// What one screen shows.
pub struct ScreenView<'a> {
    pub image: &'a DynamicImage,
    pub result: Option<&'a SegResult>,
    /// Name of class 1 (the measured structure).
    pub label: &'a str,
    pub status: &'a str,
}

pub struct Screen {
    width: u32,
    height: u32,
    fb: Vec<Rgb565>,
}

const BACKGROUND: Rgb565 = Rgb565::new(1, 3, 3);
const ACCENT: Rgb565 = Rgb565::new(0, 50, 31);
const OUTLINE: Rgb565 = Rgb565::new(31, 10, 4);
const STATUS_BG: Rgb565 = Rgb565::new(3, 8, 7);

impl Screen {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            fb: vec![BACKGROUND; (width * height) as usize],
        }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// Draws the layout: image with the contour at left, measurements at right, status below.
    pub fn render(&mut self, view: &ScreenView) {
        let large = self.width >= 480;
        let font = if large { &FONT_9X15 } else { &FONT_6X10 };
        let line_h = font.character_size.height as i32 + 3;
        let status_h = line_h + 2;
        let (w, h) = (self.width as i32, self.height as i32);
        let _ = self.clear(BACKGROUND);

        // Image, letterboxed into the largest square left of the text panel.
        let side = (h - status_h - 4).max(8) as u32;
        let img = view.image.to_luma8();
        let scale = side as f32 / img.width().max(img.height()) as f32;
        let (sw, sh) = (
            ((img.width() as f32 * scale).round() as u32).max(1),
            ((img.height() as f32 * scale).round() as u32).max(1),
        );
        let small = image::imageops::resize(&img, sw, sh, FilterType::Triangle);
        let (ox, oy) = (2 + (side - sw) as i32 / 2, 2 + (side - sh) as i32 / 2);
        let pixels = small.enumerate_pixels().map(|(x, y, p)| {
            let g = p.0[0];
            Pixel(
                Point::new(ox + x as i32, oy + y as i32),
                Rgb565::from(Rgb888::new(g, g, g)),
            )
        });
        let _ = self.draw_iter(pixels);

        // The contour exactly as the Result carries it, closed.
        if let Some(r) = view.result {
            let to_screen = |p: &medseg_protocol::Point| {
                Point::new(
                    ox + (p.x as f32 * scale).round() as i32,
                    oy + (p.y as f32 * scale).round() as i32,
                )
            };
            let stroke = PrimitiveStyle::with_stroke(OUTLINE, if large { 2 } else { 1 });
            let pts: Vec<Point> = r.contour.iter().map(to_screen).collect();
            for (i, &a) in pts.iter().enumerate() {
                let b = pts[(i + 1) % pts.len()];
                let _ = Line::new(a, b).into_styled(stroke).draw(self);
            }
        }

        // Text panel.
        let tx = side as i32 + 10;
        let text = MonoTextStyle::new(font, Rgb565::WHITE);
        let accent = MonoTextStyle::new(font, ACCENT);
        // (text, accent colour, half a line of space before it)
        let mut lines: Vec<(String, bool, bool)> = vec![("medseg".into(), true, false)];
        match view.result {
            Some(r) => {
                let area = r.areas.first().copied().unwrap_or(0);
                lines.push((format!("image #{}", r.image_id), false, false));
                lines.push((view.label.to_string(), true, true));
                lines.push((format!("area {area} px"), false, false));
                lines.push((format!("conf {:.1}%", r.confidence * 100.0), false, false));
                lines.push((format!("infer {} ms", r.inference_ms), false, false));
                if r.areas.len() > 1 {
                    lines.push((format!("+{} classes", r.areas.len() - 1), false, false));
                }
            }
            None => lines.push(("no result".into(), false, false)),
        }
        // Cut rather than run off the screen.
        let max_chars = ((w - tx - 2).max(0) as u32 / font.character_size.width) as usize;
        let mut y = 4;
        for (s, is_accent, gap) in &lines {
            if *gap {
                y += line_h / 2;
            }
            let style = if *is_accent { accent } else { text };
            let s: String = s.chars().take(max_chars).collect();
            let _ = Text::with_baseline(&s, Point::new(tx, y), style, Baseline::Top).draw(self);
            y += line_h;
        }

        // Status line.
        let bar = Rectangle::new(
            Point::new(0, h - status_h),
            Size::new(w as u32, status_h as u32),
        );
        let _ = bar
            .into_styled(PrimitiveStyle::with_fill(STATUS_BG))
            .draw(self);
        let _ = Text::with_baseline(
            view.status,
            Point::new(3, h - status_h + 2),
            MonoTextStyle::new(font, Rgb565::new(20, 50, 20)),
            Baseline::Top,
        )
        .draw(self);
    }

    pub fn to_rgb(&self) -> RgbImage {
        RgbImage::from_fn(self.width, self.height, |x, y| {
            let c = Rgb888::from(self.fb[(y * self.width + x) as usize]);
            image::Rgb([c.r(), c.g(), c.b()])
        })
    }

    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        self.to_rgb()
            .save(path)
            .with_context(|| format!("cannot write the screenshot {}", path.display()))
    }

    /// The whole screen as `DisplayChunk`s: row runs of at most `run` pixels (at most
    /// `MAX_CHUNK / 2`).
    pub fn chunks(&self, screen: u16, run: usize) -> Vec<DisplayChunk> {
        let run = run.clamp(1, MAX_CHUNK / 2) as u32;
        let mut out = Vec::new();
        for y in 0..self.height {
            let mut x = 0;
            while x < self.width {
                let n = run.min(self.width - x);
                let row = (y * self.width + x) as usize;
                let pixels = self.fb[row..row + n as usize]
                    .iter()
                    .flat_map(|&c| RawU16::from(c).into_inner().to_be_bytes())
                    .collect();
                out.push(DisplayChunk {
                    screen,
                    x: x as u16,
                    y: y as u16,
                    width: n as u16,
                    height: 1,
                    pixels,
                });
                x += n;
            }
        }
        out
    }

    /// Blits a received chunk; false (and nothing drawn) if it does not fit this screen.
    pub fn apply(&mut self, c: &DisplayChunk) -> bool {
        let (x, y, w, h) = (c.x as u32, c.y as u32, c.width as u32, c.height as u32);
        if x + w > self.width || y + h > self.height || c.pixels.len() != (w * h * 2) as usize {
            return false;
        }
        for (i, px) in c.pixels.chunks_exact(2).enumerate() {
            let (dx, dy) = (i as u32 % w, i as u32 / w);
            let raw = u16::from_be_bytes([px[0], px[1]]);
            self.fb[((y + dy) * self.width + x + dx) as usize] = Rgb565::from(RawU16::new(raw));
        }
        true
    }
}

impl OriginDimensions for Screen {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Screen {
    type Color = Rgb565;
    type Error = core::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(p, c) in pixels {
            if p.x >= 0 && p.y >= 0 && (p.x as u32) < self.width && (p.y as u32) < self.height {
                self.fb[(p.y as u32 * self.width + p.x as u32) as usize] = c;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseg_protocol::Point as WirePoint;

    fn view_result() -> SegResult {
        SegResult {
            image_id: 7,
            areas: heapless::Vec::from_slice(&[1234]).unwrap(),
            contour: [(10, 10), (50, 10), (50, 40), (10, 40)]
                .iter()
                .map(|&(x, y)| WirePoint { x, y })
                .collect(),
            confidence: 0.97,
            inference_ms: 75,
        }
    }

    #[test]
    fn both_layouts_draw_image_outline_text_and_status() {
        let img =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(64, 64, image::Luma([128])));
        let r = view_result();
        for (w, h) in LAYOUTS {
            let mut s = Screen::new(w, h);
            s.render(&ScreenView {
                image: &img,
                result: Some(&r),
                label: "bone",
                status: "link ok",
            });
            let rgb = s.to_rgb();
            let count = |f: &dyn Fn(&image::Rgb<u8>) -> bool| rgb.pixels().filter(|p| f(p)).count();
            // Gray image pixels, outline pixels, white text pixels and the status bar all exist.
            let mid_gray =
                |p: &image::Rgb<u8>| p.0[0].abs_diff(p.0[1]) < 8 && (100..160).contains(&p.0[0]);
            assert!(count(&mid_gray) > 1000, "{w}x{h}: no image");
            assert!(
                count(&|p| p.0[0] > 200 && p.0[1] < 100) > 50,
                "{w}x{h}: no outline"
            );
            assert!(count(&|p| p.0 == [255, 255, 255]) > 100, "{w}x{h}: no text");
            let bottom = rgb.get_pixel(w - 1, h - 1).0;
            assert_ne!(bottom, rgb.get_pixel(w - 1, 0).0, "{w}x{h}: no status bar");
        }
    }

    #[test]
    fn chunks_rebuild_the_same_screen_and_foreign_chunks_are_refused() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::from_fn(100, 80, |x, y| {
            image::Luma([(x * 2 + y) as u8])
        }));
        let mut a = Screen::new(320, 240);
        a.render(&ScreenView {
            image: &img,
            result: Some(&view_result()),
            label: "bone",
            status: "ok",
        });
        let mut b = Screen::new(320, 240);
        let chunks = a.chunks(1, MAX_CHUNK);
        assert!(chunks.iter().all(|c| c.pixels.len() <= MAX_CHUNK));
        assert!(chunks.iter().all(|c| b.apply(c)));
        assert_eq!(a.to_rgb(), b.to_rgb());
        let mut off = chunks[0].clone();
        off.x = 319;
        assert!(!b.apply(&off));
    }

    #[test]
    fn sizes_parse_with_clear_errors() {
        assert_eq!(parse_size("480x320").unwrap(), (480, 320));
        let e = parse_size("320by240").unwrap_err().to_string();
        assert!(e.contains("320by240") && e.contains("WIDTHxHEIGHT"), "{e}");
        assert!(
            parse_size("240x320")
                .unwrap_err()
                .to_string()
                .contains("landscape")
        );
    }
}
