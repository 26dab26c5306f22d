use std::path::PathBuf;

use medseg_trainer::backend;
use medseg_trainer::pretrain::PretrainConfig;
use medseg_trainer::pretrain::probe::{ProbeData, probe_run};
use medseg_trainer::train::RunDir;

use crate::cmd_pretrain::write_probe;

/// Did a run's encoder learn something? A k-NN probe of its pooled features on a labelled
/// task (is the slice's labelled area above the median?) against a random initialisation of
/// the same architecture: the check `pretrain --probe-data` runs, for a finished run
/// (pre-trained or trained). Writes RUN/probe.json. See docs/SSL.md.
///
/// Example: medseg-train probe --run runs/ssl --data phantom/ --max-images 200
#[derive(clap::Args)]
pub struct Args {
    /// The run folder (its best checkpoint is probed).
    #[arg(long)]
    run: PathBuf,
    /// A labelled data set: its train split is the reference, its test split the queries.
    #[arg(long)]
    data: PathBuf,
    /// Domain of --data [default: its first with a train split].
    #[arg(long)]
    domain: Option<String>,
    /// The tap the features come from [default: the pre-training's, else "encoder"].
    #[arg(long)]
    layer: Option<String>,
    /// Neighbours in the k-NN vote.
    #[arg(long, default_value_t = 5)]
    k: usize,
    /// At most this many reference and query images each, spread evenly (0 = all).
    #[arg(long, default_value_t = 400)]
    max_images: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.k >= 1, "--k {}: expected at least 1", args.k);
    let dir = RunDir::new(&args.run);
    let layer = match &args.layer {
        Some(l) => l.clone(),
        None => PretrainConfig::read(&args.run)
            .map(|c| c.layer)
            .unwrap_or_else(|| medseg_models::network::ENCODER_TAP.to_string()),
    };
    let probe = ProbeData {
        data: &args.data,
        domain: args.domain.as_deref(),
        max_images: args.max_images,
        k: args.k,
    };
    let device = backend::device();
    let result = probe_run::<backend::Inner>(&dir, &layer, &probe, &device)?;
    write_probe(&args.run, &result)
}
