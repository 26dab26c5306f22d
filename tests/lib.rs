//! Helpers for the cross-crate end-to-end tests in this folder, which drive the built
//! binaries (`cargo test --workspace` builds them before any test runs).

use std::path::PathBuf;
use std::process::{Command, Output};

/// Path of a workspace binary next to the running test executable's `deps/` folder.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` so the binaries are built",
        path.display()
    );
    path
}

/// Runs a workspace binary and returns its output; panics with both streams on failure
/// unless `expect_success` is false.
pub fn run(name: &str, args: &[&str], expect_success: bool) -> Output {
    let out = Command::new(binary(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    if expect_success && !out.status.success() {
        panic!(
            "{name} {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a workspace binary that must fail, with `needle` (a file or value name) in its message.
pub fn fails_mentioning(name: &str, args: &[&str], needle: &str) {
    let out = run(name, args, false);
    assert!(
        !out.status.success() && text(&out).contains(needle),
        "{name} {} should fail naming '{needle}':\n{}",
        args.join(" "),
        text(&out)
    );
}
