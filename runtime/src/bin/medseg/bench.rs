//! `medseg bench`: where the runtime's time goes, stage by stage, and how long a process takes
//! from its start to its first mask.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use image::DynamicImage;
use serde::Serialize;

use medseg_runtime::demo::SAMPLES;
use medseg_runtime::image_io::load_image;
use medseg_runtime::outputs::{Source, write_outputs};
use medseg_runtime::postprocess::logits_to_prediction;
use medseg_runtime::{LoadOptions, Segmentation, Segmenter};

use crate::model_arg::ModelArg;
use crate::segment::gray_for_gray_models;

/// Time the pipeline per stage (decode, preprocess, inference, postprocess, write outputs),
/// the cold start of a `medseg segment` process, and optionally tract's time per operator.
///
/// Example: medseg bench --model unet.onnx --runs 20 --profile slice.png
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Images to run through the pipeline [default: the embedded demo slices].
    inputs: Vec<PathBuf>,
    /// Timed passes over the images, after one warm-up pass.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Threads for tract's matrix products [default: every core].
    #[arg(long)]
    threads: Option<usize>,
    /// A tract knob applied while the model is optimized, NAME=VALUE (repeatable), e.g.
    /// TRACT_DISABLE_DIRECT_SPATIAL=true.
    #[arg(long = "tract-knob", value_parser = parse_knob)]
    tract_knobs: Vec<(String, String)>,
    /// Times to load and optimize the model (reading the file, checksums, tract's
    /// optimization); the median is reported.
    #[arg(long, default_value_t = 5)]
    loads: usize,
    /// `medseg segment` processes to start and time, on the first image (0: skip).
    #[arg(long, default_value_t = 5)]
    cold_starts: usize,
    /// Also time every node of tract's optimized plan and print the median per operator.
    #[arg(long)]
    profile: bool,
    /// Write the measurements as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_knob(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

const STAGES: [&str; 5] = [
    "decode",
    "preprocess",
    "inference",
    "postprocess",
    "write outputs",
];

#[derive(Serialize)]
struct Report {
    model: String,
    /// Where the model ran (cpu, cuda).
    device: String,
    /// On a GPU: its logits against the CPU's on the same images.
    against_cpu: Option<Agreement>,
    images: usize,
    runs: usize,
    threads: usize,
    tract_knobs: BTreeMap<String, String>,
    /// Seconds to load and optimize the model in this process (median of `loads`).
    load_s: f64,
    loads: usize,
    /// Stage -> median milliseconds per image over the timed runs.
    stage_ms: BTreeMap<String, f64>,
    pipeline_ms: f64,
    images_per_s: f64,
    /// Median wall time of a whole `medseg segment` process on one image.
    cold_start_ms: Option<f64>,
    /// Operator -> median milliseconds per inference (summed over its nodes).
    profile_ms: BTreeMap<String, f64>,
    /// Node of tract's optimized plan -> its operator and median milliseconds per inference.
    profile_nodes_ms: BTreeMap<String, (String, f64)>,
}

/// How far a device's results are from the CPU's, over all images.
#[derive(Serialize)]
struct Agreement {
    /// Largest |difference| of a logit, over the CPU logits' range.
    max_logit_difference: f64,
    /// Share of pixels given another class.
    pixels_classed_differently: f64,
}

/// Runs every input on the CPU too and compares the logits with `seg`'s.
fn compare_with_cpu(
    args: &Args,
    options: &LoadOptions,
    seg: &Segmenter,
    inputs: &[Input],
) -> anyhow::Result<Agreement> {
    let cpu = ModelArg {
        model: args.model.model.clone(),
        device: medseg_runtime::Device::Cpu,
        no_quality_gate: true,
    }
    .load_with(options)?;
    let classes = seg.card.classes.len();
    let (mut worst, mut differing, mut pixels) = (0f64, 0usize, 0usize);
    for input in inputs {
        let img = gray_for_gray_models(input.decode()?, &seg.card.input);
        let x = seg.model_input(&img)?;
        let (a, b) = (cpu.logits(x.clone())?, seg.logits(x)?);
        let (lo, hi) = a
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let range = f64::from((hi - lo).max(1e-6));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        worst = worst.max(f64::from(diff) / range);
        let plane = a.len() / classes;
        let argmax = |l: &[f32], p: usize| {
            (0..classes)
                .max_by(|&i, &j| l[i * plane + p].total_cmp(&l[j * plane + p]))
                .unwrap_or(0)
        };
        differing += (0..plane)
            .filter(|&p| argmax(&a, p) != argmax(&b, p))
            .count();
        pixels += plane;
    }
    Ok(Agreement {
        max_logit_difference: worst,
        pixels_classed_differently: differing as f64 / pixels.max(1) as f64,
    })
}

/// One input: its name, and how to read it (a file, or embedded PNG bytes).
enum Input {
    File(PathBuf),
    Embedded(&'static str, &'static [u8]),
}

impl Input {
    fn decode(&self) -> anyhow::Result<DynamicImage> {
        Ok(match self {
            Self::File(p) => load_image(p)?,
            Self::Embedded(name, bytes) => image::load_from_memory(bytes)
                .with_context(|| format!("decoding the embedded slice {name}"))?,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let mut options = LoadOptions {
        tract_knobs: args.tract_knobs.clone(),
        ..LoadOptions::default()
    };
    if let Some(t) = args.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        options.threads = t;
    }
    anyhow::ensure!(args.loads > 0, "--loads must be at least 1");
    let mut load_times = Vec::with_capacity(args.loads);
    let mut loaded = None;
    for _ in 0..args.loads {
        let start = Instant::now();
        let seg = args.model.load_with(&options)?;
        load_times.push(start.elapsed().as_secs_f64());
        loaded = Some(seg);
    }
    let load_s = median(&load_times);
    let seg = loaded.context("loaded at least once")?;
    let inputs: Vec<Input> = if args.inputs.is_empty() {
        SAMPLES
            .iter()
            .map(|s| Input::Embedded(s.name, s.image))
            .collect()
    } else {
        for p in &args.inputs {
            if !p.is_file() {
                bail!("input {} is not an image file", p.display());
            }
        }
        args.inputs.iter().cloned().map(Input::File).collect()
    };
    let scratch = tempfile::tempdir().context("creating a scratch folder for the outputs")?;
    let against_cpu = match args.model.device {
        medseg_runtime::Device::Cpu => None,
        _ => Some(compare_with_cpu(&args, &options, &seg, &inputs)?),
    };

    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut per_op: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut per_node: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
    for run in 0..=args.runs {
        for (i, input) in inputs.iter().enumerate() {
            let t = stage_times(&seg, input, i, scratch.path())?;
            if run == 0 {
                continue; // warm-up: caches, lazy allocations
            }
            for (stage, s) in STAGES.iter().zip(t) {
                times.entry(stage).or_default().push(s);
            }
            if args.profile {
                let img = gray_for_gray_models(input.decode()?, &seg.card.input);
                let mut sums: BTreeMap<String, f64> = BTreeMap::new();
                for n in seg.profile(seg.model_input(&img)?)? {
                    *sums.entry(n.op.clone()).or_default() += n.seconds;
                    let entry = per_node.entry(n.node).or_insert_with(|| (n.op, Vec::new()));
                    entry.1.push(n.seconds);
                }
                for (op, s) in sums {
                    per_op.entry(op).or_default().push(s);
                }
            }
        }
    }
    let stage_ms: BTreeMap<String, f64> = STAGES
        .iter()
        .map(|s| (s.to_string(), 1e3 * median(&times[s])))
        .collect();
    let pipeline_ms: f64 = stage_ms.values().sum();
    let cold_start_ms = if args.cold_starts > 0 {
        Some(cold_start(&args, &inputs[0], scratch.path())?)
    } else {
        None
    };
    let report = Report {
        model: args.model.describe(),
        device: format!("{:?}", args.model.device).to_lowercase(),
        against_cpu,
        images: inputs.len(),
        runs: args.runs,
        threads: options.threads,
        tract_knobs: args.tract_knobs.iter().cloned().collect(),
        load_s,
        loads: args.loads,
        pipeline_ms,
        images_per_s: 1e3 / pipeline_ms,
        cold_start_ms,
        profile_ms: per_op
            .into_iter()
            .map(|(op, v)| (op, 1e3 * median(&v)))
            .collect(),
        profile_nodes_ms: per_node
            .into_iter()
            .map(|(node, (op, v))| (node, (op, 1e3 * median(&v))))
            .collect(),
        stage_ms,
    };
    print_report(&report, &seg);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Seconds of each of [`STAGES`] for one image, in order.
fn stage_times(
    seg: &Segmenter,
    input: &Input,
    index: usize,
    out: &Path,
) -> anyhow::Result<[f64; 5]> {
    let spec = &seg.card.input;
    let t0 = Instant::now();
    let img = gray_for_gray_models(input.decode()?, spec);
    let t1 = Instant::now();
    let x = seg.model_input(&img)?;
    let t2 = Instant::now();
    let logits = seg.logits(x)?;
    let t3 = Instant::now();
    let prediction = logits_to_prediction(
        &logits,
        seg.card.classes.len(),
        (spec.width, spec.height),
        (img.width() as usize, img.height() as usize),
        &seg.cleanup(),
    );
    let t4 = Instant::now();
    let segmentation = Segmentation {
        prediction,
        inference_ms: (t3 - t2).as_secs_f64() * 1e3,
        quality: None,
    };
    write_outputs(
        out,
        &format!("bench{index}"),
        &Source {
            name: "bench",
            spacing_mm: None,
        },
        &spec.displayed(&img),
        &segmentation,
        &seg.card.classes,
    )?;
    let t5 = Instant::now();
    Ok([t0, t1, t2, t3, t4]
        .iter()
        .zip([t1, t2, t3, t4, t5])
        .map(|(a, b)| (b - *a).as_secs_f64())
        .collect::<Vec<_>>()
        .try_into()
        .expect("five stages"))
}

/// Median wall time of `medseg segment` on one image, process start to exit (its first and
/// only mask written), over `--cold-starts` processes.
fn cold_start(args: &Args, input: &Input, scratch: &Path) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("finding the medseg executable")?;
    let image = match input {
        Input::File(p) => p.clone(),
        Input::Embedded(name, bytes) => {
            let p = scratch.join(format!("{name}.png"));
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
            p
        }
    };
    let out = scratch.join("cold");
    let mut walls = Vec::new();
    for _ in 0..args.cold_starts {
        let mut cmd = Command::new(&exe);
        cmd.arg("segment").arg(&image).arg("--out").arg(&out);
        if let Some(m) = &args.model.model {
            cmd.arg("--model").arg(m);
        }
        if args.model.device == medseg_runtime::Device::Cuda {
            cmd.arg("--device").arg("cuda");
        }
        let start = Instant::now();
        let result = cmd
            .output()
            .with_context(|| format!("starting {}", exe.display()))?;
        walls.push(start.elapsed().as_secs_f64());
        if !result.status.success() {
            bail!(
                "the timed `medseg segment` failed: {}",
                String::from_utf8_lossy(&result.stderr).trim()
            );
        }
    }
    Ok(1e3 * median(&walls))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn print_report(r: &Report, seg: &Segmenter) {
    println!(
        "model: {} ({} x {} x {}, weights {}), {} image(s) x {} run(s), {} thread(s){}",
        r.model,
        seg.card.input.channels,
        seg.card.input.height,
        seg.card.input.width,
        seg.card.quantization,
        r.images,
        r.runs,
        r.threads,
        if r.tract_knobs.is_empty() {
            String::new()
        } else {
            format!(
                ", knobs {}",
                r.tract_knobs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    println!(
        "load and optimize: {:.0} ms (median of {}), on the {}",
        1e3 * r.load_s,
        r.loads,
        r.device
    );
    if let Some(a) = &r.against_cpu {
        println!(
            "against the CPU: logits within {:.2e} of their range, {:.4}% of pixels classed differently",
            a.max_logit_difference,
            100.0 * a.pixels_classed_differently
        );
    }
    println!("{:<16} {:>10} {:>10}", "stage", "median ms", "images/s");
    for stage in STAGES {
        let ms = r.stage_ms[stage];
        println!("{stage:<16} {ms:>10.2} {:>10.1}", 1e3 / ms);
    }
    println!(
        "{:<16} {:>10.2} {:>10.1}",
        "pipeline", r.pipeline_ms, r.images_per_s
    );
    if let Some(ms) = r.cold_start_ms {
        println!("cold start (process start to first mask written): {ms:.0} ms");
    }
    if !r.profile_ms.is_empty() {
        let total: f64 = r.profile_ms.values().sum();
        let mut ops: Vec<_> = r.profile_ms.iter().collect();
        ops.sort_by(|a, b| b.1.total_cmp(a.1));
        println!("tract operators (median ms per inference, summed over their nodes):");
        for (op, ms) in ops {
            println!("  {op:<32} {ms:>9.2} {:>6.1}%", 100.0 * ms / total);
        }
    }
}
