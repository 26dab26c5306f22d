//! Image panels for figures: a mask drawn over an image (tinted fill or outline only) and
//! labelled panels laid out in a grid PNG. Used by the generalization figure and by
//! `augment-preview`.

use std::path::Path;

use anyhow::Context;
use image::{Rgb, RgbImage};
use plotters::prelude::*;

use medseg_runtime::image_io::Mask;

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
            let edge = on_boundary(x, y, w, h, fg);
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

/// Whether pixel (x, y) of a `w x h` region lies on its boundary: at the image border, or
/// beside a 4-neighbour for which `inside` is false.
fn on_boundary(
    x: usize,
    y: usize,
    w: usize,
    h: usize,
    inside: impl Fn(usize, usize) -> bool,
) -> bool {
    x == 0
        || y == 0
        || x + 1 == w
        || y + 1 == h
        || !inside(x - 1, y)
        || !inside(x + 1, y)
        || !inside(x, y - 1)
        || !inside(x, y + 1)
}

/// Outline colours by class (class 1 first), cycling for more classes.
const OUTLINES: [[u8; 3]; 4] = [[255, 40, 40], [40, 220, 40], [60, 120, 255], [255, 200, 0]];

/// The image with the boundary of every foreground class drawn on it (pixels of a class that
/// touch another class or the border), leaving the inside visible.
pub fn outline(image: &RgbImage, mask: &Mask) -> RgbImage {
    let (w, h) = (mask.width, mask.height);
    assert_eq!((image.width() as usize, image.height() as usize), (w, h));
    let class = |x: usize, y: usize| mask.data[y * w + x];
    let mut out = image.clone();
    for y in 0..h {
        for x in 0..w {
            let c = class(x, y);
            if c == 0 {
                continue;
            }
            let edge = on_boundary(x, y, w, h, |x, y| class(x, y) == c);
            if edge {
                out.put_pixel(
                    x as u32,
                    y as u32,
                    Rgb(OUTLINES[(c as usize - 1) % OUTLINES.len()]),
                );
            }
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
    fn outline_marks_only_the_boundary_of_each_class() {
        let image = RgbImage::from_pixel(8, 8, Rgb([10, 10, 10]));
        let mut data = vec![0u8; 64];
        for y in 2..6 {
            for x in 2..6 {
                data[y * 8 + x] = if x < 4 { 1 } else { 2 };
            }
        }
        let mask = Mask {
            width: 8,
            height: 8,
            data,
        };
        let out = outline(&image, &mask);
        assert_eq!(out.get_pixel(0, 0).0, [10, 10, 10], "background untouched");
        assert_eq!(out.get_pixel(2, 2).0, OUTLINES[0], "class 1 outline");
        assert_eq!(out.get_pixel(5, 5).0, OUTLINES[1], "class 2 outline");
        assert_eq!(
            out.get_pixel(3, 3).0,
            OUTLINES[0],
            "touches class 2: an edge"
        );
        assert_eq!(out.get_pixel(2, 3).0, OUTLINES[0]);
        let mut inner = vec![0u8; 64];
        for y in 1..7 {
            for x in 1..7 {
                inner[y * 8 + x] = 1;
            }
        }
        let out = outline(
            &image,
            &Mask {
                width: 8,
                height: 8,
                data: inner,
            },
        );
        assert_eq!(out.get_pixel(3, 3).0, [10, 10, 10], "inside left visible");
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
