use std::path::PathBuf;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use medseg_trainer::phone::PhoneCapture;
use medseg_trainer::phone::dataset::{DOMAIN, PhoneDomainSpec, write_phone_domain};
use medseg_trainer::synth::{SynthConfig, generate};

/// Generate the lumbar CT phantom data set (domains xh, zs-big, zs-small; split by patient),
/// or add a derived test domain to an existing data set.
///
/// Examples:
///   medseg-train synth --out phantom/ --scale 0.1 --seed 7
///   medseg-train synth --domain phone --from phantom/ --source-domain xh --severity 1.0
#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("mode").required(true).args(["out", "from"])
))]
pub struct Args {
    /// Phantom mode: the folder to write the generated data set to.
    #[arg(long, conflicts_with_all = ["from", "domain", "source_domain", "severity", "force"])]
    out: Option<PathBuf>,
    /// Phantom mode: multiplies every split's patient count (1.0 = the full JMedSeg-sized set).
    #[arg(long, default_value_t = 1.0, conflicts_with = "from")]
    scale: f64,
    /// Seed of the phantom, or of the derived domain's captures.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Derived-domain mode: the domain to add to the data set given by --from.
    #[arg(long, value_enum, requires = "from")]
    domain: Option<DomainArg>,
    /// Derived-domain mode: the data set (folder layout, splits.json) whose test split is
    /// captured and into which the new domain is written.
    #[arg(long, requires = "domain", value_name = "DIR")]
    from: Option<PathBuf>,
    /// The domain whose test split is captured (default: the data set's training domain).
    #[arg(long, requires = "from")]
    source_domain: Option<String>,
    /// Strength of every capture effect: 0 = nearly a screenshot, 1 = like the reference
    /// phone photo, 2 = harsh.
    #[arg(long, requires = "from", allow_negative_numbers = true)]
    severity: Option<f32>,
    /// Replace the domain if the data set already has it.
    #[arg(long, requires = "from")]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DomainArg {
    /// Phone photos of the slices shown on a monitor (docs/PHONE_CAPTURE.md).
    Phone,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match (&args.out, &args.from) {
        (Some(out), None) => run_phantom(out.clone(), &args),
        (None, Some(from)) => run_phone(from.clone(), &args),
        // clap's group and conflicts make this unreachable from the command line.
        _ => bail!("give either --out DIR (phantom) or --domain phone --from DIR"),
    }
}

fn progress(unit: &str) -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}} {unit} [{{elapsed}}<{{eta}}]"
        ))
        .expect("valid template"),
    )
}

fn run_phantom(out: PathBuf, args: &Args) -> anyhow::Result<()> {
    let bar = progress("slices");
    let summary = generate(
        &out,
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
        out.display()
    );
    Ok(())
}

fn run_phone(from: PathBuf, args: &Args) -> anyhow::Result<()> {
    let severity = args.severity.unwrap_or(1.0);
    if !(severity.is_finite() && (0.0..=4.0).contains(&severity)) {
        bail!("--severity {severity}: expected 0 (nearly a screenshot) to 4; 1 is the default");
    }
    let spec = PhoneDomainSpec {
        root: from.clone(),
        source_domain: args.source_domain.clone(),
        seed: args.seed,
        force: args.force,
        settings: PhoneCapture::with_severity(severity),
    };
    let bar = progress("images");
    let summary = write_phone_domain(&spec, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| format!("writing the {DOMAIN} domain into {}", from.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote domain '{DOMAIN}' to {}: {} test images of {} patients, captured from '{}' (severity {severity}, seed {})",
        from.display(),
        summary.images,
        summary.patients,
        summary.source_domain,
        args.seed
    );
    if summary.spacing_dropped {
        println!(
            "note: slices.csv gives the source slices' pixel spacing; a photo of a screen has \
             none, so '{DOMAIN}' images are left out of it and scored in pixels"
        );
    }
    Ok(())
}
