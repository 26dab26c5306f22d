//! 2.5D input as a user runs it: `import --stack-neighbours` writes each slice between its
//! neighbours (RGB) and marks the data set, `train --init-from` widens a single-slice run to
//! read them (3 channels by default on such a data set), and the exported model is scored by
//! `medseg eval` on the stacked slices; reading them as one channel is refused, and so is
//! giving the 2.5D model single gray slices.

use std::path::Path;

use image::GrayImage;
use medseg_e2e::{fails_mentioning, run, text};

/// Four patients of four 32x32 slices: a bright square (the label), placed per patient, whose
/// brightness changes from slice to slice, so neighbours differ.
fn write_volume_slices(root: &Path) {
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    let mut manifest = String::from("file,subject,slice_index\n");
    for p in 1..=4 {
        for k in 0..4u32 {
            let name = format!("p0{p}_{k}.png");
            let inside = |x: u32, y: u32| (6 + p..18 + p).contains(&x) && (10..22).contains(&y);
            let img = GrayImage::from_fn(32, 32, |x, y| {
                image::Luma([if inside(x, y) { 120 + 30 * k as u8 } else { 40 }])
            });
            let mask = GrayImage::from_fn(32, 32, |x, y| image::Luma([inside(x, y) as u8]));
            img.save(root.join("images").join(&name)).unwrap();
            mask.save(root.join("masks").join(&name)).unwrap();
            manifest.push_str(&format!("{name},p0{p},{k}\n"));
        }
    }
    std::fs::write(root.join("slices.csv"), manifest).unwrap();
}

#[test]
fn a_single_slice_run_widens_to_stacked_neighbours_and_is_scored() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let src = dir.path().join("src");
    write_volume_slices(&src);
    let import = |out: &str, extra: &[&str]| {
        let (images, masks, manifest) = (p("src/images"), p("src/masks"), p("src/slices.csv"));
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
            "--split",
            "train=p01-p02",
            "--split",
            "val=p03",
            "--split",
            "test=p04",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        run("medseg-train", &args, true);
    };
    let (gray, stacked) = (p("gray"), p("stacked"));
    import(&gray, &[]);
    import(&stacked, &["--stack-neighbours"]);
    // Slice 1 of a patient sits between slices 0 and 2: red, green, blue.
    let rgb = image::open(dir.path().join("stacked/images/p01_1.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(rgb.get_pixel(10, 12).0, [120, 150, 180]);

    let tiny = [
        "--image-size",
        "32",
        "--depth",
        "2",
        "--base-width",
        "4",
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--crop-size",
        "0",
    ];
    let (single, wide) = (p("single"), p("wide"));
    let args = ["train", "--data", &gray, "--out", &single];
    run("medseg-train", &[&args[..], &tiny].concat(), true);
    // The stacked data set says so in splits.json: 3 channels is the default, 1 is refused.
    let splits = std::fs::read_to_string(dir.path().join("stacked/splits.json")).unwrap();
    assert!(splits.contains("\"stacked_neighbours\": true"), "{splits}");
    let plain = std::fs::read_to_string(dir.path().join("gray/splits.json")).unwrap();
    assert!(!plain.contains("stacked_neighbours"), "{plain}");
    let gray_read = [
        "train",
        "--data",
        &stacked,
        "--out",
        &p("one"),
        "--channels",
        "1",
    ];
    fails_mentioning(
        "medseg-train",
        &[&gray_read[..], &tiny].concat(),
        "--channels 3",
    );
    let args = [
        "train",
        "--data",
        &stacked,
        "--out",
        &wide,
        "--init-from",
        &single,
    ];
    let out = run("medseg-train", &[&args[..], &tiny].concat(), true);
    assert!(text(&out).contains("epoch 1/1"), "{}", text(&out));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("wide/run.json")).unwrap()).unwrap();
    assert_eq!(cfg["input"]["channels"], 3);
    assert_eq!(cfg["architecture"]["in_channels"], 3);

    // Only 1 -> 3 widens; other channel counts are refused by name.
    let back = [
        "train",
        "--data",
        &gray,
        "--out",
        &p("back"),
        "--init-from",
        &wide,
    ];
    fails_mentioning("medseg-train", &[&back[..], &tiny].concat(), "--channels");
    let two = [
        "train",
        "--data",
        &stacked,
        "--out",
        &p("two"),
        "--channels",
        "2",
    ];
    fails_mentioning("medseg-train", &[&two[..], &tiny].concat(), "--channels 2");

    let model = p("wide.onnx");
    run(
        "medseg-train",
        &["export", "--run", &wide, "--out", &model],
        true,
    );
    let eval = run(
        "medseg",
        &[
            "eval", "--model", &model, "--data", &stacked, "--split", "test", "--json",
        ],
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(summary["images"], 4, "{summary}");
    // A single-slice model is not scored on stacked slices (it would read them blended).
    let single_model = p("single.onnx");
    run(
        "medseg-train",
        &["export", "--run", &single, "--out", &single_model],
        true,
    );
    fails_mentioning(
        "medseg",
        &[
            "eval",
            "--model",
            &single_model,
            "--data",
            &stacked,
            "--split",
            "test",
        ],
        "stacked between their neighbours",
    );
    // The 2.5D model's card says what its three channels are: it is not scored on single
    // slices, and `medseg segment` refuses a gray slice (naming it) but takes a stacked one.
    fails_mentioning(
        "medseg",
        &[
            "eval", "--model", &model, "--data", &gray, "--split", "test",
        ],
        "--stack-neighbours",
    );
    let (gray_slice, stacked_slice) = (p("gray/images/p04_1.png"), p("stacked/images/p04_2.png"));
    let out = run(
        "medseg",
        &[
            "segment",
            "--model",
            &model,
            &gray_slice,
            &stacked_slice,
            "--out",
            &p("seg"),
        ],
        false,
    );
    let log = text(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains(&format!("image {gray_slice}")) && log.contains("single gray slice"),
        "{log}"
    );
    assert!(log.contains("wrote 1 result(s)"), "{log}");
}
