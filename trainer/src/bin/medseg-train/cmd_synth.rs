use std::path::PathBuf;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use medseg_trainer::derived_domain::{
    DerivedSpec, DerivedSummary, DomainMaker, write_derived_domain,
};
use medseg_trainer::phone::PhoneCapture;
use medseg_trainer::phone::dataset::PhoneDomain;
use medseg_trainer::scanner_shift::ScannerShift;
use medseg_trainer::synth::{SynthConfig, generate};

/// Generate the lumbar CT phantom data set (domains xh, zs-big, zs-small; split by patient),
/// or add a derived test domain to an existing data set: phone photos of its test slices, or
/// its test slices as other scanners would show them.
///
/// Examples:
///   medseg-train synth --out phantom/ --scale 0.1 --seed 7
///   medseg-train synth --domain phone --from phantom/ --source-domain xh --severity 1.0
///   medseg-train synth --domain scanners --from mri/
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
    /// Phone domain: strength of every capture effect: 0 = nearly a screenshot, 1 = like the
    /// reference phone photo, 2 = harsh.
    #[arg(long, requires = "from", allow_negative_numbers = true)]
    severity: Option<f32>,
    /// Replace the domain if the data set already has it.
    #[arg(long, requires = "from")]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DomainArg {
    /// Phone photos of the slices shown on a monitor (docs/PHONE_CAPTURE.md).
    Phone,
    /// Another tissue weighting: gray levels folded about a level (T1 against T2).
    ScannerContrast,
    /// Another field of view: anatomy zoomed out or cropped.
    ScannerFov,
    /// A coarser acquisition matrix: 2-3x down-sampled and interpolated back.
    ScannerResolution,
    /// A lower signal-to-noise ratio: Rician noise.
    ScannerNoise,
    /// The four scanner domains above, one after the other.
    Scanners,
}

impl DomainArg {
    fn shifts(self) -> Vec<ScannerShift> {
        match self {
            DomainArg::Phone => vec![],
            DomainArg::ScannerContrast => vec![ScannerShift::Contrast],
            DomainArg::ScannerFov => vec![ScannerShift::Fov],
            DomainArg::ScannerResolution => vec![ScannerShift::Resolution],
            DomainArg::ScannerNoise => vec![ScannerShift::Noise],
            DomainArg::Scanners => ScannerShift::ALL.to_vec(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match (&args.out, &args.from) {
        (Some(out), None) => run_phantom(out.clone(), &args),
        (None, Some(from)) => run_derived(from.clone(), &args),
        // clap's group and conflicts make this unreachable from the command line.
        _ => bail!("give either --out DIR (phantom) or --domain KIND --from DIR"),
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

fn run_derived(from: PathBuf, args: &Args) -> anyhow::Result<()> {
    let kind = args
        .domain
        .context("--from needs --domain (phone, scanner-contrast, ..., scanners)")?;
    let spec = DerivedSpec {
        root: from.clone(),
        source_domain: args.source_domain.clone(),
        seed: args.seed,
        force: args.force,
    };
    if kind == DomainArg::Phone {
        let severity = args.severity.unwrap_or(1.0);
        if !(severity.is_finite() && (0.0..=4.0).contains(&severity)) {
            bail!("--severity {severity}: expected 0 (nearly a screenshot) to 4; 1 is the default");
        }
        let settings = PhoneCapture::with_severity(severity);
        let summary = write_domain(&spec, &PhoneDomain(&settings))?;
        report(
            &from,
            "phone",
            &summary,
            &format!("severity {severity}, seed {}", args.seed),
        );
        return Ok(());
    }
    if args.severity.is_some() {
        bail!("--severity is a setting of --domain phone; the scanner domains have none");
    }
    for shift in kind.shifts() {
        let summary = write_domain(&spec, &shift)?;
        report(
            &from,
            shift.domain(),
            &summary,
            &format!("{}; seed {}", shift.describe(), args.seed),
        );
    }
    Ok(())
}

fn write_domain(spec: &DerivedSpec, maker: &dyn DomainMaker) -> anyhow::Result<DerivedSummary> {
    let bar = progress("images");
    let summary = write_derived_domain(spec, maker, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })
    .with_context(|| {
        format!(
            "writing the {} domain into {}",
            maker.domain(),
            spec.root.display()
        )
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

fn report(from: &std::path::Path, domain: &str, summary: &DerivedSummary, how: &str) {
    println!(
        "wrote domain '{domain}' to {}: {} test images of {} patients, made from '{}' ({how})",
        from.display(),
        summary.images,
        summary.patients,
        summary.source_domain,
    );
    if summary.spacing_dropped {
        println!(
            "note: slices.csv gives the source slices' pixel spacing; '{domain}' images are left \
             out of it (a photo of a screen has no known mm per pixel, another field of view \
             another one) and scored in pixels"
        );
    }
}
