//! `medseg`: segment images with an exported model, score it on a data set, serve a web page
//! that segments dropped images, or run the demo.

mod bench;
mod cleanup_args;
mod demo;
mod eval;
mod model_arg;
mod segment;
mod serve;
mod summary;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medseg",
    version,
    about = "Bedside medical image segmentation (tract runtime)"
)]
struct Cli {
    /// More logging (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Segment(segment::Args),
    Eval(eval::Args),
    Demo(demo::Args),
    Bench(bench::Args),
    Serve(serve::Args),
    /// Print a model's card (architecture, input, classes, metrics, training data).
    ///
    /// Example: medseg info --model unet.onnx
    Info {
        #[arg(long)]
        model: std::path::PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    medseg_runtime::logging::init(cli.verbose);
    // Decoders and model builders that panic on corrupt input are caught and named as
    // errors; this keeps their panic messages off stderr meanwhile.
    medseg_runtime::panic_guard::install_hook();
    let result = match cli.command {
        Command::Segment(args) => segment::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Info { model } => info(&model),
    };
    medseg_runtime::logging::exit_on_error(result);
}

fn info(model: &std::path::Path) -> anyhow::Result<()> {
    let seg = medseg_runtime::Segmenter::from_file(model)?;
    println!("{}", serde_json::to_string_pretty(&seg.card)?);
    Ok(())
}
