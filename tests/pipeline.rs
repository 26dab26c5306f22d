//! The whole path a user takes: synth -> train -> export -> segment -> eval, on a tiny scale.

use medseg_e2e::{fails_mentioning, run, text};

#[test]
fn synth_train_export_segment_eval() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let (data, runp, model, seg) = (p("data"), p("run"), p("model.onnx"), p("seg"));

    run(
        "medseg-train",
        &["synth", "--out", &data, "--scale", "0.02", "--seed", "3"],
        true,
    );
    let splits: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/splits.json")).unwrap())
            .unwrap();
    assert!(
        !splits["domains"]["xh"]["train"]
            .as_object()
            .unwrap()
            .is_empty()
    );

    let tiny = [
        "--batch-size",
        "2",
        "--max-steps-per-epoch",
        "2",
        "--image-size",
        "64",
        "--depth",
        "2",
        "--max-val-images",
        "4",
    ];
    let first = [
        "train",
        "--data",
        &data,
        "--out",
        &runp,
        "--epochs",
        "2",
        "--crop-size",
        "32",
        "--base-width",
        "4",
    ];
    let out = run("medseg-train", &[&first[..], &tiny].concat(), true);
    assert!(text(&out).contains("epoch 2/2"), "{}", text(&out));
    for f in [
        "run.json",
        "state.json",
        "best.bin",
        "last.bin",
        "optimizer.bin",
        "log.csv",
        "curves.png",
    ] {
        assert!(dir.path().join("run").join(f).is_file(), "run/{f} missing");
    }
    let log = std::fs::read_to_string(dir.path().join("run/log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");

    // A finished run is not overwritten; --resume with all epochs done is a no-op.
    let again = run(
        "medseg-train",
        &["train", "--data", &data, "--out", &runp],
        false,
    );
    assert!(
        !again.status.success() && text(&again).contains("--resume"),
        "{}",
        text(&again)
    );
    // --resume reads the data set from run.json; with every epoch done it only reports.
    run("medseg-train", &["train", "--out", &runp, "--resume"], true);
    // Settings the run's run.json overrides are refused by name rather than ignored.
    let ignored = run(
        "medseg-train",
        &[
            "train", "--out", &runp, "--resume", "--lr", "1e-4", "--rotate", "5",
        ],
        false,
    );
    assert!(
        !ignored.status.success() && text(&ignored).contains("--lr, --rotate would be ignored"),
        "{}",
        text(&ignored)
    );
    let log_after = std::fs::read_to_string(dir.path().join("run/log.csv")).unwrap();
    assert_eq!(log_after, log, "a finished run is left as it was");

    // Fine-tuning: another run starts from this one's best checkpoint, on whole images with
    // geometric and MR intensity augmentation; a different architecture is refused by name.
    let tuned = p("tuned");
    let mut args = vec![
        "train",
        "--data",
        &data,
        "--out",
        &tuned,
        "--init-from",
        &runp,
        "--epochs",
        "1",
        "--crop-size",
        "0",
        "--rotate",
        "10",
        "--zoom",
        "0.1",
        "--shift",
        "0.05",
        "--gamma",
        "0.5",
        "--blur",
        "1.5",
    ];
    let wider = [args.clone(), vec!["--base-width", "8"], tiny.to_vec()].concat();
    fails_mentioning("medseg-train", &wider, "--init-from");
    let bad_zoom = p("bad-zoom");
    fails_mentioning(
        "medseg-train",
        &[
            "train", "--data", &data, "--out", &bad_zoom, "--zoom", "1.5",
        ],
        "--zoom 1.5",
    );
    fails_mentioning(
        "medseg-train",
        &["train", "--data", &data, "--out", &bad_zoom, "--blur", "9"],
        "--blur 9",
    );
    fails_mentioning(
        "medseg-train",
        &[
            "train",
            "--data",
            &data,
            "--out",
            &bad_zoom,
            "--stn-penalty",
            "2",
        ],
        "--stn-penalty: needs --stn",
    );
    args.extend(["--base-width", "4"]);
    args.extend(tiny);
    run("medseg-train", &args, true);
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("tuned/run.json")).unwrap()).unwrap();
    assert!(cfg["init_from"].as_str().unwrap().ends_with("run"), "{cfg}");
    // The old flags became steps of the stored pipeline.
    let step = |kind: &str| {
        cfg["augment"]["steps"]
            .as_array()
            .and_then(|steps| steps.iter().find(|s| s["kind"] == kind).cloned())
            .unwrap_or_else(|| panic!("no {kind} step in {}", cfg["augment"]))
    };
    assert_eq!(step("affine")["rotate_degrees"][1], 10.0);
    assert_eq!(step("gamma")["exponent"][1], 1.5);
    assert_eq!(step("blur")["sigma"][1], 1.5);
    assert!(cfg["crop_size"].is_null());

    // A time budget already spent after the first epoch ends the run there, with fixed-size
    // batches recorded; a budget that is not a positive number is refused by name.
    let budgeted = p("budgeted");
    let budget_args = [
        "train",
        "--data",
        &data,
        "--out",
        &budgeted,
        "--epochs",
        "5",
        "--crop-size",
        "32",
        "--base-width",
        "4",
        "--fixed-batch",
        "--time-budget",
        "0.0001",
    ];
    let out = run("medseg-train", &[&budget_args[..], &tiny].concat(), true);
    assert!(
        text(&out).contains("stopped after epoch 1 of 5"),
        "{}",
        text(&out)
    );
    let log = std::fs::read_to_string(dir.path().join("budgeted/log.csv")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("budgeted/run.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["fixed_batch"], true);
    assert_eq!(cfg["time_budget_minutes"], 0.0001);
    fails_mentioning(
        "medseg-train",
        &[
            "train",
            "--data",
            &data,
            "--out",
            &bad_zoom,
            "--time-budget",
            "0",
        ],
        "--time-budget 0",
    );

    // The card carries a clean-up; the runtime applies it unless told otherwise.
    let out = run(
        "medseg-train",
        &[
            "export",
            "--run",
            &runp,
            "--out",
            &model,
            "--min-component",
            "4",
            "--fill-holes",
        ],
        true,
    );
    assert!(text(&out).contains("parity"), "{}", text(&out));
    assert!(text(&out).contains("xh/test: Dice"), "{}", text(&out));
    // The quality gate is calibrated on the validation split and scored on each test split.
    assert!(
        text(&out).contains("quality gate (the 99th percentile")
            && text(&out).contains("xh/test: the gate flags"),
        "{}",
        text(&out)
    );
    // An existing model is not replaced without --force, and stays as it was.
    let exported = std::fs::read(&model).unwrap();
    fails_mentioning(
        "medseg-train",
        &["export", "--run", &runp, "--out", &model],
        "pass --force to replace it",
    );
    assert_eq!(std::fs::read(&model).unwrap(), exported);

    let info = run("medseg", &["info", "--model", &model], true);
    let card: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(card["classes"][1], "cancellous_bone");
    assert_eq!(card["input"]["width"], 64);
    assert_eq!(card["cleanup"]["min_component_px"], 4, "{card}");
    assert_eq!(card["cleanup"]["fill_holes"], true, "{card}");
    assert!(
        card["metrics"]["xh/test"]["dice_cancellous_bone"].is_number(),
        "{card}"
    );
    assert!(card["quality_gate"]["entropy_max"].is_number(), "{card}");
    assert!(
        card["metrics"]["xh/test"]["gate_bad_images"].is_number(),
        "{card}"
    );

    let image = dir.path().join("data/images/xh_test_p000_s000.png");
    let segmented = run(
        "medseg",
        &[
            "segment",
            "--model",
            &model,
            image.to_str().unwrap(),
            "--out",
            &seg,
        ],
        true,
    );
    assert!(
        text(&segmented).contains("clean-up: islands under 4 px dropped, holes filled"),
        "{}",
        text(&segmented)
    );
    let mask = image::open(dir.path().join("seg/xh_test_p000_s000_mask.png")).unwrap();
    assert_eq!(
        (mask.width(), mask.height()),
        (512, 512),
        "mask comes back at the input's size"
    );
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("seg/xh_test_p000_s000.json")).unwrap(),
    )
    .unwrap();
    assert!(report["classes"][0]["area_pixels"].is_number());
    assert!(report["quality"]["reliable"].is_boolean(), "{report}");
    // A blank white picture (glare over the whole screen) is nothing the model was trained
    // on: the gate says so, in the JSON and on the console.
    let white = dir.path().join("white.png");
    image::GrayImage::from_pixel(64, 64, image::Luma([255u8]))
        .save(&white)
        .unwrap();
    let out = run(
        "medseg",
        &[
            "segment",
            "--model",
            &model,
            white.to_str().unwrap(),
            "--out",
            &seg,
        ],
        true,
    );
    assert!(text(&out).contains("UNRELIABLE ("), "{}", text(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("seg/white.json")).unwrap()).unwrap();
    assert_eq!(report["quality"]["reliable"], false, "{report}");
    let reasons = report["quality"]["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().is_some_and(|r| r.contains("saturated share"))),
        "{report}"
    );
    assert!(
        dir.path()
            .join("seg/xh_test_p000_s000_overlay.png")
            .is_file()
    );

    // A device package of the fine-tuned run, int8 calibrated on that run's own augmentation:
    // the runtime reads it (NNEF form) after checking the checksums.
    let pkg = p("pkg");
    let out = run(
        "medseg-train",
        &[
            "export",
            "--run",
            &tuned,
            "--package",
            &pkg,
            "--precision",
            "int8",
            "--calibrate",
            "2",
            "--calibrate-augmented",
            "--sensitivity-limit",
            "0",
            "--no-eval",
        ],
        true,
    );
    assert!(text(&out).contains("model.nnef.tar"), "{}", text(&out));
    let info = run("medseg", &["info", "--model", &pkg], true);
    let card: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(card["calibration"]["augmented"], true, "{card}");
    assert_eq!(card["calibration"]["images"], 2, "{card}");
    run(
        "medseg",
        &[
            "segment",
            "--model",
            &pkg,
            image.to_str().unwrap(),
            "--out",
            &p("pkg-seg"),
        ],
        true,
    );
    // --force replaces a package (once the new one is complete, leaving no scratch folder),
    // never a folder that is not one.
    run(
        "medseg-train",
        &[
            "export",
            "--run",
            &tuned,
            "--package",
            &pkg,
            "--force",
            "--no-eval",
        ],
        true,
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("pkg/card.json")).unwrap()).unwrap();
    assert_eq!(manifest["precision"], "f32", "{manifest}");
    let scratch: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".medseg-"))
        .collect();
    assert!(scratch.is_empty(), "scratch folders left: {scratch:?}");
    fails_mentioning(
        "medseg-train",
        &[
            "export",
            "--run",
            &tuned,
            "--package",
            &data,
            "--force",
            "--no-eval",
        ],
        "not a medseg package",
    );
    assert!(dir.path().join("data/splits.json").is_file());

    let eval = run(
        "medseg",
        &[
            "eval", "--model", &model, "--data", &data, "--split", "test", "--domain", "zs-big",
            "--json",
        ],
        true,
    );
    let summary: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert!(summary["images"].as_u64().unwrap() >= 1);
    assert_eq!(summary["per_class"][1]["name"], "cancellous_bone");
    // Per-patient Dice: in the JSON always, in the table with --per-patient.
    let patients = summary["per_patient"].as_array().unwrap();
    assert!(!patients.is_empty(), "{summary}");
    let images: u64 = patients.iter().map(|p| p["images"].as_u64().unwrap()).sum();
    assert_eq!(images, summary["images"].as_u64().unwrap());
    assert_eq!(patients[0]["dice"].as_array().unwrap().len(), 2);
    let table = run(
        "medseg",
        &[
            "eval",
            "--model",
            &model,
            "--data",
            &data,
            "--split",
            "test",
            "--domain",
            "zs-big",
            "--per-patient",
            "--no-cleanup",
        ],
        true,
    );
    assert!(text(&table).contains("clean-up: none"), "{}", text(&table));
    let first = patients[0]["patient"].as_str().unwrap();
    assert!(
        text(&table).contains("Dice per patient") && text(&table).contains(first),
        "{}",
        text(&table)
    );
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let broken = dir.path().join("broken.png");
    std::fs::write(&broken, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::write(&model, b"garbage").unwrap();
    let (model, broken) = (model.to_str().unwrap(), broken.to_str().unwrap());

    fails_mentioning(
        "medseg",
        &["segment", "--model", model, broken],
        "model.onnx",
    );
    fails_mentioning(
        "medseg",
        &["eval", "--model", "none.onnx", "--data", d],
        "none.onnx",
    );
    fails_mentioning(
        "medseg",
        &[
            "segment",
            "--model",
            model,
            broken,
            "--no-cleanup",
            "--fill-holes",
        ],
        "--no-cleanup",
    );
    fails_mentioning(
        "medseg-train",
        &["train", "--data", d, "--out", "x"],
        "splits.json",
    );
    fails_mentioning(
        "medseg-train",
        &["synth", "--out", d, "--scale", "-1"],
        "-1",
    );
}
