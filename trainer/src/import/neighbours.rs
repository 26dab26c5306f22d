//! 2.5D input: every written slice becomes an RGB image holding the previous slice, the slice
//! itself and the next slice of the same patient (red, green, blue), so a 3-channel model
//! (`train --channels 3`) sees through the plane. Volume importers stack from the volume itself
//! ([`compose`] on its adjacent slices, imported or not). For 2D slices ([`stack`], run when
//! the layout is finished) the neighbours are the adjacent slices of the import by slice index:
//! where only some slices are there, the nearest ones that are.
//! The first and last slice of a patient repeat themselves in place of the missing neighbour.
//! The masks are not touched: the label is the centre slice's.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use image::GrayImage;
pub(super) use medseg_runtime::medical::scan::compose_neighbours as compose;

use medseg_runtime::slice_table::SliceRow;

use super::layout_writer::image_path;

/// Rewrites `images/NAME.png` of every row in `root` as the stacked RGB image, neighbours
/// taken from the rows themselves.
pub fn stack(root: &Path, rows: &[SliceRow]) -> anyhow::Result<()> {
    let mut by_patient: BTreeMap<&str, Vec<(u32, &SliceRow)>> = BTreeMap::new();
    for row in rows {
        let Some(index) = row.slice_index else {
            bail!(
                "--stack-neighbours needs each slice's index, and slice {} (from {}) has none",
                row.name,
                row.source
            );
        };
        by_patient
            .entry(row.patient.as_str())
            .or_default()
            .push((index, row));
    }
    for (patient, mut slices) in by_patient {
        slices.sort_by_key(|&(index, _)| index);
        if let Some(pair) = slices.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!(
                "--stack-neighbours: patient {patient} has two slices with index {} ({} and {}); \
                 give each series its own patient id",
                pair[0].0,
                pair[0].1.name,
                pair[1].1.name
            );
        }
        let images = slices
            .iter()
            .map(|(_, row)| read_gray(root, row))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, (_, row)) in slices.iter().enumerate() {
            let prev = &images[i.saturating_sub(1)];
            let next = &images[(i + 1).min(images.len() - 1)];
            let this = &images[i];
            for (other, side) in [(prev, "previous"), (next, "next")] {
                if other.dimensions() != this.dimensions() {
                    bail!(
                        "--stack-neighbours: slice {} is {}x{} but its {side} slice in patient \
                         {patient} is {}x{}",
                        row.name,
                        this.width(),
                        this.height(),
                        other.width(),
                        other.height()
                    );
                }
            }
            let rgb = compose(prev, this, next);
            let path = image_path(root, &row.name);
            rgb.save(&path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// The slice as written, as 8-bit gray (the model's input is 8-bit per channel anyway).
fn read_gray(root: &Path, row: &SliceRow) -> anyhow::Result<GrayImage> {
    let path = image_path(root, &row.name);
    Ok(image::open(&path)
        .with_context(|| format!("cannot read back {}", path.display()))?
        .to_luma8())
}

#[cfg(test)]
mod tests {
    use image::DynamicImage;
    use medseg_runtime::dataset::Dataset;

    use super::*;
    use crate::import::{LayoutWriter, SliceMeta};

    fn meta(patient: &str, slice_index: Option<u32>) -> SliceMeta {
        SliceMeta {
            patient: patient.into(),
            source: format!("{patient}.nii"),
            slice_index,
            spacing: None,
        }
    }

    fn write(out: &Path, slices: &[(&str, &str, Option<u32>, u8)]) -> anyhow::Result<()> {
        let classes = vec!["background".to_string(), "bone".to_string()];
        let mut w = LayoutWriter::create(out, "t", classes, "default")?.stack_neighbours(true);
        for &(name, patient, index, value) in slices {
            let img = DynamicImage::ImageLuma8(GrayImage::from_pixel(4, 3, image::Luma([value])));
            let mask = GrayImage::from_pixel(4, 3, image::Luma([1]));
            w.add("train", name, meta(patient, index), &img, &mask)?;
        }
        w.finish().map(|_| ())
    }

    fn rgb(out: &Path, name: &str) -> [u8; 3] {
        let img = image::open(out.join("images").join(format!("{name}.png"))).unwrap();
        assert!(matches!(img, DynamicImage::ImageRgb8(_)), "{name} is RGB");
        img.to_rgb8().get_pixel(2, 1).0
    }

    #[test]
    fn each_slice_sits_between_its_neighbours_in_slice_order() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set");
        // Added out of order, with a gap (index 4 missing) and a second patient.
        write(
            &out,
            &[
                ("a6", "a", Some(6), 60),
                ("a2", "a", Some(2), 20),
                ("a3", "a", Some(3), 30),
                ("b1", "b", Some(1), 90),
            ],
        )
        .unwrap();
        assert_eq!(rgb(&out, "a2"), [20, 20, 30]);
        assert_eq!(rgb(&out, "a3"), [20, 30, 60]);
        assert_eq!(rgb(&out, "a6"), [30, 60, 60]);
        assert_eq!(rgb(&out, "b1"), [90, 90, 90]);
        // The layout stays readable, masks untouched.
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.image_count(), 4);
        let mask = image::open(out.join("masks/a3.png")).unwrap();
        assert!(matches!(mask, DynamicImage::ImageLuma8(_)));
    }

    #[test]
    fn slices_without_an_index_or_with_a_repeated_one_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(
            &dir.path().join("x"),
            &[("a1", "a", Some(1), 1), ("a2", "a", None, 2)],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("slice a2 (from a.nii) has none"),
            "{err}"
        );
        let err = write(
            &dir.path().join("y"),
            &[("s1", "a", Some(5), 1), ("t1", "a", Some(5), 2)],
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("two slices with index 5 (s1 and t1)"),
            "{err}"
        );
    }
}
