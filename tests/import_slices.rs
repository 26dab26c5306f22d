//! `medseg-train import --from slices` as a user runs it: a folder of slices with a manifest
//! becomes a data set that `medseg eval`-style loaders open with the split by patient; a bad
//! label fails naming the file and leaves no half-written folder. The real spine MRI folder is
//! imported too when it is present (../shared/data/spine-mri-vb).

use std::path::{Path, PathBuf};

use image::GrayImage;
use medseg_e2e::{fails_mentioning, run, text};
use medseg_runtime::dataset::Dataset;

fn write_slices(root: &Path, labels: &[(&str, u8)]) {
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    let mut manifest = String::from("file,subject,slice_index\n");
    for (i, (name, label)) in labels.iter().enumerate() {
        GrayImage::from_pixel(8, 6, image::Luma([100]))
            .save(root.join("images").join(name))
            .unwrap();
        let mut m = GrayImage::new(8, 6);
        m.put_pixel(3, 3, image::Luma([*label]));
        m.save(root.join("masks").join(name)).unwrap();
        let subject = name.split('_').next().unwrap();
        manifest.push_str(&format!("{name},{subject},{i}\n"));
    }
    std::fs::write(root.join("slices.csv"), manifest).unwrap();
}

fn import_args(src: &Path, out: &Path) -> Vec<String> {
    let s = |p: PathBuf| p.display().to_string();
    vec![
        "import".into(),
        "--from".into(),
        "slices".into(),
        "--images".into(),
        s(src.join("images")),
        "--masks".into(),
        s(src.join("masks")),
        "--manifest".into(),
        s(src.join("slices.csv")),
        "--split".into(),
        "train=s01-s02".into(),
        "--split".into(),
        "test=s03".into(),
        "--spacing".into(),
        "0.5x0.75".into(),
        "--out".into(),
        s(out.to_path_buf()),
    ]
}

#[test]
fn slices_import_to_a_dataset_split_by_patient() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_slices(
        &src,
        &[
            ("s01_a.png", 1),
            ("s01_b.png", 0),
            ("s02_a.png", 1),
            ("s03_a.png", 1),
        ],
    );
    let out = dir.path().join("set");
    let args = import_args(&src, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run("medseg-train", &args, true);
    assert!(
        text(&o).contains("train: 2 patients, 3 slices"),
        "{}",
        text(&o)
    );
    let ds = Dataset::open(&out).unwrap();
    let test = ds.split(None, "test").unwrap();
    assert_eq!(test.len(), 1);
    assert_eq!(
        (test[0].patient.as_str(), test[0].spacing),
        ("s03", Some((0.5, 0.75)))
    );
    // A second import into the same folder is refused and leaves it intact.
    fails_mentioning("medseg-train", &args, "not empty");
    assert!(Dataset::open(&out).is_ok());
}

/// An import of two slices with `extra` flags fails mentioning `message` and writes nothing.
fn refused_before_anything_is_written(extra: &[&str], message: &str) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_slices(&src, &[("s01_a.png", 1), ("s03_a.png", 1)]);
    let out = dir.path().join("set");
    let mut args = import_args(&src, &out);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_mentioning("medseg-train", &args, message);
    assert!(!out.exists());
}

#[test]
fn a_flag_of_another_format_is_refused_not_ignored() {
    refused_before_anything_is_written(
        &["--window", "40,400"],
        "--window applies to --from nifti, msd, dicom, not --from slices",
    );
}

#[test]
fn patients_from_a_file_name_pattern_under_either_flag_name() {
    // --patient-pattern is shared with --from nifti, whose flag was --patient-regex.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_slices(
        &src,
        &[("s01_a.png", 1), ("s01_b.png", 1), ("s03_a.png", 1)],
    );
    for (i, flag) in ["--patient-pattern", "--patient-regex"].iter().enumerate() {
        let out = dir.path().join(format!("set{i}"));
        let args = import_args(&src, &out);
        // The manifest names the patients too: leave it out so the pattern must.
        let at = args.iter().position(|a| a == "--manifest").unwrap();
        let mut args: Vec<String> = [&args[..at], &args[at + 2..]].concat();
        args.extend([flag.to_string(), "^(s\\d+)_".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run("medseg-train", &args, true);
        assert!(
            text(&o).contains("train: 1 patients, 2 slices"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn a_pattern_without_a_group_is_refused_before_anything_is_written() {
    refused_before_anything_is_written(
        &["--patient-pattern", "^s\\d+"],
        "'^s\\d+' needs a group ( ) around the patient",
    );
}

#[test]
fn a_label_outside_the_classes_names_the_mask_and_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    write_slices(&src, &[("s01_a.png", 1), ("s02_a.png", 7)]);
    let out = dir.path().join("set");
    let args = import_args(&src, &out);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails_mentioning("medseg-train", &args, "s02_a.png");
    assert!(
        !out.exists(),
        "a failed import removes the folder it created"
    );
}

#[test]
fn real_spine_mri_imports_with_the_readme_split() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/spine-mri-vb");
    if !root.join("slices.csv").is_file() {
        eprintln!(
            "skipped: {} is absent (real data stays outside the repository)",
            root.display()
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vb");
    let s = |p: PathBuf| p.display().to_string();
    let (images, masks, manifest) = (
        s(root.join("images")),
        s(root.join("masks_level")),
        s(root.join("slices.csv")),
    );
    let import = |out: &Path, extra: &[&str]| {
        let out = s(out.to_path_buf());
        let mut args = vec![
            "import",
            "--from",
            "slices",
            "--images",
            &images,
            "--masks",
            &masks,
            "--manifest",
            &manifest,
            "--classes",
            "background,L1,L2,L3,L4,L5",
            "--split",
            "train=myo01-myo38",
            "--split",
            "val=myo39-myo46",
            "--split",
            "test=myo47-myo54",
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        text(&run("medseg-train", &args, true))
    };
    let t = import(&out, &[]);
    assert!(t.contains("wrote 1666 slices"), "{t}");
    assert!(
        t.contains("train: 38 patients") && t.contains("test: 8 patients"),
        "{t}"
    );
    // The folder holds four subjects twice under two ids, each pair within one split.
    for (a, b, split) in [
        ("myo18", "myo19", "train"),
        ("myo32", "myo33", "train"),
        ("myo51", "myo53", "test"),
        ("myo52", "myo54", "test"),
    ] {
        let pair =
            format!("patient {a} ({split}) are identical to slices of patient {b} ({split})");
        assert!(t.contains(&pair), "{pair}\n{t}");
    }
    // --drop-duplicates keeps the first of each pair: 6 distinct test subjects.
    let t = import(&dir.path().join("vb-distinct"), &["--drop-duplicates"]);
    assert!(
        t.contains("wrote 1537 slices") && t.contains("test: 6 patients, 199 slices"),
        "{t}"
    );
    let ds = Dataset::open(&out).unwrap();
    assert_eq!(ds.classes.len(), 6);
    assert!(
        ds.split(None, "test")
            .unwrap()
            .iter()
            .all(|s| s.patient.as_str() >= "myo47")
    );
}
