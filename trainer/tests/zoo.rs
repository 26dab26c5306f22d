//! Every architecture in the registry table, with no test code of its own: its tiny
//! configuration trains a few steps on the CPU with a falling loss, exports to ONNX, runs in
//! tract with Burn's logits (1e-4 of the logit range), segments an image of another size with
//! the runtime, quantizes to int8 (QDQ) and packages (its NNEF form giving the ONNX file's
//! logits), and refuses an input size it cannot take; and the same behind a spatial
//! transformer. `MEDSEG_ZOO_ONLY=unet,attunet` limits both to the named members (while one is
//! being written); unset, every member runs.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::{Tensor, TensorData};
use medseg_models::Graph;
use medseg_models::{Architecture, SegModel, StnConfig};
use medseg_runtime::ModelCard;
use medseg_runtime::onnx::{encode, pb};
use medseg_runtime::package::{self, Form};
use medseg_runtime::{InputSpec, LoadOptions, Segmenter};
use medseg_trainer::export::cuda_form;
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::parity::{F64_TOLERANCE, PARITY_TOLERANCE, check_f64, check_parity};
use medseg_trainer::export::quantize::{Calibration, QuantizeOptions, quantize_static};
use medseg_trainer::export::{bare_card, build_onnx};
use medseg_trainer::losses::{CompoundLoss, LossSpec};
use medseg_trainer::objective::{Batch, Objective, Supervised, Target};

type A = Autodiff<Flex>;

/// The smallest side at least 32 that the architecture takes.
fn side(arch: &Architecture) -> usize {
    let m = arch.size_multiple();
    32usize.div_ceil(m) * m
}

/// Two images with a bright square whose pixels are the foreground.
fn batch(side: usize) -> Batch<A> {
    let dev = Default::default();
    let plane = side * side;
    let mut xs = vec![0f32; 2 * plane];
    let mut masks = vec![0u8; 2 * plane];
    for b in 0..2 {
        let (y0, x0) = (side / 4 + b * 3, side / 3);
        for y in y0..y0 + side / 3 {
            for x in x0..x0 + side / 3 {
                masks[b * plane + y * side + x] = 1;
            }
        }
        for p in 0..plane {
            let m = masks[b * plane + p] as f32;
            xs[b * plane + p] = m * 1.5 - 0.5 + 0.1 * ((p * 7 + b) % 5) as f32;
        }
    }
    let mut oh = vec![0f32; 2 * 2 * plane];
    for (i, &c) in masks.iter().enumerate() {
        let (b, p) = (i / plane, i % plane);
        oh[(b * 2 + c as usize) * plane + p] = 1.0;
    }
    Batch {
        images: Tensor::from_data(TensorData::new(xs, [2, 1, side, side]), &dev),
        target: Some(Target {
            one_hot: Tensor::from_data(TensorData::new(oh, [2, 2, side, side]), &dev),
            masks,
        }),
        views: Vec::new(),
    }
}

/// Burn's seed is global: the two tests below would otherwise interleave their draws.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn trains_exports_and_segments(arch: Architecture) {
    let _seeded = SEEDED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let label = match arch.stn {
        Some(_) => format!("{} + stn", arch.name()),
        None => arch.name().to_string(),
    };
    let name = label.as_str();
    let s = side(&arch);
    let dev = Default::default();
    // Seeded, so the test sees the same initialisation on every run.
    <A as burn::tensor::backend::Backend>::seed(&dev, 7);
    let mut model: SegModel<A> = arch.init(&dev).unwrap();
    // The shape-aware terms take their maps from the batch's host masks (the objective
    // interface), on the logits and on every side output.
    let spec: LossSpec = "0.5ce+0.5dice+0.01boundary+0.001hd_dt".parse().unwrap();
    let objective = Supervised {
        loss: CompoundLoss::<A>::new(&spec, None, &dev),
        aux_weight: 1.0,
        transform_penalty: 0.1,
    };
    let mut optim = AdamConfig::new().init::<A, SegModel<A>>();
    let data = batch(s);
    let mut losses = Vec::new();
    for _ in 0..8 {
        let out = model.forward_train(data.images.clone());
        let loss = objective.loss(&data, &out).unwrap();
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(3e-3, model, grads);
    }
    assert!(
        losses.iter().all(|l| l.is_finite()) && losses[7] < losses[0] * 0.9,
        "{name}: the loss did not fall: {losses:?}"
    );
    eprintln!("{name}: loss {:.4} -> {:.4}", losses[0], losses[7]);

    if let Some(stn) = &model.stn {
        let bias = stn.fc2.bias.as_ref().unwrap().val().into_data();
        let moved: f32 = bias
            .iter::<f32>()
            .zip([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
            .map(|(v, i)| (v - i).abs())
            .sum();
        assert!(moved > 1e-3, "{name}: the transform did not move ({moved})");
    }

    // Export, tract parity, and the runtime on an image of another size.
    let model = model.valid();
    let graph = model.export([1, 1, s, s]);
    let input = InputSpec {
        channels: 1,
        height: s,
        width: s,
        mean: 0.5,
        std: 0.25,
        stacked_neighbours: false,
    };
    let mut card = bare_card(&arch, input, vec!["background".into(), "bone".into()]).unwrap();
    card.parameters = graph.parameter_count();
    let (proto, tract) = build_onnx(&graph, &mut card, WeightFormat::F32, name)
        .unwrap_or_else(|e| panic!("{name}: export failed: {e:#}"));
    let p = check_parity(&model, &tract, &[], 2, &dev).unwrap();
    assert!(
        p.relative <= PARITY_TOLERANCE,
        "{name}: Burn/tract parity {p:?}"
    );
    // Once per member: behind a transformer the rewrites meet nothing new (its pooling and
    // sampling are covered by ops_parity's cases), and CI's time is better spent elsewhere.
    if arch.stn.is_none() {
        cuda_form_matches(name, &model, &graph, &card);
    }
    // The double-precision check export falls back on for ill-conditioned models runs for
    // every member (Burn's forward pass in f64 included).
    let x: Vec<f32> = (0..s * s)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let d = check_f64(&model, &proto, [1, 1, s, s], &[x], &dev)
        .unwrap_or_else(|e| panic!("{name}: f64 check failed: {e:#}"));
    assert!(d <= F64_TOLERANCE, "{name}: f64 parity {d:.2e}");
    let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(45, 29, |x, y| {
        image::Luma([((x * 5 + y * 3) % 256) as u8])
    }));
    let seg = tract.segment(&img).unwrap();
    assert_eq!(
        (seg.prediction.mask.width, seg.prediction.mask.height),
        (45, 29),
        "{name}"
    );

    int8_and_package(name, &proto, s, &data);

    // A size the network cannot take is refused by name before anything is built.
    if arch.size_multiple() > 1 {
        let err = arch.check_input_size(s + 1, s).unwrap_err().to_string();
        assert!(
            err.contains(arch.name()) && err.contains("multiples of"),
            "{err}"
        );
    }
}

/// `export --target cuda`'s graph (pooling, transposed convolutions and resizes in operators
/// tract-cuda runs on the GPU) gives Burn's logits too; what it leaves on the CPU is only what
/// has no such form (overlapping pooling, SegNet's indices, the transformer's sampling).
fn cuda_form_matches(name: &str, model: &SegModel<Flex>, graph: &Graph, card: &ModelCard) {
    let form = cuda_form::rewrite(graph);
    let mut card = card.clone();
    let (_, tract) = build_onnx(&form.graph, &mut card, WeightFormat::F32, name)
        .unwrap_or_else(|e| panic!("{name}: cuda form: {e:#}"));
    let p = check_parity(model, &tract, &[], 2, &Default::default()).unwrap();
    assert!(
        p.relative <= PARITY_TOLERANCE,
        "{name}: cuda form against Burn: {p:?}"
    );
    let kinds: Vec<&str> = form.left_on_cpu.iter().map(|l| l.kind).collect();
    for k in &kinds {
        assert!(
            ["maxpool", "maxpoolidx", "gridsample"].contains(k),
            "{name}: the cuda form leaves a {k} on the CPU: {:?}",
            form.left_on_cpu
        );
    }
    eprintln!(
        "{name}: cuda form rewrote {:?}; left on the CPU: {kinds:?}",
        form.rewritten
    );
}

/// The deployable forms of the f32 export: static int8 (QDQ) calibrated on the batch's
/// images, and a package whose NNEF form runs the f32 graph as the ONNX file does.
fn int8_and_package(name: &str, proto: &pb::ModelProto, s: usize, data: &Batch<A>) {
    let images: Vec<f32> = data.images.clone().into_data().to_vec().unwrap();
    let calib: Vec<Vec<f32>> = images.chunks(s * s).map(|c| c.to_vec()).collect();
    let options = QuantizeOptions {
        calibration: Calibration::Percentile,
        keep_float: Vec::new(),
        sensitivity_limit: None,
    };
    let q = quantize_static(proto, [1, 1, s, s], 2, &calib, &options)
        .unwrap_or_else(|e| panic!("{name}: int8 quantization failed: {e:#}"));
    assert!(
        q.quantized > 0 && q.quantized == q.convolutions,
        "{name}: {} of {} convolutions quantized",
        q.quantized,
        q.convolutions
    );
    let d = &q.difference;
    assert!(
        d.logit_change.is_finite() && d.mask_change < 0.25,
        "{name}: int8 changes {:.1}% of pixels (logits by {:.2} of the range)",
        100.0 * d.mask_change,
        d.logit_change
    );
    eprintln!(
        "{name}: int8 {} convolutions, {:.2}% of pixels changed, logits by {:.3} of the range",
        q.quantized,
        100.0 * d.mask_change,
        d.logit_change
    );

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("package");
    let onnx = encode(proto);
    package::write(&dir, &onnx, name, "f32")
        .unwrap_or_else(|e| panic!("{name}: packaging failed: {e:#}"));
    let options = LoadOptions {
        threads: 1,
        ..LoadOptions::default()
    };
    let from_nnef = Segmenter::from_package(&dir, Form::Nnef, &options)
        .unwrap_or_else(|e| panic!("{name}: the NNEF form does not load: {e:#}"));
    let from_onnx = Segmenter::from_bytes_with_options(&onnx, name, &options).unwrap();
    let (a, b) = (
        from_onnx.logits(calib[0].clone()).unwrap(),
        from_nnef.logits(calib[0].clone()).unwrap(),
    );
    let range = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * range,
        "{name}: NNEF logits differ from the ONNX file's by {worst} of {range}"
    );
}

/// The registry's names, or those of `MEDSEG_ZOO_ONLY` (refused when one is not registered).
fn selected() -> Vec<&'static str> {
    let all = Architecture::names();
    let Ok(only) = std::env::var("MEDSEG_ZOO_ONLY") else {
        return all;
    };
    let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
    for w in &wanted {
        assert!(
            all.contains(w),
            "MEDSEG_ZOO_ONLY: '{w}' is not registered: {all:?}"
        );
    }
    all.into_iter().filter(|n| wanted.contains(n)).collect()
}

#[test]
fn every_registered_architecture_trains_exports_and_segments() {
    let names = Architecture::names();
    assert!(names.contains(&"unet") && names.len() >= 2, "{names:?}");
    for name in selected() {
        trains_exports_and_segments(Architecture::tiny(name, 1, 2).unwrap());
    }
}

/// The spatial transformer wraps any member: after a few steps its transform has moved off
/// the identity, so the exported GridSample path (and the inverse warp) is really exercised.
#[test]
fn every_registered_architecture_behind_a_spatial_transformer() {
    for name in selected() {
        let arch = Architecture::tiny(name, 1, 2)
            .unwrap()
            .with_stn(StnConfig::tiny());
        trains_exports_and_segments(arch);
    }
}
