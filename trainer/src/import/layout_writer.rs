//! Writes an imported data set in the folder layout: `images/NAME.png`, `masks/NAME.png`,
//! `splits.json` and `slices.csv`. The label check lives here so that every importer refuses
//! values outside the declared classes the same way, naming the source file; so does the
//! duplicate check (identical slices under two patients) and, on request, the stacking of
//! neighbouring slices.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use image::{DynamicImage, GrayImage};
use serde::Serialize;

use medseg_runtime::slice_table::{self, SliceRow};

use super::duplicates::{DuplicateFinder, DuplicatePatients};

/// Where a slice came from and how large its pixels are.
#[derive(Debug, Clone)]
pub struct SliceMeta {
    pub patient: String,
    /// The source file or series, as the user named it (shown in errors and in slices.csv).
    pub source: String,
    pub slice_index: Option<u32>,
    /// (row, column) spacing in mm, when the source says.
    pub spacing: Option<(f64, f64)>,
}

pub struct LayoutWriter {
    root: PathBuf,
    name: String,
    classes: Vec<String>,
    domain: String,
    rows: Vec<SliceRow>,
    /// split -> patient -> slice names
    splits: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    duplicates: DuplicateFinder,
    stack_neighbours: bool,
    /// Slices the importer already wrote between their neighbours (from the volume).
    stacked_by_importer: BTreeSet<String>,
}

#[derive(Debug, Serialize)]
pub struct ImportSummary {
    pub out: PathBuf,
    pub slices: usize,
    /// split -> (patients, slices)
    pub per_split: BTreeMap<String, (usize, usize)>,
    /// Patients with identical slices: reported, or left out with --drop-duplicates (across
    /// splits, without it, the import fails).
    pub duplicates: Vec<DuplicatePatients>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wrote {} slices to {}", self.slices, self.out.display())?;
        for (split, (patients, slices)) in &self.per_split {
            write!(f, "\n  {split}: {patients} patients, {slices} slices")?;
        }
        for d in &self.duplicates {
            if d.dropped {
                let ((p1, s1), (p2, s2)) = (&d.first, &d.second);
                write!(
                    f,
                    "\nleft out {} slices of patient {p2} ({s2}): copies of patient {p1}'s ({s1}), e.g. {} = {}",
                    d.slices, d.example.1, d.example.0
                )?;
                continue;
            }
            let meaning = if d.same_patient() {
                "a slice repeated within the patient"
            } else {
                "probably one subject under two ids; per-patient means count it twice \
                 (--drop-duplicates leaves the copies out)"
            };
            write!(f, "\nwarning: {d}: {meaning}")?;
        }
        Ok(())
    }
}

/// Where the layout keeps slice `name`'s image (the stacking pass rewrites it there).
pub(super) fn image_path(root: &Path, name: &str) -> PathBuf {
    root.join("images").join(format!("{name}.png"))
}

#[derive(Serialize)]
struct SplitsFile<'a> {
    name: &'a str,
    classes: &'a [String],
    domains: BTreeMap<&'a str, &'a BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    /// Written only when set, so plain imports keep their bytes (and data set hash).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stacked_neighbours: bool,
}

impl LayoutWriter {
    /// Starts a data set in `out`, which must be absent or empty: an import never mixes with
    /// (or overwrites) files already there.
    pub fn create(
        out: &Path,
        name: &str,
        classes: Vec<String>,
        domain: &str,
    ) -> anyhow::Result<Self> {
        ensure!(
            classes.len() >= 2,
            "--classes needs at least two names (background first), got {}",
            classes.len()
        );
        ensure!(
            classes.len() <= 256,
            "at most 256 classes fit an 8-bit mask"
        );
        if out.exists() {
            let mut entries = std::fs::read_dir(out)
                .with_context(|| format!("cannot read output folder {}", out.display()))?;
            if entries.next().is_some() {
                bail!(
                    "output folder {} is not empty; import into a new folder so nothing there is overwritten",
                    out.display()
                );
            }
        }
        for sub in ["images", "masks"] {
            let dir = out.join(sub);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(Self {
            root: out.to_path_buf(),
            name: name.to_string(),
            classes,
            domain: domain.to_string(),
            rows: Vec::new(),
            splits: BTreeMap::new(),
            duplicates: DuplicateFinder::default(),
            stack_neighbours: false,
            stacked_by_importer: BTreeSet::new(),
        })
    }

    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Leave out slices whose pixels equal an earlier slice of another patient (one subject
    /// under two ids) instead of only reporting them.
    pub fn drop_duplicates(mut self, drop: bool) -> Self {
        self.duplicates.drop = drop;
        self
    }

    /// On finishing, rewrite every image as RGB between its neighbouring slices (2.5D input,
    /// [`super::neighbours`]).
    pub fn stack_neighbours(mut self, stack: bool) -> Self {
        self.stack_neighbours = stack;
        self
    }

    /// Whether slices are to be written between their neighbours (2.5D input). A volume
    /// importer then stacks them itself ([`Self::add_stacked`]), from the volume's own
    /// neighbouring slices.
    pub fn stacks_neighbours(&self) -> bool {
        self.stack_neighbours
    }

    /// Adds one slice. `image` is written as PNG as given (8/16-bit gray or RGB); `mask`
    /// holds class indices and must have the image's size.
    pub fn add(
        &mut self,
        split: &str,
        name: &str,
        meta: SliceMeta,
        image: &DynamicImage,
        mask: &GrayImage,
    ) -> anyhow::Result<()> {
        self.insert(split, name, meta, image, mask, false)
    }

    /// As [`Self::add`] for an image the importer has already stacked between its neighbours
    /// (RGB, [`super::neighbours::compose`]): finishing leaves it as it is.
    pub fn add_stacked(
        &mut self,
        split: &str,
        name: &str,
        meta: SliceMeta,
        image: &DynamicImage,
        mask: &GrayImage,
    ) -> anyhow::Result<()> {
        self.insert(split, name, meta, image, mask, true)
    }

    fn insert(
        &mut self,
        split: &str,
        name: &str,
        meta: SliceMeta,
        image: &DynamicImage,
        mask: &GrayImage,
        stacked: bool,
    ) -> anyhow::Result<()> {
        ensure!(
            !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.'),
            "slice name '{name}' (from {}) cannot be a file name",
            meta.source
        );
        ensure!(
            (image.width(), image.height()) == mask.dimensions(),
            "{}: image is {}x{} but its mask is {}x{}",
            meta.source,
            image.width(),
            image.height(),
            mask.width(),
            mask.height()
        );
        if let Some(&bad) = mask
            .as_raw()
            .iter()
            .find(|&&v| v as usize >= self.classes.len())
        {
            bail!(
                "{}: label value {bad} is outside the declared classes 0..={} ({})",
                meta.source,
                self.classes.len() - 1,
                self.classes.join(", ")
            );
        }
        if self.rows.iter().any(|r| r.name == name) {
            bail!(
                "two slices are named '{name}' (the second from {})",
                meta.source
            );
        }
        if !self.duplicates.add(image, name, &meta.patient, split) {
            return Ok(());
        }
        let image_path = image_path(&self.root, name);
        let mask_path = self.root.join("masks").join(format!("{name}.png"));
        image
            .save(&image_path)
            .with_context(|| format!("cannot write {}", image_path.display()))?;
        mask.save(&mask_path)
            .with_context(|| format!("cannot write {}", mask_path.display()))?;
        self.splits
            .entry(split.to_string())
            .or_default()
            .entry(meta.patient.clone())
            .or_default()
            .push(name.to_string());
        if stacked {
            self.stacked_by_importer.insert(name.to_string());
        }
        self.rows.push(SliceRow {
            name: name.to_string(),
            patient: meta.patient,
            domain: self.domain.clone(),
            split: split.to_string(),
            source: meta.source,
            slice_index: meta.slice_index,
            spacing_y_mm: meta.spacing.map(|s| s.0),
            spacing_x_mm: meta.spacing.map(|s| s.1),
            height: mask.height(),
            width: mask.width(),
            foreground_pixels: mask.as_raw().iter().filter(|&&v| v != 0).count() as u64,
        });
        Ok(())
    }

    /// Writes splits.json and slices.csv; the data set is readable only after this.
    pub fn finish(self) -> anyhow::Result<ImportSummary> {
        ensure!(
            !self.rows.is_empty(),
            "nothing was imported: no slice matched (from volumes, only slices with a label \
             are taken unless `--slices all`)"
        );
        let duplicates = self.duplicates.found();
        if let Some(leak) = duplicates.iter().find(|d| d.crosses_splits() && !d.dropped) {
            bail!(
                "{leak}: the same images in two splits would put test data into training; \
                 put both patients in one split, or pass --drop-duplicates to leave the copies out"
            );
        }
        if self.stack_neighbours {
            let unstacked: Vec<SliceRow> = self
                .rows
                .iter()
                .filter(|r| !self.stacked_by_importer.contains(&r.name))
                .cloned()
                .collect();
            super::neighbours::stack(&self.root, &unstacked)?;
        }
        let file = SplitsFile {
            name: &self.name,
            classes: &self.classes,
            domains: BTreeMap::from([(self.domain.as_str(), &self.splits)]),
            stacked_neighbours: self.stack_neighbours,
        };
        slice_table::write(&self.root.join(slice_table::FILE_NAME), &self.rows)?;
        let path = self.root.join("splits.json");
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        let per_split = self
            .splits
            .iter()
            .map(|(s, p)| (s.clone(), (p.len(), p.values().map(Vec::len).sum())))
            .collect();
        Ok(ImportSummary {
            out: self.root,
            slices: self.rows.len(),
            per_split,
            duplicates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medseg_runtime::dataset::Dataset;

    fn meta(patient: &str) -> SliceMeta {
        SliceMeta {
            patient: patient.into(),
            source: format!("{patient}.nii"),
            slice_index: Some(2),
            spacing: Some((0.8, 0.6)),
        }
    }

    fn classes() -> Vec<String> {
        vec!["background".into(), "bone".into()]
    }

    #[test]
    fn written_set_opens_with_spacing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set");
        let mut w = LayoutWriter::create(&out, "t", classes(), "default").unwrap();
        let img = DynamicImage::ImageLuma8(GrayImage::new(6, 4));
        let mut mask = GrayImage::new(6, 4);
        mask.put_pixel(1, 1, image::Luma([1]));
        w.add("train", "a", meta("p1"), &img, &mask).unwrap();
        w.add("test", "b", meta("p2"), &img, &mask).unwrap();
        let summary = w.finish().unwrap();
        assert_eq!(summary.per_split["train"], (1, 1));
        let ds = Dataset::open(&out).unwrap();
        let test = ds.split(None, "test").unwrap();
        assert_eq!(test[0].spacing, Some((0.8, 0.6)));
        assert_eq!(test[0].patient, "p2");
    }

    #[test]
    fn labels_outside_classes_name_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LayoutWriter::create(dir.path(), "t", classes(), "default").unwrap();
        let img = DynamicImage::ImageLuma8(GrayImage::new(2, 2));
        let mask = GrayImage::from_raw(2, 2, vec![0, 1, 2, 0]).unwrap();
        let err = w
            .add("train", "a", meta("p1"), &img, &mask)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("p1.nii") && err.contains("label value 2"),
            "{err}"
        );
    }

    /// A writer in `dir` holding one textured slice `{patient}_a` per (split, patient, seed);
    /// equal seeds give identical pixels.
    fn textured_slices(dir: &Path, drop: bool, slices: &[(&str, &str, u8)]) -> LayoutWriter {
        let mut w = LayoutWriter::create(dir, "t", classes(), "default")
            .unwrap()
            .drop_duplicates(drop);
        let mask = GrayImage::new(6, 4);
        for &(split, patient, seed) in slices {
            let image = DynamicImage::ImageLuma8(GrayImage::from_fn(6, 4, |x, y| {
                image::Luma([seed.wrapping_add((x + 3 * y) as u8)])
            }));
            w.add(split, &format!("{patient}_a"), meta(patient), &image, &mask)
                .unwrap();
        }
        w
    }

    #[test]
    fn one_subject_under_two_ids_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let w = textured_slices(
            dir.path(),
            false,
            &[("test", "p1", 1), ("test", "p2", 1), ("train", "p3", 2)],
        );
        let summary = w.finish().unwrap();
        assert_eq!(summary.duplicates.len(), 1);
        let text = summary.to_string();
        assert!(
            text.contains("patient p1 (test)") && text.contains("patient p2 (test)"),
            "{text}"
        );
    }

    #[test]
    fn identical_slices_in_two_splits_fail_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let w = textured_slices(dir.path(), false, &[("train", "p1", 5), ("test", "p2", 5)]);
        let err = w.finish().err().unwrap().to_string();
        assert!(
            err.contains("p1_a and p2_a") && err.contains("two splits"),
            "{err}"
        );
        assert!(!dir.path().join("splits.json").exists());
    }

    #[test]
    fn dropped_copies_are_not_written_and_do_not_fail_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let w = textured_slices(
            dir.path(),
            true,
            &[("train", "p1", 5), ("test", "p2", 5), ("test", "p3", 6)],
        );
        let summary = w.finish().unwrap();
        assert_eq!(summary.slices, 2);
        assert!(!dir.path().join("images/p2_a.png").exists());
        assert!(
            summary
                .to_string()
                .contains("left out 1 slices of patient p2 (test): copies of patient p1's"),
            "{summary}"
        );
        let ds = Dataset::open(dir.path()).unwrap();
        assert!(
            ds.split(None, "test")
                .unwrap()
                .iter()
                .all(|s| s.patient == "p3")
        );
    }

    #[test]
    fn refuses_a_non_empty_output_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let err = LayoutWriter::create(dir.path(), "t", classes(), "default")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
            "mine"
        );
    }
}
