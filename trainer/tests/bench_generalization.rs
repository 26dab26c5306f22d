//! `medseg-train bench-generalization` end to end at a toy size: the two methods that start
//! from a pre-training (SSL, and SAS with augmentation and STN too), each exported and scored
//! on every test domain, the report and figure written, and a second invocation reusing the
//! finished runs; then `stn-report` on the SAS run.

use std::path::Path;
use std::process::Command;

fn medseg_train(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "medseg-train {args:?}\n{text}");
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn ssl_and_sas_train_from_their_pretraining_and_are_scored_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let runs = tmp.path().join("runs");
    let report = tmp.path().join("G.md");
    let photo = tmp.path().join("photo.png");
    image::GrayImage::from_fn(40, 40, |x, y| image::Luma([((x * 5 + y * 3) % 256) as u8]))
        .save(&photo)
        .unwrap();
    medseg_train(&["synth", "--out", s(&data), "--scale", "0.02"]);
    let args = [
        "bench-generalization",
        "--data",
        s(&data),
        "--out",
        s(&runs),
        "--report",
        s(&report),
        "--photo",
        s(&photo),
        "--photo-crop",
        "0,0,32,32",
        "--methods",
        "ssl,sas",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "1",
        "--pretrain-epochs",
        "1",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--crop-size",
        "0",
        "--model-opt",
        "base_width=4",
        "--model-opt",
        "depth=2",
        "--max-val-images",
        "2",
        "--max-test-images",
        "2",
        "--stn-penalty",
        "0.5",
    ];
    medseg_train(&args);
    // The transformer's penalty reaches the methods that have one.
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs.join("sas-s1/run.json")).unwrap()).unwrap();
    assert_eq!(cfg["stn_penalty"], 0.5, "{cfg}");
    for f in ["ssl-s1.onnx", "sas-s1.onnx", "pretrain-s1/pretrain.json"] {
        assert!(runs.join(f).is_file(), "{f} missing");
    }
    let md = std::fs::read_to_string(&report).unwrap();
    for needle in [
        "| + SSL |",
        "| SAS (all three) |",
        "phone",
        "zs-big",
        "g.png",
    ] {
        assert!(md.contains(needle), "{needle} not in the report:\n{md}");
    }
    assert!(tmp.path().join("g.png").is_file(), "figure missing");
    // Run again: every finished run is reused, nothing trained anew.
    let again = medseg_train(&args);
    assert!(
        again.contains("ssl-s1: reusing") && again.contains("sas-s1: reusing"),
        "{again}"
    );
    assert!(!again.contains("contrastive pre-training"), "{again}");

    // The transformer's moves on every test domain (SAS has one, SSL alone has none).
    let sas = runs.join("sas-s1");
    let text = medseg_train(&[
        "stn-report",
        "--run",
        s(&sas),
        "--data",
        s(&data),
        "--max-images",
        "2",
    ]);
    assert!(text.contains("| xh | 2 |"), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sas.join("stn_transforms.json")).unwrap()).unwrap();
    let domains: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["domain"].as_str().unwrap())
        .collect();
    for d in ["phone", "xh", "zs-big", "zs-small"] {
        assert!(domains.contains(&d), "{d} not in {domains:?}");
    }
    let scale = json[0]["scale"]["median"].as_f64().unwrap();
    assert!(scale.is_finite() && scale > 0.0, "{json}");
    let out = Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args([
            "stn-report",
            "--run",
            s(&runs.join("ssl-s1")),
            "--data",
            s(&data),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("without a spatial transformer"),
        "{err}"
    );
}
