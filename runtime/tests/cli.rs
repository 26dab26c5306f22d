//! The `medseg` binary as a user runs it. (Having an integration test here also makes
//! `cargo test` build the binary, which the cross-crate tests in tests/ drive.)

use std::process::Command;

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

#[test]
fn help_shows_an_example_for_each_command() {
    for cmd in ["segment", "eval", "demo", "info"] {
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
