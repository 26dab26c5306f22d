//! `medseg-train`: make phantom data, train a model, export it for the bedside runtime.

mod cmd_augment_preview;
mod cmd_bench_generalization;
mod cmd_bench_losses;
mod cmd_export;
mod cmd_import;
mod cmd_models;
mod cmd_pretrain;
mod cmd_probe;
mod cmd_stn_report;
mod cmd_synth;
mod cmd_train;
mod cmd_zoo_bench;
mod cmd_zoo_timing;
mod typed_flags;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medseg-train",
    version,
    about = "Train and export medical image segmentation models (Burn)"
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
    Synth(cmd_synth::Args),
    Train(cmd_train::Args),
    Pretrain(cmd_pretrain::Args),
    Probe(cmd_probe::Args),
    StnReport(cmd_stn_report::Args),
    AugmentPreview(cmd_augment_preview::Args),
    Export(cmd_export::Args),
    // Boxed: the import flags (every format's) make this variant far larger than the rest.
    Import(Box<cmd_import::Args>),
    BenchLosses(cmd_bench_losses::Args),
    BenchGeneralization(Box<cmd_bench_generalization::Args>),
    ZooBench(Box<cmd_zoo_bench::Args>),
    Models(cmd_models::Args),
}

fn main() {
    // Before any tensor is allocated: large freed blocks stay in the heap (malloc-tuning says why).
    medseg_malloc_tuning::keep_freed_memory();
    // The matches as well as the parsed flags: `train --resume` and `import` need to know
    // which flags were typed, not only their values.
    let mut command = with_defaults(
        Cli::command(),
        "bench-generalization",
        &cmd_bench_generalization::BENCH_DEFAULTS,
    );
    command = with_defaults(command, "zoo-bench", &cmd_zoo_bench::BENCH_DEFAULTS);
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let typed = |name: &str| {
        command
            .find_subcommand(name)
            .zip(matches.subcommand_matches(name))
    };
    medseg_runtime::logging::init(cli.verbose);
    medseg_runtime::panic_guard::install_hook();
    let result = match cli.command {
        Command::Synth(a) => cmd_synth::run(a),
        Command::Train(a) => typed("train")
            .map_or(Ok(()), |(c, m)| {
                typed_flags::refuse_ignored_by_resume(c, m, cmd_train::READ_ON_RESUME)?;
                if m.get_flag("stn") {
                    Ok(())
                } else {
                    typed_flags::refuse(c, m, &["stn_penalty"], "needs --stn")
                }
            })
            .and_then(|()| cmd_train::run(a)),
        Command::Pretrain(a) => cmd_pretrain::run(a),
        Command::Probe(a) => cmd_probe::run(a),
        Command::StnReport(a) => cmd_stn_report::run(a),
        Command::AugmentPreview(a) => cmd_augment_preview::run(a),
        Command::Export(a) => cmd_export::run(a),
        Command::Import(a) => typed("import")
            .map_or(Ok(()), |(c, m)| typed_flags::refuse_other_formats(c, m))
            .and_then(|()| cmd_import::run(*a)),
        Command::BenchLosses(a) => cmd_bench_losses::run(a),
        Command::BenchGeneralization(a) => cmd_bench_generalization::run(*a),
        Command::ZooBench(a) => typed("zoo-bench")
            .map_or(Ok(()), |(c, m)| {
                typed_flags::refuse(
                    c,
                    m,
                    cmd_zoo_bench::SET_PER_MODEL,
                    "zoo-bench sets it per model",
                )
                .and_then(|()| {
                    typed_flags::refuse(
                        c,
                        m,
                        &["pretrained_backbone"],
                        "a checkpoint fits one backbone, not every member of the zoo: train \
                         the members that take it with `train --pretrained-backbone`",
                    )
                })
                .and_then(|()| {
                    if !a.timings_only {
                        return Ok(());
                    }
                    typed_flags::refuse(
                        c,
                        m,
                        &["epochs", "max_steps_per_epoch", "max_val_images"],
                        "--timings-only runs two epochs of --timing-steps steps",
                    )
                })
            })
            .and_then(|()| cmd_zoo_bench::run(*a)),
        Command::Models(a) => cmd_models::run(a),
    };
    medseg_runtime::logging::exit_on_error(result);
}

/// `command` with `defaults` (flag id, value) set on subcommand `sub`: the benches share
/// `train`'s flags but not all of its defaults. Typed flags still win; `--help` shows them.
fn with_defaults(
    command: clap::Command,
    sub: &str,
    defaults: &[(&'static str, &'static str)],
) -> clap::Command {
    command.mut_subcommand(sub, |mut sub| {
        for &(id, value) in defaults {
            sub = sub.mut_arg(id, |a| a.default_value(value));
        }
        sub.mut_arg("epochs", |a| {
            a.long_help("Passes over the training split, for every run")
        })
    })
}

/// The command line as typed, with the program's name instead of its path on this machine
/// (what reports and model cards record).
pub(crate) fn typed_command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}
