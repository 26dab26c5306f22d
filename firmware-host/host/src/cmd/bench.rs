use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use medseg_host::bench::{bench_images, raw_time, run_case, table};

/// Measure throughput and latency of the serial path over a paced pty pair, clean and with
/// corrupted bytes; prints a Markdown table (docs/DEVICE_LINK.md).
#[derive(Parser)]
#[command(
    after_help = "Example:\n  medseg-host bench-link --bauds 115200,921600 --corruption 0,0.01 --images 5"
)]
pub struct Args {
    /// Line rates to measure.
    #[arg(long, value_delimiter = ',', default_value = "115200,921600")]
    bauds: Vec<u32>,
    /// Fractions of bytes with a flipped bit, in both directions.
    #[arg(long, value_delimiter = ',', default_value = "0,0.01")]
    corruption: Vec<f64>,
    /// Measured images per configuration (after one warm-up image).
    #[arg(long, default_value_t = 5)]
    images: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Exported model; the embedded demo model if omitted.
    #[arg(long)]
    model: Option<PathBuf>,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if let Some(c) = a.corruption.iter().find(|c| !(0.0..=0.5).contains(*c)) {
        anyhow::bail!("--corruption {c} is out of range: a fraction from 0 to 0.5");
    }
    if let Some(b) = a.bauds.iter().find(|&&b| !(1200..=12_000_000).contains(&b)) {
        anyhow::bail!("--bauds {b} is out of range: 1200 to 12000000");
    }
    let model = Arc::new(super::load_model(a.model.as_deref())?);
    let mut results = Vec::new();
    for img in bench_images()? {
        for &baud in &a.bauds {
            for &c in &a.corruption {
                eprintln!(
                    "{} ({} bytes, {:.2} s at line rate) at {baud} baud, {:.1}% corrupted ...",
                    img.name,
                    img.bytes.len(),
                    raw_time(img.bytes.len(), baud).as_secs_f64(),
                    c * 100.0
                );
                results.push(run_case(model.clone(), &img, baud, c, a.images, a.seed)?);
            }
        }
    }
    print!("{}", table(&results));
    Ok(())
}
