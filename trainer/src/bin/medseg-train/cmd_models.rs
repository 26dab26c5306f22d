//! `medseg-train models`: the model zoo's table, with sizes counted from each export graph.

use medseg_models::Architecture;
use medseg_trainer::backend;

/// List every architecture: family, paper, parameters and GFLOPs (one 1x1x256x256 image,
/// counted from the export graph), the input size multiple, the options with defaults, and
/// which torchvision checkpoint `train --pretrained-backbone` takes.
///
/// Example: medseg-train models --json
#[derive(clap::Args)]
pub struct Args {
    /// One JSON object per architecture instead of a table.
    #[arg(long)]
    json: bool,
    /// Input side for the GFLOPs count.
    #[arg(long, default_value_t = 256)]
    size: usize,
}

#[derive(serde::Serialize)]
struct Row {
    name: &'static str,
    family: &'static str,
    paper: &'static str,
    parameters: usize,
    gflops: f64,
    size_multiple: usize,
    options: serde_json::Map<String, serde_json::Value>,
    /// The torchvision architecture `train --pretrained-backbone FILE` takes for the default
    /// options (`resnet34`, `vgg16`, `deep-stem (deep-base) resnet101`), if the
    /// member has such a backbone.
    pretrained_backbone: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dev = backend::device();
    let mut rows = Vec::new();
    for entry in Architecture::TABLE {
        let arch = Architecture::by_name(entry.name, 1, 2)?;
        let m = arch.size_multiple();
        let side = args.size.div_ceil(m) * m;
        let graph = arch
            .init::<backend::Inner>(&dev)?
            .export([1, 1, side, side]);
        rows.push(Row {
            name: entry.name,
            family: entry.family,
            paper: entry.paper,
            parameters: graph.parameter_count(),
            gflops: 2.0 * graph.multiply_accumulates() as f64 / 1e9,
            size_multiple: m,
            options: arch.options().into_iter().collect(),
            pretrained_backbone: arch.torchvision_backbone().map(|(_, kind)| {
                let name = kind.torchvision_name();
                if kind.deep_stem() {
                    format!("deep-stem (deep-base) {name}")
                } else {
                    name
                }
            }),
        });
    }
    if args.json {
        for r in &rows {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    println!(
        "{:<18} {:<10} {:>12} {:>8} {:>5}  options (defaults)",
        "name", "family", "parameters", "GFLOPs", "mult"
    );
    for r in &rows {
        let opts: Vec<String> = r.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<18} {:<10} {:>12} {:>8.2} {:>5}  {}",
            r.name,
            r.family,
            r.parameters,
            r.gflops,
            r.size_multiple,
            opts.join(" ")
        );
        println!("{:<18} {}", "", r.paper);
        if let Some(tv) = &r.pretrained_backbone {
            println!("{:<18} --pretrained-backbone takes a {tv} checkpoint", "");
        }
    }
    Ok(())
}
