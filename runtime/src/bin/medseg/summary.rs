//! The batch summary `medseg segment` writes beside the per-image files: `summary.csv`, one
//! row per image or slice (failures included, with their error), so a batch of hundreds can
//! be read in a spreadsheet without opening every JSON report.

use std::path::{Path, PathBuf};

use anyhow::Context;
use medseg_runtime::outputs::ImageReport;

#[derive(Default)]
pub struct Summary {
    rows: Vec<(String, Result<ImageReport, String>)>,
}

impl Summary {
    /// Records one input: its report, or the error that stopped it.
    pub fn add(&mut self, name: &str, result: Result<&ImageReport, &anyhow::Error>) {
        let result = result.cloned().map_err(|e| format!("{e:#}"));
        self.rows.push((name.to_string(), result));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|(_, r)| r.is_err()).count()
    }

    pub fn succeeded(&self) -> usize {
        self.len() - self.failed()
    }

    /// Writes `out/summary.csv` (to a temporary name first, then renamed).
    pub fn write(&self, out: &Path, classes: &[String]) -> anyhow::Result<PathBuf> {
        let path = out.join("summary.csv");
        let tmp = out.join("summary.csv.partial");
        let mut w = csv::Writer::from_path(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut header = vec![
            "input".to_string(),
            "status".into(),
            "width".into(),
            "height".into(),
            "pixel_spacing_mm".into(),
            "mean_confidence".into(),
        ];
        for class in classes.iter().skip(1) {
            header.push(format!("{class}_area_px"));
            header.push(format!("{class}_area_mm2"));
            header.push(format!("{class}_confidence"));
        }
        header.push("error".into());
        w.write_record(&header)?;
        for (name, result) in &self.rows {
            let mut row = vec![name.clone()];
            match result {
                Ok(r) => {
                    row.push("ok".into());
                    row.push(r.width.to_string());
                    row.push(r.height.to_string());
                    row.push(
                        r.pixel_spacing_mm
                            .map(|[a, b]| format!("{a}x{b}"))
                            .unwrap_or_default(),
                    );
                    row.push(format!("{:.4}", r.mean_confidence));
                    for c in &r.classes {
                        row.push(c.area_pixels.to_string());
                        row.push(c.area_mm2.map(|a| format!("{a:.2}")).unwrap_or_default());
                        row.push(
                            c.mean_confidence
                                .map(|v| format!("{v:.4}"))
                                .unwrap_or_default(),
                        );
                    }
                    row.push(String::new());
                }
                Err(e) => {
                    row.push("error".into());
                    row.resize(header.len() - 1, String::new());
                    row.push(e.clone());
                }
            }
            w.write_record(&row)?;
        }
        w.flush()
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(w);
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}
