use std::path::PathBuf;

use anyhow::Context;

use medseg_trainer::backend;
use medseg_trainer::data::{evenly_spaced, load_split};
use medseg_trainer::generalization::transforms::{DomainTransforms, Quantiles, measure, predict};
use medseg_trainer::train::RunDir;

/// How far a run's spatial transformer (`--stn`) moves its input: the affine transform its
/// localisation net predicts on each test slice of every domain (or the chosen ones), as
/// scale, rotation, shear and translation quantiles, with the share of the image and of the
/// labelled foreground left outside the transformed frame (background once the logits are
/// warped back). Prints a table and writes RUN/stn_transforms.json.
///
/// Example: medseg-train stn-report --run runs/generalization/sas-s1 --data phantom/
#[derive(clap::Args)]
pub struct Args {
    /// The run folder (its best checkpoint is measured); it must have been trained with --stn.
    #[arg(long)]
    run: PathBuf,
    /// The data set whose test splits are measured.
    #[arg(long)]
    data: PathBuf,
    /// Domains to measure, comma separated [default: every domain with a test split].
    #[arg(long, value_delimiter = ',')]
    domains: Option<Vec<String>>,
    /// At most this many test slices per domain, evenly spaced (0 = all).
    #[arg(long, default_value_t = 100)]
    max_images: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = RunDir::new(&args.run);
    let cfg = dir.config()?;
    anyhow::ensure!(
        cfg.architecture.stn.is_some(),
        "{} was trained without a spatial transformer (--stn): there is no transform to measure",
        args.run.display()
    );
    let ds = dir.matching_dataset(&cfg, &args.data)?;
    let domains: Vec<String> = match &args.domains {
        Some(d) => d.clone(),
        None => ds
            .domains
            .iter()
            .filter(|(_, splits)| splits.contains_key("test"))
            .map(|(name, _)| name.clone())
            .collect(),
    };
    anyhow::ensure!(
        !domains.is_empty(),
        "{} has no domain with a test split",
        args.data.display()
    );
    let device = backend::device();
    let model = dir.load_model::<backend::Inner>("best", &device)?;
    let input = &cfg.input;
    let shape = [input.channels, input.height, input.width];
    let mut report = Vec::new();
    for domain in &domains {
        let samples = evenly_spaced(ds.split(Some(domain), "test")?, args.max_images);
        let split = load_split(
            &samples,
            ds.classes.len(),
            input,
            false,
            &format!("{domain} test"),
        )
        .with_context(|| format!("loading the {domain} test split of {}", args.data.display()))?;
        let thetas = predict(&model, &split.inputs, shape, &device)
            .context("the checkpoint holds no spatial transformer")?;
        let sizes: Vec<_> = thetas
            .iter()
            .zip(&split.targets)
            .map(|(t, m)| measure(*t, Some((m, [input.height, input.width]))))
            .collect();
        report.push(DomainTransforms::of(domain, &sizes));
    }
    println!("{}", table(&report));
    let path = args.run.join("stn_transforms.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Median [p10, p90] of each measure, one row per domain (Markdown).
fn table(report: &[DomainTransforms]) -> String {
    let cell = |q: &Option<Quantiles>, digits: usize| match q {
        Some(q) => format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            q.median,
            q.p10,
            q.p90,
            d = digits
        ),
        None => "-".into(),
    };
    let mut out = String::from(
        "| domain | slices | scale | rotation (deg) | anisotropy | translation | coverage | \
         foreground lost (mean) |\n| - | - | - | - | - | - | - | - |\n",
    );
    for d in report {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            d.domain,
            d.images,
            cell(&d.scale, 3),
            cell(&d.rotation_deg, 1),
            cell(&d.anisotropy, 3),
            cell(&d.translation, 3),
            cell(&d.coverage, 3),
            d.mean_foreground_lost
                .map_or_else(|| "-".into(), |v| format!("{:.4}", v))
        ));
    }
    out
}
