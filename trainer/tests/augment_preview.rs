//! `medseg-train augment-preview`: a grid of augmented samples from a generated phantom, the
//! pipeline written back as TOML, and clear errors for a bad pipeline.

use std::process::Command;

fn medseg_train(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn augment_preview_draws_a_grid_and_writes_the_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let data = data.to_str().unwrap();
    assert!(
        medseg_train(&["synth", "--out", data, "--scale", "0.02"])
            .status
            .success()
    );
    let png = tmp.path().join("preview.png");
    let toml = tmp.path().join("sas.toml");
    let out = medseg_train(&[
        "augment-preview",
        "--data",
        data,
        "--augment",
        "sas",
        "--samples",
        "2",
        "--variants",
        "3",
        "--image-size",
        "64",
        "--out",
        png.to_str().unwrap(),
        "--toml",
        toml.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let grid = image::open(&png).unwrap();
    // Four 64 px columns (the sample, three variants); two rows of a label band and a panel.
    assert_eq!(grid.width(), 4 * 64);
    assert!(grid.height() > 2 * 64, "{}", grid.height());
    // The TOML it wrote is a pipeline `train --augment FILE` takes, and the same one again.
    let again = tmp.path().join("again.png");
    let toml_arg = toml.to_str().unwrap();
    let out = medseg_train(&[
        "augment-preview",
        "--data",
        data,
        "--augment",
        toml_arg,
        "--samples",
        "2",
        "--variants",
        "3",
        "--image-size",
        "64",
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        image::open(&again).unwrap().to_rgb8().into_raw()[..],
        grid.to_rgb8().into_raw()[..],
        "same pipeline, same seed: the same picture"
    );

    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[[steps]]\nkind = \"blur\"\nsigma = [3.0, 1.0]\n").unwrap();
    let out = medseg_train(&[
        "augment-preview",
        "--data",
        data,
        "--augment",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("bad.toml") && err.contains("sigma"), "{err}");
    let out = medseg_train(&["augment-preview", "--data", data, "--samples", "0"]);
    assert!(!out.status.success());
}
