//! Static post-training int8 quantization of an exported f32 graph: activation ranges
//! calibrated on training images ([`calibrate`]), the graph rewritten in ONNX's QDQ form
//! ([`qdq`]), and a per-layer sensitivity report that picks which convolutions stay in f32.

pub mod calibrate;
pub mod qdq;

use std::collections::HashMap;

use anyhow::Context;
use serde::Serialize;
use tract_onnx::prelude::*;

use medseg_runtime::onnx::pb;

pub use calibrate::Calibration;
use qdq::{ActivationQuant, ConvSite};

/// How to quantize.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub calibration: Calibration,
    /// Convolutions (ONNX node names) to keep in f32 whatever the report says.
    pub keep_float: Vec<String>,
    /// Keep in f32 every convolution whose quantization alone changes more than this share
    /// of the predicted pixels on the calibration images (None: only `keep_float`).
    pub sensitivity_limit: Option<f64>,
}

/// One convolution's row of the sensitivity report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSensitivity {
    pub layer: String,
    /// Quantized alone, the rest in f32: share of pixels whose class changes.
    pub mask_change: f64,
    /// ... and the largest logit change over the f32 logits' range.
    pub logit_change: f64,
    pub kept_float: bool,
}

pub struct Quantized {
    pub proto: pb::ModelProto,
    /// The quantized model against the f32 one on the calibration images.
    pub difference: Difference,
    pub report: Vec<LayerSensitivity>,
    /// Convolutions quantized / in all.
    pub quantized: usize,
    pub convolutions: usize,
}

/// Quantizes `proto` (the f32 export, input `shape`, logits of `classes` classes) with
/// `inputs` (prepared calibration images) as the calibration set.
pub fn quantize_static(
    proto: &pb::ModelProto,
    shape: [usize; 4],
    classes: usize,
    inputs: &[Vec<f32>],
    opts: &QuantizeOptions,
) -> anyhow::Result<Quantized> {
    let graph = proto.graph.as_ref().context("the model has no graph")?;
    let sites = qdq::conv_sites(graph);
    for name in &opts.keep_float {
        anyhow::ensure!(
            sites.iter().any(|s| &s.name == name),
            "--keep-float {name}: no convolution of that name (the sensitivity report lists them)"
        );
    }
    let tensors = qdq::tensors_to_calibrate(&sites);
    let observed = calibrate::observe(proto, shape, &tensors, inputs)?;
    let quant: HashMap<String, ActivationQuant> = tensors
        .iter()
        .zip(&observed)
        .map(|(t, o)| {
            let (lo, hi) = o.range(opts.calibration);
            tracing::debug!(tensor = %t, min = o.min, max = o.max, lo, hi, "activation range");
            (t.clone(), ActivationQuant::from_range(lo, hi))
        })
        .collect();

    // Sensitivity: each convolution quantized alone against the f32 graph.
    let reference = run_all(proto, shape, inputs)?;
    let mut report = Vec::new();
    for site in &sites {
        let alone = qdq::rewrite(proto, std::slice::from_ref(site), &quant, false)?;
        let d = compare(&reference, &run_all(&alone, shape, inputs)?, classes);
        let kept_float = opts.keep_float.contains(&site.name)
            || opts.sensitivity_limit.is_some_and(|l| d.mask_change > l);
        report.push(LayerSensitivity {
            layer: site.name.clone(),
            mask_change: d.mask_change,
            logit_change: d.logit_change,
            kept_float,
        });
    }
    let chosen: Vec<ConvSite> = sites
        .iter()
        .zip(&report)
        .filter(|(_, r)| !r.kept_float)
        .map(|(s, _)| s.clone())
        .collect();
    let proto = qdq::rewrite(proto, &chosen, &quant, true)?;
    let difference = compare(&reference, &run_all(&proto, shape, inputs)?, classes);
    Ok(Quantized {
        proto,
        difference,
        quantized: chosen.len(),
        convolutions: sites.len(),
        report,
    })
}

/// `proto` prepared by tract for input `shape`, with the tensors named in `outputs` as its
/// outputs instead of the graph's when given.
pub(super) fn tract_plan(
    proto: &pb::ModelProto,
    shape: [usize; 4],
    outputs: Option<&[String]>,
) -> TractResult<Arc<TypedRunnableModel>> {
    let mut model = tract_onnx::onnx()
        .model_for_proto_model(proto)?
        .with_input_fact(0, f32::fact(shape).into())?;
    if let Some(names) = outputs {
        model = model.with_outputs_by_name(names)?;
    }
    model.into_optimized()?.into_runnable()
}

/// Logits of `proto` for every input.
pub fn run_all(
    proto: &pb::ModelProto,
    shape: [usize; 4],
    inputs: &[Vec<f32>],
) -> anyhow::Result<Vec<Vec<f32>>> {
    let plan = tract_plan(proto, shape, None).context("preparing a quantized graph in tract")?;
    inputs
        .iter()
        .map(|x| {
            let out = plan.run(tvec!(Tensor::from_shape(&shape, x)?.into()))?;
            Ok(out[0]
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect())
        })
        .collect()
}

/// How far one model's logits are from a reference's, over the same inputs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Difference {
    /// Share of pixels whose argmax class differs.
    pub mask_change: f64,
    /// Largest |logit difference| over the reference logits' range.
    pub logit_change: f64,
    /// Dice of the two masks' non-background pixels (1 when both have none): a few changed
    /// pixels can be a large part of a small structure.
    pub foreground_agreement: f64,
}

/// Compares logits `[1, classes, h, w]` per input.
pub fn compare(reference: &[Vec<f32>], other: &[Vec<f32>], classes: usize) -> Difference {
    let (mut changed, mut pixels, mut max_diff) = (0usize, 0usize, 0f32);
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let (mut both, mut fg_ref, mut fg_other) = (0usize, 0usize, 0usize);
    for (r, o) in reference.iter().zip(other) {
        for (a, b) in r.iter().zip(o) {
            max_diff = max_diff.max((a - b).abs());
            lo = lo.min(*a);
            hi = hi.max(*a);
        }
        // Classes are the slowest axis: the class of pixel p is argmax over r[c * hw + p].
        let hw = r.len() / classes;
        for p in 0..hw {
            let argmax = |v: &[f32]| {
                (0..classes)
                    .max_by(|&i, &j| v[i * hw + p].total_cmp(&v[j * hw + p]))
                    .unwrap_or(0)
            };
            let (cr, co) = (argmax(r), argmax(o));
            changed += usize::from(cr != co);
            pixels += 1;
            fg_ref += usize::from(cr != 0);
            fg_other += usize::from(co != 0);
            both += usize::from(cr != 0 && cr == co);
        }
    }
    Difference {
        mask_change: changed as f64 / pixels.max(1) as f64,
        logit_change: max_diff as f64 / (hi - lo).max(f32::MIN_POSITIVE) as f64,
        foreground_agreement: if fg_ref + fg_other == 0 {
            1.0
        } else {
            2.0 * both as f64 / (fg_ref + fg_other) as f64
        },
    }
}
