//! medseg-host: serial bridge between capture rigs, device screens and the runtime.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medseg-host",
    version,
    about = "Serial bridge: capture rigs send images, the host segments them and answers; \
             device screens are drawn with embedded-graphics",
    after_help = "Examples:\n  \
      medseg-host serve --port /dev/ttyUSB0 --baud 921600 --model unet.onnx\n  \
      medseg-host rig --port /dev/ttyUSB1 --baud 921600 --images photos/\n  \
      medseg-host list-ports\n  \
      medseg-host bench-link"
)]
struct Cli {
    /// More logs on stderr: -v info, -vv debug.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Serve(cmd::serve::Args),
    Rig(cmd::rig::Args),
    ListPorts(cmd::ports::Args),
    Screenshot(cmd::screenshot::Args),
    BenchLink(cmd::bench::Args),
}

fn main() {
    let cli = Cli::parse();
    medseg_runtime::logging::init(cli.verbose);
    let result = match cli.command {
        Command::Serve(a) => cmd::serve::run(a),
        Command::Rig(a) => cmd::rig::run(a),
        Command::ListPorts(a) => cmd::ports::run(a),
        Command::Screenshot(a) => cmd::screenshot::run(a),
        Command::BenchLink(a) => cmd::bench::run(a),
    };
    medseg_runtime::logging::exit_on_error(result);
}
