//! `--from jmedseg`: the JMedSeg layout (`train_label.json` etc., masks as .npy beside their
//! images) into the folder layout, keeping JMedSeg's own split. The runtime's reader does the
//! parsing, so this importer sees the layout exactly as `medseg eval` would.

use std::path::PathBuf;

use anyhow::{Context, bail};

use medseg_runtime::dataset::Dataset;
use medseg_runtime::image_io::{load_image, load_mask};

use super::layout_writer::{LayoutWriter, SliceMeta};

#[derive(clap::Args, Debug, Default, Clone)]
pub struct JmedsegArgs {
    /// JMedSeg data folder holding train_label.json / val_label.json / test_label.json
    /// [jmedseg].
    #[arg(long)]
    pub jmedseg: Option<PathBuf>,
}

/// Opens the JMedSeg folder (its classes set the output's classes).
pub fn open(args: &JmedsegArgs) -> anyhow::Result<Dataset> {
    let root = args
        .jmedseg
        .as_ref()
        .context("--from jmedseg needs --jmedseg DIR (the folder with train_label.json)")?;
    if root.join("splits.json").is_file() {
        bail!(
            "{} has a splits.json: it is already in the folder layout, train on it directly",
            root.display()
        );
    }
    Dataset::open(root).with_context(|| format!("cannot read JMedSeg layout {}", root.display()))
}

/// Copies every slice into the writer under its JMedSeg split.
pub fn import(dataset: &Dataset, writer: &mut LayoutWriter) -> anyhow::Result<()> {
    let num_classes = writer.classes().len();
    for splits in dataset.domains.values() {
        for (split, samples) in splits {
            let bar = indicatif::ProgressBar::new(samples.len() as u64);
            for s in samples {
                bar.inc(1);
                let image = load_image(&s.image)?;
                let mask = load_mask(&s.mask, num_classes)?;
                let meta = SliceMeta {
                    patient: s.patient.clone(),
                    source: s.image.display().to_string(),
                    slice_index: None,
                    spacing: s.spacing,
                };
                writer.add(split, &s.name, meta, &image, &mask.to_gray())?;
            }
            bar.finish_and_clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, GrayImage};

    #[test]
    fn jmedseg_layout_keeps_its_split_and_patients() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("jm");
        std::fs::create_dir_all(src.join("p1")).unwrap();
        std::fs::create_dir_all(src.join("p2")).unwrap();
        for p in ["p1", "p2"] {
            DynamicImage::ImageLuma8(GrayImage::new(4, 3))
                .save(src.join(p).join("s0.png"))
                .unwrap();
            let mask: Vec<i64> = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            let mut out = Vec::new();
            {
                use npyz::WriterBuilder;
                let mut w = npyz::WriteOptions::new()
                    .default_dtype()
                    .shape(&[3, 4])
                    .writer(&mut out)
                    .begin_nd()
                    .unwrap();
                w.extend(mask).unwrap();
                w.finish().unwrap();
            }
            std::fs::write(src.join(p).join("s0.npy"), out).unwrap();
        }
        std::fs::write(src.join("train_label.json"), r#"{"p1": ["p1/s0.npy"]}"#).unwrap();
        std::fs::write(src.join("test_label.json"), r#"{"p2": ["p2/s0.npy"]}"#).unwrap();
        let args = JmedsegArgs { jmedseg: Some(src) };
        let ds = open(&args).unwrap();
        let out = dir.path().join("out");
        let mut w = LayoutWriter::create(&out, "jm", ds.classes.clone(), "default").unwrap();
        import(&ds, &mut w).unwrap();
        w.finish().unwrap();
        let back = Dataset::open(&out).unwrap();
        assert!(out.join("splits.json").is_file());
        let test = back.split(None, "test").unwrap();
        assert_eq!((test.len(), test[0].patient.as_str()), (1, "p2"));
        assert_eq!(back.split(None, "train").unwrap()[0].patient, "p1");
        let mask = load_mask(&test[0].mask, 2).unwrap();
        assert_eq!(mask.data.iter().filter(|&&v| v == 1).count(), 2);
    }
}
