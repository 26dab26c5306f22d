//! The benchmark's picture, like JMedSeg's Fig. 1: a real phone photo of a CT slice on a
//! monitor, and each method's prediction on it side by side.

use std::path::Path;

use anyhow::Context;
use image::{DynamicImage, Rgb, RgbImage};
use plotters::prelude::*;

use medseg_runtime::image_io::Mask;

/// A rectangle of the photo, in its pixels: `x,y,width,height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Crop {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let v: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("'{s}': expected x,y,width,height in pixels, e.g. 40,0,420,420")
            })?;
        match v[..] {
            [x, y, width, height] if width > 0 && height > 0 => Ok(Self {
                x,
                y,
                width,
                height,
            }),
            _ => Err(format!(
                "'{s}': expected four numbers x,y,width,height with a positive width and height"
            )),
        }
    }
}

/// The crop of `photo`, refused when it does not lie inside it (named by `source`).
pub fn crop(photo: &DynamicImage, c: Crop, source: &str) -> anyhow::Result<DynamicImage> {
    anyhow::ensure!(
        c.x.saturating_add(c.width) <= photo.width()
            && c.y.saturating_add(c.height) <= photo.height(),
        "--photo-crop {},{},{},{} does not fit in {source} ({}x{} px)",
        c.x,
        c.y,
        c.width,
        c.height,
        photo.width(),
        photo.height()
    );
    Ok(photo.crop_imm(c.x, c.y, c.width, c.height))
}

const FILL: [u8; 3] = [230, 30, 30];

/// The photo in colour with every foreground pixel tinted red and the mask's outline drawn.
pub fn overlay(photo: &RgbImage, mask: &Mask) -> RgbImage {
    let (w, h) = (mask.width, mask.height);
    assert_eq!((photo.width() as usize, photo.height() as usize), (w, h));
    let fg = |x: usize, y: usize| mask.data[y * w + x] != 0;
    let mut out = photo.clone();
    for y in 0..h {
        for x in 0..w {
            if !fg(x, y) {
                continue;
            }
            let edge = x == 0
                || y == 0
                || x + 1 == w
                || y + 1 == h
                || !fg(x - 1, y)
                || !fg(x + 1, y)
                || !fg(x, y - 1)
                || !fg(x, y + 1);
            let px = out.get_pixel_mut(x as u32, y as u32);
            *px = if edge {
                Rgb(FILL)
            } else {
                Rgb(std::array::from_fn(|c| {
                    ((px.0[c] as u16 * 5 + FILL[c] as u16 * 5) / 10) as u8
                }))
            };
        }
    }
    out
}

/// Lays out labelled panels (all the size of the first) in a grid of `columns` and writes
/// the PNG.
pub fn write_grid(
    panels: &[(String, RgbImage)],
    columns: usize,
    path: &Path,
) -> anyhow::Result<()> {
    anyhow::ensure!(!panels.is_empty(), "no panels to draw");
    let (pw, ph) = panels[0].1.dimensions();
    let label = 28u32;
    let columns = columns.clamp(1, panels.len());
    let rows = panels.len().div_ceil(columns);
    let (w, h) = (columns as u32 * pw, rows as u32 * (ph + label));
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, (_, panel)) in panels.iter().enumerate() {
        let (cx, cy) = (
            (i % columns) as u32 * pw,
            (i / columns) as u32 * (ph + label),
        );
        let resized = if panel.dimensions() == (pw, ph) {
            panel.clone()
        } else {
            image::imageops::resize(panel, pw, ph, image::imageops::FilterType::Triangle)
        };
        image::imageops::replace(&mut canvas, &resized, cx as i64, (cy + label) as i64);
    }
    crate::plot::register_font();
    {
        let buf = canvas.as_mut();
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        for (i, (text, _)) in panels.iter().enumerate() {
            let (cx, cy) = (
                (i % columns) as u32 * pw,
                (i / columns) as u32 * (ph + label),
            );
            root.draw_text(
                text,
                &("sans-serif", 20).into_font().color(&BLACK),
                (cx as i32 + 6, cy as i32 + 4),
            )?;
        }
        root.present()?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    canvas
        .save(path)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_parse_and_are_checked_against_the_photo() {
        let c: Crop = "10,20,30,40".parse().unwrap();
        assert_eq!((c.x, c.y, c.width, c.height), (10, 20, 30, 40));
        assert!("10,20,30".parse::<Crop>().is_err());
        assert!("a,b,c,d".parse::<Crop>().is_err());
        assert!("0,0,0,5".parse::<Crop>().is_err());
        let photo = DynamicImage::new_rgb8(50, 50);
        assert!(crop(&photo, c, "p.jpg").is_err());
        let err = crop(&photo, c, "p.jpg").unwrap_err().to_string();
        assert!(err.contains("p.jpg") && err.contains("50x50"), "{err}");
        let ok = crop(&photo, "10,10,40,20".parse().unwrap(), "p.jpg").unwrap();
        assert_eq!((ok.width(), ok.height()), (40, 20));
    }

    #[test]
    fn overlay_tints_the_mask_and_draws_its_outline() {
        let photo = RgbImage::from_pixel(8, 8, Rgb([0, 0, 200]));
        let mut data = vec![0u8; 64];
        for y in 2..6 {
            for x in 2..6 {
                data[y * 8 + x] = 1;
            }
        }
        let mask = Mask {
            width: 8,
            height: 8,
            data,
        };
        let out = overlay(&photo, &mask);
        assert_eq!(out.get_pixel(0, 0).0, [0, 0, 200], "background untouched");
        assert_eq!(out.get_pixel(2, 2).0, FILL, "outline");
        let inside = out.get_pixel(3, 3).0;
        assert!(inside[0] > 100 && inside[2] < 200, "tinted: {inside:?}");
    }

    #[test]
    fn grid_has_a_labelled_cell_per_panel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fig.png");
        let panels: Vec<(String, RgbImage)> = (0..3)
            .map(|i| {
                (
                    format!("panel {i}"),
                    RgbImage::from_pixel(40, 30, Rgb([0, 90, 0])),
                )
            })
            .collect();
        write_grid(&panels, 2, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (80, 2 * (30 + 28)));
        // The label strip holds dark text pixels; the panel area keeps its colour.
        let strip_dark = (0..40u32)
            .flat_map(|x| (0..28u32).map(move |y| (x, y)))
            .any(|(x, y)| img.get_pixel(x, y).0[0] < 100);
        assert!(strip_dark, "no label drawn");
        assert_eq!(img.get_pixel(20, 28 + 15).0, [0, 90, 0]);
    }
}
