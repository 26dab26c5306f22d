use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};

use medseg_trainer::synth::{SynthConfig, generate};

/// Generate the lumbar CT phantom data set (domains xh, zs-big, zs-small; split by patient).
///
/// Example: medseg-train synth --out phantom/ --scale 0.1 --seed 7
#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    out: PathBuf,
    /// Multiplies every split's patient count (1.0 = the full JMedSeg-sized set).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} slices [{elapsed}<{eta}]")
            .expect("valid template"),
    );
    let summary = generate(
        &args.out,
        &SynthConfig {
            scale: args.scale,
            seed: args.seed,
        },
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    println!(
        "wrote {} slices of {} patients to {}",
        summary.slices,
        summary.patients,
        args.out.display()
    );
    Ok(())
}
