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
