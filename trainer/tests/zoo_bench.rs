//! `medseg-train zoo-bench` end to end at a toy size: two architectures (one with side
//! outputs) trained with one budget, exported, scored on every test domain and timed; the
//! report and figure written; a second invocation reusing every row; a different budget in
//! the same folder refused; flags the bench sets per model refused.

use std::path::Path;
use std::process::{Command, Output};

fn medseg_train(args: &[&str]) -> (Output, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_models_are_trained_scored_timed_reported_and_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let runs = tmp.path().join("runs");
    let report = tmp.path().join("ZOO.md");
    let (out, text) = medseg_train(&["synth", "--out", s(&data), "--scale", "0.02"]);
    assert!(out.status.success(), "{text}");
    let mut args = vec![
        "zoo-bench",
        "--data",
        s(&data),
        "--out",
        s(&runs),
        "--report",
        s(&report),
        "--models",
        "unet,unetpp",
        "--width-scale",
        "0.0625",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--crop-size",
        "0",
        "--max-val-images",
        "2",
        "--max-test-images",
        "2",
        "--latency-runs",
        "2",
    ];
    let (out, text) = medseg_train(&args);
    assert!(out.status.success(), "{text}");
    for f in [
        "unet.onnx",
        "unetpp.onnx",
        "unet.json",
        "unetpp.json",
        "zoo.png",
    ] {
        let path = if f.ends_with(".png") {
            tmp.path().join(f)
        } else {
            runs.join(f)
        };
        assert!(path.is_file(), "{f} missing\n{text}");
    }
    let md = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "| unet | unet |",
        "| unetpp | unet |",
        "xh Dice",
        "zs-big Dice",
        "zs-small Dice",
        "![Test Dice on xh",
        "Beside JMedSeg's published numbers",
        "4 training images per model",
    ] {
        assert!(md.contains(needle), "{needle} not in\n{md}");
    }
    let row: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.join("unetpp.json")).unwrap()).unwrap();
    assert!(row["latency_ms"].as_f64().unwrap() > 0.0, "{row}");
    assert!(
        row["train_images_per_second"].as_f64().unwrap() > 0.0,
        "{row}"
    );
    assert_eq!(row["train_images"], 4, "{row}");
    // unet at a sixteenth of JMedSeg's base width 64 (the bench's paper options): 4.
    let unet: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.join("unet.json")).unwrap()).unwrap();
    assert_eq!(unet["options"]["base_width"], 4, "{unet}");
    #[cfg(target_os = "linux")]
    assert!(row["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{row}");

    // Everything reused the second time.
    let (out, text) = medseg_train(&args);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("unet: reusing")
            && text.contains("unetpp: reusing")
            && !text.contains("training unet"),
        "{text}"
    );
    // Another budget in the same folder would make an unequal table.
    let steps = args
        .iter()
        .position(|a| *a == "--max-steps-per-epoch")
        .unwrap();
    args[steps + 1] = "3";
    let (out, text) = medseg_train(&args);
    assert!(
        !out.status.success() && text.contains("another --out"),
        "{text}"
    );
    // The bench sets the architecture per model.
    let (out, text) = medseg_train(&[
        "zoo-bench",
        "--data",
        s(&data),
        "--model",
        "unet",
        "--out",
        s(&runs),
    ]);
    assert!(!out.status.success() && text.contains("--model"), "{text}");
    let (out, text) = medseg_train(&[
        "zoo-bench",
        "--data",
        s(&data),
        "--models",
        "nonet",
        "--out",
        s(&runs),
    ]);
    assert!(!out.status.success() && text.contains("nonet"), "{text}");
}
