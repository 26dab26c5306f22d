//! Log set-up shared by the medseg binaries: warnings by default, `-v` info, `-vv` debug,
//! always on stderr so stdout stays machine-readable (`--json`).

pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
}

/// Ends a binary: on error, the chain on one line (`error: a: b: c`) and exit status 1. Not
/// anyhow's Debug form, which adds a stack backtrace whenever RUST_BACKTRACE is set in the
/// user's environment.
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
