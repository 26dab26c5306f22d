//! The `medseg` binary as a user runs it. (Having an integration test here also makes
//! `cargo test` build the binary, which the cross-crate tests in tests/ drive.)

use std::process::Command;

mod common;

use common::medseg;

#[test]
fn demo_runs_without_files_and_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cancellous_bone") && stdout.contains("model card: Dice"),
        "{stdout}"
    );
    for sample in medseg_runtime::demo::SAMPLES {
        for suffix in ["_mask.png", "_overlay.png", ".json"] {
            let path = dir.path().join(format!("{}{suffix}", sample.name));
            assert!(path.is_file(), "{} missing", path.display());
        }
    }
}

/// `medseg segment` on the first demo slice (as slice.png) with `extra` flags, asserting it
/// succeeds; returns the folder (kept alive), the output folder and stdout.
fn segment_demo_slice(extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("slice.png");
    std::fs::write(&image, medseg_runtime::demo::SAMPLES[0].image).unwrap();
    let out = dir.path().join("out");
    let mut args = vec!["segment", image.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    let (ok, stdout, stderr) = medseg(&args);
    assert!(ok, "{stdout}{stderr}");
    (dir, out, stdout)
}

#[test]
fn segment_without_a_model_uses_the_embedded_one() {
    let (_dir, out, stdout) = segment_demo_slice(&[]);
    // The demo slice holds a vertebral body: the embedded model must find some of it.
    assert!(stdout.contains("cancellous_bone"), "{stdout}");
    let mask = image::open(out.join("slice_mask.png"))
        .unwrap()
        .into_luma8();
    assert!(mask.pixels().any(|p| p.0[0] == 1), "empty mask");
}

#[test]
fn bench_times_every_stage_the_cold_start_and_each_operator() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let (ok, stdout, stderr) = medseg(&[
        "bench",
        "--runs",
        "1",
        "--cold-starts",
        "1",
        "--threads",
        "1",
        "--profile",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for stage in [
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "write outputs",
    ] {
        let ms = report["stage_ms"][stage].as_f64().unwrap();
        assert!(ms > 0.0, "{stage}: {ms}");
    }
    assert!(report["cold_start_ms"].as_f64().unwrap() > 0.0);
    // Every node of the plan is timed, under the names of the operators tract runs.
    let ops: f64 = report["profile_ms"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!(ops > 0.0 && report["profile_ms"].as_object().unwrap().len() > 3);
    assert!(stdout.contains("cold start"), "{stdout}");
}

/// `--device cuda` where no GPU can be used (no driver here; or a build without the `cuda`
/// feature) stops before anything runs, says why, and points back to the CPU. On a machine
/// with a GPU and a `cuda` build it segments instead, and must find the same bone.
#[test]
fn device_cuda_without_a_gpu_says_why_and_offers_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("slice.png");
    std::fs::write(&image, medseg_runtime::demo::SAMPLES[0].image).unwrap();
    let out = dir.path().join("out");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        image.to_str().unwrap(),
        "--device",
        "cuda",
        "--out",
        out.to_str().unwrap(),
    ]);
    if ok {
        assert!(stdout.contains("cancellous_bone"), "{stdout}");
        return;
    }
    assert!(
        stderr.contains("--device cuda")
            && stderr.contains("--device cpu")
            && (stderr.contains("no usable CUDA GPU")
                || stderr.contains("without the `cuda` feature")),
        "{stderr}"
    );
    assert!(!out.join("slice_mask.png").exists(), "wrote a mask anyway");
}

#[test]
fn an_unknown_tract_knob_is_refused_by_name() {
    let (ok, _, stderr) = medseg(&[
        "bench",
        "--runs",
        "1",
        "--cold-starts",
        "0",
        "--tract-knob",
        "TRACT_NO_SUCH_KNOB=1",
    ]);
    assert!(!ok);
    assert!(stderr.contains("TRACT_NO_SUCH_KNOB"), "{stderr}");
}

#[test]
fn help_shows_an_example_for_each_command() {
    for cmd in ["segment", "eval", "demo", "info", "bench"] {
        let out = Command::new(env!("CARGO_BIN_EXE_medseg"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("Example: medseg"),
            "{cmd} --help lacks an example:\n{help}"
        );
    }
}

#[test]
fn probability_maps_agree_with_the_mask() {
    let (_dir, out, _) = segment_demo_slice(&["--probabilities"]);
    let mask = image::open(out.join("slice_mask.png"))
        .unwrap()
        .into_luma8();
    let prob = image::open(out.join("slice_prob_cancellous_bone.png"))
        .unwrap()
        .into_luma8();
    assert_eq!(prob.dimensions(), mask.dimensions());
    // Two classes: the mask is where the class's probability passes one half.
    let disagree = mask
        .pixels()
        .zip(prob.pixels())
        .filter(|(m, p)| (m.0[0] == 1) != (p.0[0] >= 128))
        .count();
    assert!(disagree <= 5, "{disagree} pixels disagree");
    assert!(prob.pixels().any(|p| p.0[0] > 240) && prob.pixels().any(|p| p.0[0] < 15));
}
