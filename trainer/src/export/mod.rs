//! `medseg-train export`: checkpoint -> ONNX (BatchNorm folded) with its model card, checked
//! against Burn in tract, scored on the test splits, written atomically.

pub mod cuda_form;
pub mod onnx;
mod onnx_ops;
pub mod parity;
pub mod quantize;
pub mod test_scores;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;

use medseg_models::{Architecture, Graph};
use medseg_runtime::card::{CARD_VERSION, ModelCard, TrainingInfo};
use medseg_runtime::dataset::Dataset;
use medseg_runtime::evaluate::{GateScore, score_gate};
use medseg_runtime::image_io::load_image;
use medseg_runtime::metrics::SplitSummary;
use medseg_runtime::onnx::pb;
use medseg_runtime::quality::QualityGate;
use medseg_runtime::{Cleanup, InputSpec};
use medseg_runtime::{Segmenter, onnx as onnx_io};

use crate::data::{evenly_spaced, load_split};
use crate::train::{RunConfig, RunDir, foreground_means, validate::score_split};

/// The number format of the written model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// Weights and activations in f32.
    F32,
    /// Weights stored in half precision (half the file), computed in f32.
    F16,
    /// Weights stored as int8 per channel (a quarter of the file), computed in f32.
    Int8Weights,
    /// Static post-training quantization: int8 weights per channel and uint8 activations
    /// with ranges calibrated on training images, in ONNX's QDQ form.
    Int8,
}

impl Precision {
    /// How the translation stores weights (int8 quantizes the f32 graph afterwards).
    fn weight_format(self) -> onnx::WeightFormat {
        match self {
            Self::F32 | Self::Int8 => onnx::WeightFormat::F32,
            Self::F16 => onnx::WeightFormat::F16,
            Self::Int8Weights => onnx::WeightFormat::Int8,
        }
    }
}

/// Which runtime the graph's operators are chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Target {
    /// The operators as the network describes them (tract on the CPU, onnxruntime).
    #[default]
    Cpu,
    /// Rewritten so that tract-cuda runs them on the GPU (see `cuda_form`); the same
    /// results, and it still runs on the CPU.
    Cuda,
}

impl Target {
    /// The card's name for it ("" for the plain form, which older cards have).
    pub fn card_name(self) -> &'static str {
        match self {
            Self::Cpu => "",
            Self::Cuda => "cuda",
        }
    }
}

/// Static int8 settings (used with [`Precision::Int8`]).
#[derive(Debug, Clone)]
pub struct Int8Options {
    /// Training images to calibrate on, evenly spaced over the training split.
    pub calibration_images: usize,
    /// Pass each calibration image once through the run's own training augmentation (for a
    /// model trained on phone-capture augmentation: ranges that cover what it will see).
    pub augmented: bool,
    pub quantize: quantize::QuantizeOptions,
}

impl Default for Int8Options {
    fn default() -> Self {
        Self {
            calibration_images: 32,
            augmented: false,
            quantize: quantize::QuantizeOptions {
                calibration: quantize::Calibration::Percentile,
                keep_float: Vec::new(),
                sensitivity_limit: Some(DEFAULT_SENSITIVITY_LIMIT),
            },
        }
    }
}

/// The int8 model may class at most this share of the parity images' pixels differently
/// from Burn's f32 model: beyond it, something is broken, not merely rounded.
pub const INT8_MASK_LIMIT: f64 = 0.05;

/// The int8 model's foreground must agree with the f32 model's to at least this Dice on the
/// calibration images.
pub const INT8_FOREGROUND_AGREEMENT: f64 = 0.95;

/// A convolution that alone moves more than this share of the calibration images' pixels
/// to another class stays in f32 by default.
pub const DEFAULT_SENSITIVITY_LIMIT: f64 = 0.002;

pub struct ExportOptions {
    pub checkpoint: String,
    pub precision: Precision,
    /// Operator forms for this runtime (the parity check then compares the rewritten graph).
    pub target: Target,
    /// Calibrate the card's quality gate on this many validation images, evenly spaced (0:
    /// no gate); with `evaluate`, the card also records how the gate sorts each test split.
    pub gate_images: usize,
    /// How far beyond the validation spread the gate's thresholds sit (see `QualityGate`).
    pub gate_margin: f64,
    pub int8: Int8Options,
    /// Score the exported model on every domain's test split and store it in the card.
    pub evaluate: bool,
    /// Also score the Burn model on the same splits and report the difference.
    pub compare_burn: bool,
    /// Clean-up the runtime applies by default, written into the card (the test scores in
    /// the card include it).
    pub cleanup: Cleanup,
    /// Score at most this many test images per domain, evenly spaced (0 = all).
    pub max_test_images: usize,
}

/// What export measured, for the caller to print.
pub struct ExportReport {
    /// Burn vs the f32 graph in tract (must be within [`parity::PARITY_TOLERANCE`]).
    pub parity: parity::Parity,
    /// Burn vs the written (quantized) graph, when weights are quantized.
    pub quantized_parity: Option<parity::Parity>,
    /// The int8 sensitivity report, one row per convolution.
    pub sensitivity: Vec<quantize::LayerSensitivity>,
    /// The int8 model against the f32 one on the calibration images.
    pub int8_difference: Option<quantize::Difference>,
    pub bytes: usize,
    /// split -> (tract foreground Dice, Burn foreground Dice if compared)
    pub dice: BTreeMap<String, (f64, Option<f64>)>,
    /// The quality gate written into the card, and how it sorted each scored test split.
    pub quality_gate: Option<QualityGate>,
    pub gate_scores: BTreeMap<String, GateScore>,
}

pub fn export<B: Backend>(
    run: &Path,
    out: &Path,
    opts: &ExportOptions,
    device: &B::Device,
) -> anyhow::Result<ExportReport> {
    let dir = RunDir::new(run);
    let cfg = dir
        .config()
        .with_context(|| format!("{} is not a training run folder", run.display()))?;
    let state = dir.state()?;
    let model = dir.load_model::<B>(&opts.checkpoint, device)?;
    let spec = cfg.input.clone();
    let graph = model.export(spec.batch_of_one());
    let graph = match opts.target {
        Target::Cpu => graph,
        Target::Cuda => {
            let form = cuda_form::rewrite(&graph);
            tracing::info!(rewritten = ?form.rewritten, "operators rewritten for tract-cuda");
            for left in &form.left_on_cpu {
                tracing::warn!(
                    "{} stays on the CPU under tract-cuda: {}",
                    left.node,
                    left.why
                );
            }
            form.graph
        }
    };
    let mut card = bare_card(&cfg.architecture, spec.clone(), cfg.classes.clone())?;
    card.target = opts.target.card_name().into();
    card.cleanup = opts.cleanup;
    card.parameters = graph.parameter_count();
    card.training = TrainingInfo {
        dataset: cfg.dataset_name.clone(),
        dataset_images: cfg.dataset_images,
        dataset_hash: cfg.dataset_hash.clone(),
        command: cfg.command.clone(),
        git_commit: git_commit(),
        epochs: state.epochs_done,
        seed: cfg.seed,
    };
    let build =
        |format, card: &mut ModelCard| build_onnx(&graph, card, format, &out.display().to_string());

    // Parity on real validation inputs (when the data is there) and on random inputs.
    let data = Dataset::open(&cfg.data)
        .inspect_err(|e| tracing::warn!("parity on random inputs only: {e}"))
        .ok();
    let extra = match &data {
        Some(ds) => {
            let samples = ds
                .split(Some(&cfg.domain), "val")
                .or_else(|_| ds.split(Some(&cfg.domain), "test"))?;
            let few = &samples[..samples.len().min(2)];
            load_split(few, cfg.classes.len(), &spec, false, "parity inputs")?.inputs
        }
        None => Vec::new(),
    };
    let (mut proto, tract) = build(onnx::WeightFormat::F32, &mut card)?;
    let parity = parity::check_export_parity(&model, &tract, &proto, &extra, 3, device)?;
    tracing::info!(
        relative = parity.relative,
        max_abs = parity.max_abs_diff,
        sensitivity = parity.sensitivity,
        f64 = parity.f64_relative,
        "Burn/tract parity"
    );
    if !parity.passes() {
        let f64_note = match parity.f64_relative {
            Some(d) => format!(
                "; in f64 they differ by {d:.1e} (limit {:.0e})",
                parity::F64_TOLERANCE
            ),
            None => String::new(),
        };
        bail!(
            "refusing to write {}: tract's logits differ from Burn's by {:.3e} of the logit range (max abs {:.3e} over {:.3}), limit {:.1e} (the model's own reaction to rounding-sized noise is {:.1e}){f64_note}; 99.9% of them within {:.1e}, {:.3}% of pixels classed differently",
            out.display(),
            parity.relative,
            parity.max_abs_diff,
            parity.logit_range,
            parity.limit(),
            parity.sensitivity,
            parity.p999_relative,
            100.0 * parity.mask_disagreement
        );
    }
    let f32_tract = tract;
    let mut tract_written = None;
    let mut quantized_parity = None;
    let mut sensitivity = Vec::new();
    let mut int8_difference = None;
    // Reduced precision is checked on real slices when there are some: random inputs
    // exaggerate quantization error.
    let random = if extra.is_empty() { 2 } else { 0 };
    let format = opts.precision.weight_format();
    if format != onnx::WeightFormat::F32 {
        let (p, t) = build(format, &mut card)?;
        let q = parity::check_parity(&model, &t, &extra, random, device)?;
        if q.relative > parity::QUANTIZED_TOLERANCE {
            bail!(
                "refusing to write {}: {} logits differ from Burn's by {:.3e} of the logit range, above the {:.0e} limit",
                out.display(),
                format.card_name(),
                q.relative,
                parity::QUANTIZED_TOLERANCE
            );
        }
        quantized_parity = Some(q);
        proto = p;
        tract_written = Some(t);
    }
    if opts.precision == Precision::Int8 {
        let ds = data.as_ref().with_context(|| {
            format!(
                "int8 needs the training images to calibrate on, and {} cannot be opened",
                cfg.data.display()
            )
        })?;
        let train = ds.split(Some(&cfg.domain), "train")?;
        let picked = evenly_spaced(train, opts.int8.calibration_images);
        let calib = calibration_inputs(&picked, &cfg, &spec, opts.int8.augmented)?;
        let shape = spec.batch_of_one();
        tracing::info!(images = calib.len(), "calibrating int8 activation ranges");
        let q = quantize::quantize_static(
            &proto,
            shape,
            cfg.classes.len(),
            &calib,
            &opts.int8.quantize,
        )?;
        let agreement = q.difference.foreground_agreement;
        tracing::info!(
            agreement,
            mask_change = q.difference.mask_change,
            "int8 against f32 on the calibration images"
        );
        if agreement < INT8_FOREGROUND_AGREEMENT {
            bail!(
                "refusing to write {}: on the {} calibration images the int8 model's foreground agrees with the f32 model's only to Dice {agreement:.3} (limit {INT8_FOREGROUND_AGREEMENT}); try another --calibration, or keep the most sensitive convolutions in f32 (--keep-float, a lower --sensitivity-limit)",
                out.display(),
                calib.len()
            );
        }
        let names: String = picked.iter().map(|s| format!("{}\n", s.name)).collect();
        card.quantization = "int8-static-qdq".into();
        card.calibration = Some(medseg_runtime::CalibrationInfo {
            method: serde_json::to_value(opts.int8.quantize.calibration)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            images: calib.len(),
            images_sha256: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(names.as_bytes()))
            },
            quantized_convolutions: q.quantized,
            convolutions: q.convolutions,
            kept_float: q
                .report
                .iter()
                .filter(|r| r.kept_float)
                .map(|r| r.layer.clone())
                .collect(),
            augmented: opts.int8.augmented,
            f32_metrics: BTreeMap::new(),
        });
        proto = q.proto;
        card.weights_sha256 = onnx_io::weights_sha256(&proto);
        onnx_io::write_card(&mut proto, &card);
        let t = Segmenter::from_bytes(&onnx_io::encode(&proto), &out.display().to_string())?;
        let p = parity::check_parity(&model, &t, &extra, random, device)?;
        if p.mask_disagreement > INT8_MASK_LIMIT {
            bail!(
                "refusing to write {}: the int8 model classes {:.2}% of the parity images' pixels differently from Burn (limit {:.0}%); keep the most sensitive convolutions in f32 (--keep-float, or a lower --sensitivity-limit)",
                out.display(),
                100.0 * p.mask_disagreement,
                100.0 * INT8_MASK_LIMIT
            );
        }
        quantized_parity = Some(p);
        sensitivity = q.report;
        int8_difference = Some(q.difference);
        tract_written = Some(t);
    }
    let tract = tract_written.as_ref().unwrap_or(&f32_tract);

    if opts.gate_images > 0
        && let Some(ds) = &data
    {
        card.quality_gate =
            calibrate_gate(ds, &cfg.domain, opts.gate_images, opts.gate_margin, tract)?;
    }

    let mut dice = BTreeMap::new();
    let mut gate_scores = BTreeMap::new();
    if opts.evaluate {
        let ds = data.with_context(|| {
            format!(
                "cannot open the training data {} to score the model",
                cfg.data.display()
            )
        })?;
        for (domain, splits) in &ds.domains {
            let Some(samples) = splits.get("test").filter(|s| !s.is_empty()) else {
                continue;
            };
            let samples = &evenly_spaced(samples, opts.max_test_images);
            let key = format!("{domain}/test");
            tracing::info!(split = %key, images = samples.len(), "scoring the exported model");
            let score = |seg: &Segmenter| {
                medseg_runtime::evaluate::evaluate_split(
                    samples,
                    &ds.classes,
                    |img| Ok(seg.segment(img)?.prediction.mask),
                    || {},
                )
            };
            let summary = score(tract)?;
            let burn = if opts.compare_burn {
                let loaded = load_split(samples, ds.classes.len(), &spec, true, &key)?;
                let s = score_split(&model, &loaded, &spec, &ds.classes, 8, false, device)?;
                Some(foreground_means(&s).0)
            } else {
                None
            };
            dice.insert(key.clone(), (foreground_means(&summary).0, burn));
            let mut metrics = card_metrics(&summary);
            if let Some(gate) = &card.quality_gate {
                let g = score_gate(samples, &ds.classes, tract, gate)?;
                tracing::info!(split = %key, ?g, "quality gate on the test split");
                metrics.insert("gate_bad_images".into(), g.bad as f64);
                metrics.insert("gate_bad_flagged".into(), g.bad_flagged as f64);
                metrics.insert("gate_good_images".into(), g.good as f64);
                metrics.insert("gate_good_flagged".into(), g.good_flagged as f64);
                gate_scores.insert(key.clone(), g);
            }
            card.metrics.insert(key.clone(), metrics);
            if let Some(c) = card.calibration.as_mut() {
                c.f32_metrics.insert(key, card_metrics(&score(&f32_tract)?));
            }
        }
    }
    onnx_io::write_card(&mut proto, &card);
    let bytes = onnx_io::encode(&proto);
    let tmp = out.with_extension("onnx.tmp");
    std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(ExportReport {
        parity,
        quantized_parity,
        sensitivity,
        int8_difference,
        bytes: bytes.len(),
        dice,
        quality_gate: card.quality_gate.clone(),
        gate_scores,
    })
}

/// Each quality signal's threshold is this quantile of its validation values: about 1% of
/// in-distribution images fail each test.
pub const GATE_QUANTILE: f64 = 0.99;

/// The quality gate from `images` evenly spaced validation images of `domain` (None when the
/// data set has no validation split there).
fn calibrate_gate(
    ds: &Dataset,
    domain: &str,
    images: usize,
    margin: f64,
    seg: &Segmenter,
) -> anyhow::Result<Option<QualityGate>> {
    let Ok(val) = ds.split(Some(domain), "val") else {
        tracing::warn!("no validation split in {domain}: the card gets no quality gate");
        return Ok(None);
    };
    let val = evenly_spaced(val, images);
    let mut signals = Vec::with_capacity(val.len());
    for s in &val {
        let img = load_image(&s.image)?;
        let logits = seg.segment_logits(&img)?;
        signals.push(seg.signals(&seg.model_input(&img)?, &logits)?);
    }
    let gate = QualityGate::calibrate(&signals, &format!("{domain}/val"), GATE_QUANTILE, margin);
    tracing::info!(?gate, "quality gate calibrated");
    Ok(gate)
}

/// A card with the model's shape and classes and empty training information (benchmarks and
/// tests fill in what they know; `export` fills in the run).
pub fn bare_card(
    arch: &Architecture,
    input: InputSpec,
    classes: Vec<String>,
) -> anyhow::Result<ModelCard> {
    Ok(ModelCard {
        card_version: CARD_VERSION,
        architecture: serde_json::to_value(arch)?,
        input,
        classes,
        output: "logits".into(),
        training: TrainingInfo {
            dataset: String::new(),
            dataset_images: 0,
            dataset_hash: String::new(),
            command: String::new(),
            git_commit: git_commit(),
            epochs: 0,
            seed: 0,
        },
        metrics: BTreeMap::new(),
        quantization: String::new(),
        calibration: None,
        parameters: 0,
        weights_sha256: String::new(),
        cleanup: Cleanup::default(),
        target: String::new(),
        quality_gate: None,
    })
}

/// Writes `graph` as ONNX in `format` with `card` (its quantization and weight hash filled in
/// here) and loads the result in tract, which checks the card and prepares the plan.
pub fn build_onnx(
    graph: &Graph,
    card: &mut ModelCard,
    format: onnx::WeightFormat,
    source: &str,
) -> anyhow::Result<(pb::ModelProto, Segmenter)> {
    let spec = &card.input;
    let expected = spec.batch_of_one();
    anyhow::ensure!(
        graph.shape(graph.input) == expected,
        "the graph was built for input {:?}, the card says {expected:?}",
        graph.shape(graph.input)
    );
    let mut proto = onnx::graph_to_onnx(graph, format);
    card.quantization = format.card_name().into();
    card.weights_sha256 = onnx_io::weights_sha256(&proto);
    onnx_io::write_card(&mut proto, card);
    let tract = Segmenter::from_bytes(&onnx_io::encode(&proto), source)?;
    Ok((proto, tract))
}

/// The card's metric table for one split: split-level Dice/IoU per class, mean over images,
/// mIoU (with background, as JMedSeg reports it) and ASSD in pixels.
fn card_metrics(s: &SplitSummary) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("images".into(), s.images as f64);
    m.insert("miou".into(), s.mean_iou);
    for c in s.per_class.iter().skip(1) {
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = v {
                m.insert(format!("{k}_{}", c.name), v);
            }
        };
        put("dice", c.dice_split);
        put("iou", c.iou_split);
        put("dice_mean_over_images", c.dice_mean_over_images);
        put("precision", c.precision_split);
        put("recall", c.recall_split);
        put("assd_px", c.assd_mean_mm);
    }
    m
}

/// The commit the trainer was built from (see build.rs).
fn git_commit() -> String {
    env!("MEDSEG_GIT_COMMIT").to_string()
}

/// The prepared calibration inputs of `picked` training samples; with `augmented`, each
/// passed once through the run's own training augmentation at full size, seeded by its
/// position so the same export always calibrates on the same images.
fn calibration_inputs(
    picked: &[medseg_runtime::dataset::Sample],
    cfg: &RunConfig,
    spec: &InputSpec,
    augmented: bool,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let loaded = load_split(picked, cfg.classes.len(), spec, false, "calibration")?;
    if !augmented {
        return Ok(loaded.inputs);
    }
    anyhow::ensure!(
        !cfg.augment.steps.is_empty(),
        "--calibrate-augmented: the run was trained without augmentation, so there is none to \
         calibrate on"
    );
    anyhow::ensure!(
        spec.width == spec.height,
        "--calibrate-augmented needs square inputs (the run's are {}x{})",
        spec.width,
        spec.height
    );
    use rand::SeedableRng;
    Ok(loaded
        .inputs
        .iter()
        .zip(&loaded.targets)
        .enumerate()
        .map(|(i, (input, mask))| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0xca11b + i as u64);
            cfg.augment.patch(input, mask, spec, spec.width, &mut rng).0
        })
        .collect())
}
