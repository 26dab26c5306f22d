//! Optional clean-up of a predicted class mask: drop small islands of a class, fill holes that
//! a class encloses. What nnU-Net's post-processing and radiologists' tools do to a raw argmax
//! before areas and boxes are reported; off unless the model card or the user turns it on.

use image::{GrayImage, Luma};
use imageproc::region_labelling::{Connectivity, connected_components};
use serde::{Deserialize, Serialize};

use crate::image_io::Mask;

/// Clean-up settings, stored in the model card (`medseg-train export --min-component
/// --fill-holes`) and overridable on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {
    /// Islands of a foreground class smaller than this many pixels of the model's input grid
    /// (8-connected) become background. Scaled by area to the output's own size, so that one
    /// setting means the same anatomy on a 224 px slice and on a 3000 px photo. 0: keep all.
    #[serde(default)]
    pub min_component_px: u32,
    /// Background regions enclosed by one foreground class (4-connected, not touching the
    /// image border) take that class.
    #[serde(default)]
    pub fill_holes: bool,
}

impl Cleanup {
    pub fn is_off(&self) -> bool {
        *self == Self::default()
    }

    /// Cleans `mask` in place. `model_px` is the pixel count of the model's input grid, the
    /// unit `min_component_px` is given in.
    pub fn apply(&self, mask: &mut Mask, model_px: usize) {
        if self.is_off() || mask.data.is_empty() {
            return;
        }
        // The mask's buffer moves into the image imageproc labels, and back: no copies.
        let (w, h) = (mask.width as u32, mask.height as u32);
        let mut image = GrayImage::from_raw(w, h, std::mem::take(&mut mask.data))
            .expect("mask buffer matches its size");
        if self.min_component_px > 0 {
            let scale = image.len() as f64 / model_px.max(1) as f64;
            let min_px = (self.min_component_px as f64 * scale).round() as usize;
            drop_small_islands(&mut image, min_px);
        }
        if self.fill_holes {
            fill_enclosed_background(&mut image);
        }
        mask.data = image.into_raw();
    }
}

/// Pixel count of each label of `labels` (index = label; 0 is the unlabelled colour).
fn region_sizes(labels: &image::ImageBuffer<Luma<u32>, Vec<u32>>) -> Vec<usize> {
    let mut sizes = Vec::new();
    for &l in labels.as_raw() {
        let l = l as usize;
        if l >= sizes.len() {
            sizes.resize(l + 1, 0);
        }
        sizes[l] += 1;
    }
    sizes
}

fn drop_small_islands(image: &mut GrayImage, min_px: usize) {
    // connected_components joins neighbours of equal value only, so every class's islands are
    // labelled separately in one pass.
    let labels = connected_components(&*image, Connectivity::Eight, Luma([0u8]));
    let sizes = region_sizes(&labels);
    for (v, &l) in image.iter_mut().zip(labels.as_raw()) {
        if l != 0 && sizes[l as usize] < min_px {
            *v = 0;
        }
    }
}

fn fill_enclosed_background(image: &mut GrayImage) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    // Background regions, 4-connected: a hole is a background region off the border whose
    // every outside neighbour belongs to one and the same class. Every region is labelled
    // (255 is no class index), so background pixels always have a label of their own.
    let labels = connected_components(&*image, Connectivity::Four, Luma([255u8]));
    let raw = labels.as_raw();
    let n = raw.iter().max().map_or(0, |&m| m as usize) + 1;
    // Per region: the class enclosing it so far, or one of these two markers.
    const UNSEEN: u16 = u16::MAX;
    const NOT_A_HOLE: u16 = u16::MAX - 1;
    let mut encloser = vec![UNSEEN; n];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if image.as_raw()[i] != 0 {
                continue;
            }
            let region = raw[i] as usize;
            if x == 0 || y == 0 || x + 1 == w || y + 1 == h {
                encloser[region] = NOT_A_HOLE;
                continue;
            }
            for j in [i - 1, i + 1, i - w, i + w] {
                let c = image.as_raw()[j];
                if c == 0 {
                    continue;
                }
                encloser[region] = match encloser[region] {
                    UNSEEN => c as u16,
                    e if e == c as u16 => e,
                    _ => NOT_A_HOLE,
                };
            }
        }
    }
    for (i, v) in image.iter_mut().enumerate() {
        if *v == 0 {
            let e = encloser[raw[i] as usize];
            if e != UNSEEN && e != NOT_A_HOLE {
                *v = e as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(rows: &[&str]) -> Mask {
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| b - b'0'))
            .collect();
        Mask {
            width: rows[0].len(),
            height: rows.len(),
            data,
        }
    }

    const FILL: Cleanup = Cleanup {
        min_component_px: 0,
        fill_holes: true,
    };

    fn drop_under(px: u32) -> Cleanup {
        Cleanup {
            min_component_px: px,
            fill_holes: false,
        }
    }

    fn apply(cleanup: Cleanup, rows: &[&str]) -> Mask {
        let mut m = mask(rows);
        let px = m.data.len();
        cleanup.apply(&mut m, px);
        m
    }

    #[test]
    fn small_islands_of_each_class_become_background() {
        let out = apply(
            drop_under(3),
            &[
                "110002", //
                "110002", //
                "000000", //
                "200011", //
                "000000",
            ],
        );
        // The 2x2 block of 1 stays; the pair of 2, the lone 2 and the pair of 1 (< 3 px) go.
        assert_eq!(
            out,
            mask(&["110000", "110000", "000000", "000000", "000000"])
        );
    }

    #[test]
    fn islands_touching_diagonally_count_as_one() {
        let rows = ["1000", "0100", "0010", "0000"];
        assert_eq!(apply(drop_under(3), &rows), mask(&rows));
    }

    #[test]
    fn the_threshold_scales_with_the_output_size() {
        // 4 px of a 2x2 model grid: on this 4x4 output that is 16 px, so a 4 px island goes.
        let mut m = mask(&["1100", "1100", "0000", "0000"]);
        drop_under(4).apply(&mut m, 4);
        assert!(m.data.iter().all(|&v| v == 0));
    }

    #[test]
    fn enclosed_background_takes_the_enclosing_class() {
        let out = apply(
            FILL,
            &[
                "0000000", //
                "0111000", //
                "0101000", //
                "0111000", //
                "0000000",
            ],
        );
        assert_eq!(
            out,
            mask(&["0000000", "0111000", "0111000", "0111000", "0000000"])
        );
    }

    #[test]
    fn holes_open_to_the_border_or_between_classes_stay() {
        // Left: a gap open to the border. Right: a gap between class 1 and class 2.
        let rows = [
            "0101011220", //
            "0101010020", //
            "0111011220", //
            "0000000000",
        ];
        assert_eq!(apply(FILL, &rows), mask(&rows));
    }

    #[test]
    fn a_ring_closed_only_diagonally_still_encloses() {
        // Foreground is 8-connected, background 4-connected: background cannot leak through a
        // diagonal step, so the diamond's centre is a hole.
        let out = apply(FILL, &["00000", "00100", "01010", "00100", "00000"]);
        assert_eq!(out, mask(&["00000", "00100", "01110", "00100", "00000"]));
    }

    #[test]
    fn off_changes_nothing() {
        let rows = ["1020", "0001"];
        assert_eq!(apply(Cleanup::default(), &rows), mask(&rows));
        assert!(Cleanup::default().is_off());
    }
}
