//! `--from slices`: a folder of 2D images with a folder of masks of the same names (PNG, or
//! .npy masks), patients named by a manifest CSV or by a pattern on the file name. This is how
//! already-sliced public sets (e.g. spine-mri-vb) come in without code.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};

use medseg_runtime::dataset::IMAGE_EXTS;
use medseg_runtime::image_io::{load_image, load_mask};

use super::layout_writer::{LayoutWriter, SliceMeta};
use super::patient_pattern::PatientPattern;
use super::split_rule::SplitRule;

#[derive(clap::Args, Debug, Default)]
pub struct SlicesArgs {
    /// Folder of 2D images (PNG/JPEG) [slices].
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Folder of masks with the images' file names (PNG) or stems (.npy) [slices].
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// CSV with a header naming the image file (column file/image/name) and its patient
    /// (subject/patient); optional slice_index, spacing_y_mm, spacing_x_mm [slices].
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Pixel spacing in mm, 'S' or 'ROWxCOL', for every slice (overridden by the manifest's
    /// spacing columns) [slices].
    #[arg(long, value_parser = parse_spacing)]
    pub spacing: Option<(f64, f64)>,
}

/// Parses `0.8` or `0.8x0.6` (row x column, mm).
pub fn parse_spacing(s: &str) -> Result<(f64, f64), String> {
    let num = |t: &str| -> Result<f64, String> {
        let v: f64 = t
            .trim()
            .parse()
            .map_err(|_| format!("'{t}' is not a number of mm"))?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(format!("spacing {v} must be a positive number of mm"))
        }
    };
    match s.split_once(['x', 'X']) {
        Some((r, c)) => Ok((num(r)?, num(c)?)),
        None => num(s).map(|v| (v, v)),
    }
}

struct Entry {
    file: String,
    patient: String,
    slice_index: Option<u32>,
    spacing: Option<(f64, f64)>,
}

/// Imports every listed image whose patient the split rule assigns; returns the patients it
/// left out because no split names them. Patients come from the manifest or, without one, from
/// `pattern` on the file names.
pub fn import(
    args: &SlicesArgs,
    pattern: Option<&PatientPattern>,
    rule: &SplitRule,
    writer: &mut LayoutWriter,
) -> anyhow::Result<Vec<String>> {
    let images = args
        .images
        .as_deref()
        .context("--from slices needs --images DIR")?;
    let masks = args
        .masks
        .as_deref()
        .context("--from slices needs --masks DIR")?;
    let entries = match (&args.manifest, pattern) {
        (Some(manifest), _) => read_manifest(manifest, args.spacing)?,
        (None, Some(pattern)) => list_by_pattern(images, pattern, args.spacing)?,
        (None, None) => bail!(
            "--from slices needs --manifest CSV or --patient-pattern REGEX to know each image's patient"
        ),
    };
    ensure!(!entries.is_empty(), "no images found to import");
    let patients: Vec<String> = entries.iter().map(|e| e.patient.clone()).collect();
    let assignment = rule.assign(&patients)?;
    let num_classes = writer.classes().len();
    for e in &entries {
        let Some(split) = assignment.split_of.get(&e.patient) else {
            continue;
        };
        let image_path = image_file(images, &e.file);
        let stem = Path::new(&e.file)
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("image file name '{}' has no stem", e.file))?;
        let mask_path = [
            masks.join(&e.file),
            masks.join(format!("{stem}.png")),
            masks.join(format!("{stem}.npy")),
        ]
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no mask for {} in {}",
                image_path.display(),
                masks.display()
            )
        })?;
        let image = load_image(&image_path)?;
        let mask = load_mask(&mask_path, num_classes)?;
        let meta = SliceMeta {
            patient: e.patient.clone(),
            source: image_path.display().to_string(),
            slice_index: e.slice_index,
            spacing: e.spacing,
        };
        writer.add(split, stem, meta, &image, &mask.to_gray())?;
    }
    let mut left_out = assignment.unassigned;
    left_out.dedup();
    Ok(left_out)
}

/// The image a manifest row names. A bare name with no extension, as the `name` column of
/// this layout's own slices.csv holds, is looked up with the runtime's image extensions, so an imported
/// data set can be imported again (e.g. with --stack-neighbours).
fn image_file(images: &Path, file: &str) -> PathBuf {
    let named = images.join(file);
    if named.is_file() || Path::new(file).extension().is_some() {
        return named;
    }
    IMAGE_EXTS
        .iter()
        .map(|ext| images.join(format!("{file}.{ext}")))
        .find(|p| p.is_file())
        .unwrap_or(named)
}

fn read_manifest(path: &Path, spacing: Option<(f64, f64)>) -> anyhow::Result<Vec<Entry>> {
    let mut reader = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read manifest {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .clone();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
    let file_col = col(&["file", "image", "name"]).with_context(|| {
        format!(
            "{}: no column file/image/name in header {:?}",
            path.display(),
            headers
        )
    })?;
    let patient_col = col(&["subject", "patient", "patient_id"]).with_context(|| {
        format!(
            "{}: no column subject/patient in header {:?}",
            path.display(),
            headers
        )
    })?;
    let index_col = col(&["slice_index", "slice"]);
    let sy = col(&["spacing_y_mm"]);
    let sx = col(&["spacing_x_mm"]);
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{} line {line}", path.display()))?;
        let field = |c: usize| rec.get(c).unwrap_or("").trim();
        let slice_index = match index_col.map(field) {
            Some(v) if !v.is_empty() => Some(v.parse().with_context(|| {
                format!(
                    "{} line {line}: slice index '{v}' is not a whole number",
                    path.display()
                )
            })?),
            _ => None,
        };
        let row_spacing = match (sy.map(field), sx.map(field)) {
            (Some(y), Some(x)) if !y.is_empty() && !x.is_empty() => Some(
                parse_spacing(&format!("{y}x{x}"))
                    .map_err(|e| anyhow::anyhow!("{} line {line}: {e}", path.display()))?,
            ),
            _ => None,
        };
        let (file, patient) = (field(file_col), field(patient_col));
        ensure!(
            !file.is_empty() && !patient.is_empty(),
            "{} line {line}: empty file or patient",
            path.display()
        );
        out.push(Entry {
            file: file.to_string(),
            patient: patient.to_string(),
            slice_index,
            spacing: row_spacing.or(spacing),
        });
    }
    Ok(out)
}

fn list_by_pattern(
    images: &Path,
    pattern: &PatientPattern,
    spacing: Option<(f64, f64)>,
) -> anyhow::Result<Vec<Entry>> {
    let mut files: Vec<String> = std::fs::read_dir(images)
        .with_context(|| format!("cannot read image folder {}", images.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l.ends_with(".png") || l.ends_with(".jpg") || l.ends_with(".jpeg")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let patient = pattern
                .patient(&file)
                .with_context(|| {
                    format!("--patient-pattern '{pattern}' does not match image '{file}'")
                })?
                .to_string();
            Ok(Entry {
                file,
                patient,
                slice_index: None,
                spacing,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, GrayImage};
    use medseg_runtime::dataset::Dataset;

    fn write_pair(root: &Path, name: &str, label: u8) {
        DynamicImage::ImageLuma8(GrayImage::new(5, 4))
            .save(root.join("img").join(name))
            .unwrap();
        let mut m = GrayImage::new(5, 4);
        m.put_pixel(2, 2, image::Luma([label]));
        m.save(root.join("msk").join(name)).unwrap();
    }

    fn setup(labels: &[(&str, u8)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("img")).unwrap();
        std::fs::create_dir_all(dir.path().join("msk")).unwrap();
        for (n, l) in labels {
            write_pair(dir.path(), n, *l);
        }
        dir
    }

    fn classes() -> Vec<String> {
        vec!["background".into(), "vb".into()]
    }

    #[test]
    fn manifest_import_splits_by_patient_with_spacing() {
        let dir = setup(&[
            ("a01_s1.png", 1),
            ("a01_s2.png", 0),
            ("a02_s1.png", 1),
            ("a03_s1.png", 1),
        ]);
        std::fs::write(
            dir.path().join("m.csv"),
            "file,subject,slice_index\na01_s1.png,a01,1\na01_s2.png,a01,2\na02_s1.png,a02,1\na03_s1.png,a03,1\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let mut w = LayoutWriter::create(&out, "t", classes(), "default").unwrap();
        let args = SlicesArgs {
            images: Some(dir.path().join("img")),
            masks: Some(dir.path().join("msk")),
            manifest: Some(dir.path().join("m.csv")),
            spacing: Some((0.5, 0.5)),
        };
        let rule = SplitRule::named(&["train=a01".into(), "test=a02-a02".into()]).unwrap();
        let left = import(&args, None, &rule, &mut w).unwrap();
        assert_eq!(left, vec!["a03".to_string()]);
        w.finish().unwrap();
        let ds = Dataset::open(&out).unwrap();
        assert_eq!(ds.split(None, "train").unwrap().len(), 2);
        let test = ds.split(None, "test").unwrap();
        assert_eq!(
            (test[0].name.as_str(), test[0].spacing),
            ("a02_s1", Some((0.5, 0.5)))
        );
    }

    /// An imported data set's own slices.csv (names without extension) is a manifest too.
    #[test]
    fn an_imported_layout_imports_again_from_its_slices_csv() {
        let dir = setup(&[("a01_s1.png", 1), ("a02_s1.png", 1)]);
        std::fs::write(
            dir.path().join("m.csv"),
            "file,subject,slice_index\na01_s1.png,a01,4\na02_s1.png,a02,7\n",
        )
        .unwrap();
        let rule = SplitRule::named(&["train=a01".into(), "test=a02".into()]).unwrap();
        let first = dir.path().join("first");
        let mut w = LayoutWriter::create(&first, "t", classes(), "default").unwrap();
        let args = SlicesArgs {
            images: Some(dir.path().join("img")),
            masks: Some(dir.path().join("msk")),
            manifest: Some(dir.path().join("m.csv")),
            ..Default::default()
        };
        import(&args, None, &rule, &mut w).unwrap();
        w.finish().unwrap();
        let again = dir.path().join("again");
        let mut w = LayoutWriter::create(&again, "t", classes(), "default").unwrap();
        let args = SlicesArgs {
            images: Some(first.join("images")),
            masks: Some(first.join("masks")),
            manifest: Some(first.join("slices.csv")),
            ..Default::default()
        };
        import(&args, None, &rule, &mut w).unwrap();
        w.finish().unwrap();
        let table = std::fs::read_to_string(again.join("slices.csv")).unwrap();
        assert!(table.contains("a02_s1,a02,default,test"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("a01_s1,") && l.contains(",4,"))
        );
    }

    #[test]
    fn pattern_import_and_bad_label_names_the_mask() {
        let dir = setup(&[("p1_a.png", 1), ("p2_a.png", 3)]);
        let mut w =
            LayoutWriter::create(&dir.path().join("out"), "t", classes(), "default").unwrap();
        let args = SlicesArgs {
            images: Some(dir.path().join("img")),
            masks: Some(dir.path().join("msk")),
            ..Default::default()
        };
        let pattern = PatientPattern::parse("^(p\\d)_").unwrap();
        let rule = SplitRule::fractions("train=0.5,test=0.5", 1).unwrap();
        let err = import(&args, Some(&pattern), &rule, &mut w)
            .unwrap_err()
            .to_string();
        assert!(err.contains("p2_a.png"), "{err}");
    }

    #[test]
    fn spacing_parses_single_and_pair_and_refuses_nonsense() {
        assert_eq!(parse_spacing("0.8"), Ok((0.8, 0.8)));
        assert_eq!(parse_spacing("0.8x0.6"), Ok((0.8, 0.6)));
        assert!(parse_spacing("-1").is_err());
        assert!(parse_spacing("abc").is_err());
    }
}
