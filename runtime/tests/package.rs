//! Model packages (`export --package`): written from the embedded demo model, loaded in both
//! forms with the same result, and refused by file name when a file is edited, truncated or
//! missing, or when card.json is not a package description.

use std::path::Path;

use medseg_runtime::demo::{MODEL, SAMPLES};
use medseg_runtime::package::{self, Form, MANIFEST_FILE, NNEF_FILE, ONNX_FILE, Package};
use medseg_runtime::{LoadOptions, Segmenter};

fn options() -> LoadOptions {
    LoadOptions {
        threads: 1,
        ..LoadOptions::default()
    }
}

fn write_demo(dir: &Path) -> package::Manifest {
    package::write(dir, MODEL, "demo.onnx", "int8-weights").unwrap()
}

fn load_error(path: &Path) -> String {
    match Segmenter::from_path(path, &options()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn both_forms_load_and_give_the_onnx_files_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-package");
    let manifest = write_demo(&dir);
    assert_eq!(manifest.precision, "int8-weights");
    for name in [ONNX_FILE, NNEF_FILE, MANIFEST_FILE] {
        assert!(dir.join(name).is_file(), "{name} missing");
    }
    assert_eq!(
        std::fs::read(dir.join(ONNX_FILE)).unwrap(),
        MODEL,
        "the package's ONNX file is the exported one"
    );
    // Nothing but the package is left beside it.
    let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);

    let img = image::load_from_memory(SAMPLES[0].image).unwrap();
    let reference = Segmenter::from_bytes_with_options(MODEL, "demo", &options())
        .unwrap()
        .segment_logits(&img)
        .unwrap();
    let by_folder = Segmenter::from_path(&dir, &options()).unwrap();
    let by_nnef_file = Segmenter::from_path(&dir.join(NNEF_FILE), &options()).unwrap();
    let onnx = Segmenter::from_package(&dir, Form::Onnx, &options()).unwrap();
    assert_eq!(by_folder.card, manifest.card);
    assert_eq!(onnx.segment_logits(&img).unwrap(), reference);
    for nnef in [&by_folder, &by_nnef_file] {
        let logits = nnef.segment_logits(&img).unwrap();
        assert_eq!(logits.len(), reference.len());
        let range = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = logits
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // The same f32 graph, optimized from another starting point: kernels may sum in
        // another order, nothing more.
        assert!(
            worst <= 1e-4 * range,
            "NNEF logits differ by {worst} of {range}"
        );
    }
}

#[test]
fn edited_truncated_or_missing_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    write_demo(&dir);

    // One byte of the NNEF archive changed, same size.
    let nnef = dir.join(NNEF_FILE);
    let original = std::fs::read(&nnef).unwrap();
    let mut edited = original.clone();
    let mid = edited.len() / 2;
    edited[mid] ^= 0x40;
    std::fs::write(&nnef, &edited).unwrap();
    let err = load_error(&dir);
    assert!(err.contains(NNEF_FILE) && err.contains("sha256"), "{err}");
    std::fs::write(&nnef, &original).unwrap();

    // The ONNX file cut short.
    let onnx = dir.join(ONNX_FILE);
    std::fs::write(&onnx, &MODEL[..MODEL.len() / 3]).unwrap();
    let err = match Segmenter::from_package(&dir, Form::Onnx, &options()) {
        Ok(_) => panic!("truncated ONNX loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(ONNX_FILE) && err.contains("truncated"),
        "{err}"
    );
    // The NNEF form does not read the ONNX file: it still loads.
    Segmenter::from_path(&dir, &options()).unwrap();

    std::fs::remove_file(&nnef).unwrap();
    let err = load_error(&dir);
    assert!(err.contains(NNEF_FILE), "{err}");

    std::fs::write(dir.join(MANIFEST_FILE), b"{\"package_version\": 1").unwrap();
    let err = load_error(&dir);
    assert!(err.contains(MANIFEST_FILE), "{err}");
    assert!(!Package::is_package(tmp.path()));
}

#[test]
fn a_package_is_never_written_over_an_existing_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"keep me").unwrap();
    let err = package::write(&dir, MODEL, "demo.onnx", "f32").unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(dir.join("notes.txt")).unwrap(), b"keep me");
    // Not an ONNX model: refused before anything is written.
    let fresh = tmp.path().join("fresh");
    assert!(package::write(&fresh, b"not onnx", "junk.onnx", "f32").is_err());
    assert!(!fresh.exists());
}
