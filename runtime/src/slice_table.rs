//! `slices.csv`: one row per slice of a folder-layout data set, written by the importers.
//! It records where each slice came from and its pixel spacing, so that surface distances
//! (ASSD, HD95) come out in millimetres downstream. A data set without it is scored in pixels.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

pub const FILE_NAME: &str = "slices.csv";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceRow {
    /// The slice's name in splits.json (file stem under images/ and masks/).
    pub name: String,
    pub patient: String,
    pub domain: String,
    pub split: String,
    /// The file the slice was taken from (a volume, a DICOM series folder, a PNG).
    pub source: String,
    /// Index of the slice along the slicing axis of its volume; empty for 2D sources.
    pub slice_index: Option<u32>,
    /// Pixel spacing in mm along image rows (y) and columns (x); empty when unknown.
    pub spacing_y_mm: Option<f64>,
    pub spacing_x_mm: Option<f64>,
    pub height: u32,
    pub width: u32,
    /// Pixels with a label other than background.
    pub foreground_pixels: u64,
}

impl SliceRow {
    /// (row, column) spacing in mm when both are known.
    pub fn spacing(&self) -> Option<(f64, f64)> {
        Some((self.spacing_y_mm?, self.spacing_x_mm?))
    }
}

/// Reads a slice table, keyed by slice name.
pub fn read(path: &Path) -> Result<BTreeMap<String, SliceRow>, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadDataset {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let mut rows = BTreeMap::new();
    for (line, row) in reader.deserialize::<SliceRow>().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
        for (what, v) in [
            ("spacing_y_mm", row.spacing_y_mm),
            ("spacing_x_mm", row.spacing_x_mm),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Err(bad(format!(
                    "row {}: {what} = {v}, expected a positive number of mm",
                    line + 2
                )));
            }
        }
        rows.insert(row.name.clone(), row);
    }
    Ok(rows)
}

/// Writes a slice table (to a temporary name first, so a failed write leaves no half file).
pub fn write(path: &Path, rows: &[SliceRow]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("csv.tmp");
    let mut writer = csv::Writer::from_path(&tmp).map_err(|e| RuntimeError::BadDataset {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    for row in rows {
        writer
            .serialize(row)
            .map_err(|e| RuntimeError::BadDataset {
                path: tmp.clone(),
                reason: e.to_string(),
            })?;
    }
    writer.flush().map_err(|e| RuntimeError::io(&tmp, e))?;
    drop(writer);
    std::fs::rename(&tmp, path).map_err(|e| RuntimeError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, spacing: Option<f64>) -> SliceRow {
        SliceRow {
            name: name.into(),
            patient: "p1".into(),
            domain: "default".into(),
            split: "train".into(),
            source: "vol.nii.gz".into(),
            slice_index: Some(3),
            spacing_y_mm: spacing,
            spacing_x_mm: spacing.map(|s| s * 2.0),
            height: 4,
            width: 5,
            foreground_pixels: 7,
        }
    }

    #[test]
    fn round_trips_with_known_and_unknown_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let rows = vec![row("a", Some(0.5)), row("b", None)];
        write(&path, &rows).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back["a"], rows[0]);
        assert_eq!(back["a"].spacing(), Some((0.5, 1.0)));
        assert_eq!(back["b"].spacing(), None);
    }

    #[test]
    fn non_positive_spacing_is_rejected_with_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        write(&path, &[row("a", Some(0.5)), row("b", Some(-1.0))]).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("row 3") && err.contains("spacing_y_mm"),
            "{err}"
        );
    }
}
