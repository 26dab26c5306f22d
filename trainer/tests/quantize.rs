//! Reduced-precision exports: f16 weight storage, and static int8 quantization in QDQ form
//! (calibration, the rewritten graph, the sensitivity report and `--keep-float`).

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Distribution, Tensor};
use medseg_models::{Architecture, SegModel};
use medseg_runtime::InputSpec;
use medseg_runtime::onnx::{encode, pb};
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::parity::check_parity;
use medseg_trainer::export::quantize::{
    Calibration, QuantizeOptions, compare, quantize_static, run_all,
};
use medseg_trainer::export::{bare_card, build_onnx};

const SIZE: usize = 32;
const SHAPE: [usize; 4] = [1, 1, SIZE, SIZE];

fn arch() -> Architecture {
    let mut arch = Architecture::by_name("unet", 1, 2).unwrap();
    arch.set_option("base_width", "8").unwrap();
    arch.set_option("depth", "3").unwrap();
    arch
}

/// A model with BatchNorm statistics away from (0, 1), as after training. Seeded: the
/// bounds below held over 40 unseeded draws, but a failure must be reproducible.
fn model(arch: &Architecture) -> SegModel<Flex> {
    let dev = Default::default();
    <Flex as burn::tensor::backend::Backend>::seed(&dev, 11);
    let model: SegModel<Autodiff<Flex>> = arch.init(&dev).unwrap();
    for _ in 0..10 {
        let x = Tensor::random([2, 1, SIZE, SIZE], Distribution::Normal(0.0, 1.0), &dev);
        let _ = model.forward(x);
    }
    model.valid()
}

fn export(format: WeightFormat) -> (SegModel<Flex>, pb::ModelProto, medseg_runtime::Segmenter) {
    let m = model(&arch());
    let (proto, tract) = export_same(&m, format);
    (m, proto, tract)
}

/// The same weights written in `format`.
fn export_same(
    model: &SegModel<Flex>,
    format: WeightFormat,
) -> (pb::ModelProto, medseg_runtime::Segmenter) {
    let input = InputSpec {
        channels: 1,
        height: SIZE,
        width: SIZE,
        mean: 0.5,
        std: 0.25,
        stacked_neighbours: false,
    };
    let mut card = bare_card(&arch(), input, vec!["bg".into(), "fg".into()]).unwrap();
    build_onnx(&model.export(SHAPE), &mut card, format, "test").unwrap()
}

/// Smooth images with a bright blob: inputs shaped like slices, not white noise.
fn images(n: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|k| {
            let (cx, cy) = (8.0 + 2.0 * k as f32, 20.0 - 1.5 * k as f32);
            (0..SIZE * SIZE)
                .map(|i| {
                    let (x, y) = ((i % SIZE) as f32, (i / SIZE) as f32);
                    let d = ((x - cx).powi(2) + (y - cy).powi(2)).sqrt();
                    (if d < 6.0 { 1.5 } else { -0.5 }) + 0.1 * ((x * 0.7 + y * 0.3).sin())
                })
                .collect()
        })
        .collect()
}

fn options(calibration: Calibration) -> QuantizeOptions {
    QuantizeOptions {
        calibration,
        keep_float: Vec::new(),
        sensitivity_limit: None,
    }
}

fn ops(proto: &pb::ModelProto) -> Vec<&str> {
    let g = proto.graph.as_ref().unwrap();
    g.node.iter().map(|n| n.op_type.as_str()).collect()
}

#[test]
fn f16_weights_halve_the_file_and_keep_the_logits() {
    let (model, f32_proto, _) = export(WeightFormat::F32);
    let (f16_proto, tract) = export_same(&model, WeightFormat::F16);
    let ratio = encode(&f16_proto).len() as f64 / encode(&f32_proto).len() as f64;
    assert!(ratio < 0.55, "f16 file is {ratio:.2} of f32");
    let p = check_parity(&model, &tract, &images(2), 0, &Default::default()).unwrap();
    assert!(p.relative < 5e-3, "{p:?}");
}

#[test]
fn int8_qdq_graph_quantizes_every_convolution_and_stays_close() {
    let (_, proto, _) = export(WeightFormat::F32);
    let calib = images(6);
    let reference = run_all(&proto, SHAPE, &calib).unwrap();
    for method in [
        Calibration::MinMax,
        Calibration::Percentile,
        Calibration::Entropy,
    ] {
        let q = quantize_static(&proto, SHAPE, 2, &calib, &options(method)).unwrap();
        assert_eq!(q.quantized, q.convolutions, "{method:?}");
        assert_eq!(q.report.len(), q.convolutions);
        let g = q.proto.graph.as_ref().unwrap();
        // Every convolution reads dequantized int8 weights and a dequantized input.
        for n in g.node.iter().filter(|n| n.op_type == "Conv") {
            assert!(
                n.input[0].ends_with(".dq"),
                "{}: input {}",
                n.name,
                n.input[0]
            );
            assert!(n.input[1].ends_with(".weight_dq"), "{}", n.name);
        }
        // No f32 convolution weights are left in the file.
        let f32_bytes: usize = g
            .initializer
            .iter()
            .filter(|t| t.data_type == pb::tensor_proto::DataType::Float as i32)
            .map(|t| t.raw_data.len())
            .sum();
        let total: usize = g.initializer.iter().map(|t| t.raw_data.len()).sum();
        assert!(
            f32_bytes * 5 < total,
            "{method:?}: {f32_bytes} of {total} bytes still f32"
        );
        // ReLUs after convolutions fold into the zero-point-0 quantizer.
        assert!(
            ops(&q.proto).iter().filter(|o| **o == "Relu").count()
                < ops(&proto).iter().filter(|o| **o == "Relu").count()
        );
        let ratio = encode(&q.proto).len() as f64 / encode(&proto).len() as f64;
        assert!(ratio < 0.35, "{method:?}: int8 file is {ratio:.2} of f32");
        let d = compare(&reference, &run_all(&q.proto, SHAPE, &calib).unwrap(), 2);
        let (mask, logits) = (d.mask_change, d.logit_change);
        assert_eq!(d.foreground_agreement, q.difference.foreground_agreement);
        // Clipping methods trade the largest logits for resolution; nothing clips in
        // min-max, whose error is rounding alone.
        assert!(
            mask < 0.03 && (method != Calibration::MinMax || logits < 0.25),
            "{method:?}: {mask} of pixels changed, logits by {logits} of the range"
        );
    }
}

#[test]
fn keep_float_leaves_the_named_convolution_in_f32_and_unknown_names_are_refused() {
    let (_, proto, _) = export(WeightFormat::F32);
    let calib = images(3);
    let all = quantize_static(&proto, SHAPE, 2, &calib, &options(Calibration::MinMax)).unwrap();
    let first = all.report[0].layer.clone();
    let mut opts = options(Calibration::MinMax);
    opts.keep_float = vec![first.clone()];
    let q = quantize_static(&proto, SHAPE, 2, &calib, &opts).unwrap();
    assert_eq!(q.quantized + 1, q.convolutions);
    assert!(q.report[0].kept_float);
    let g = q.proto.graph.as_ref().unwrap();
    let conv = g.node.iter().find(|n| n.name == first).unwrap();
    assert!(!conv.input[1].ends_with(".weight_dq"), "{:?}", conv.input);

    opts.keep_float = vec!["no.such.conv".into()];
    let err = quantize_static(&proto, SHAPE, 2, &calib, &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("no.such.conv") && err.contains("--keep-float"),
        "{err}"
    );
}

#[test]
fn the_sensitivity_limit_decides_which_layers_stay_in_f32() {
    let (_, proto, _) = export(WeightFormat::F32);
    let calib = images(3);
    let mut opts = options(Calibration::MinMax);
    opts.sensitivity_limit = Some(-1.0);
    let q = quantize_static(&proto, SHAPE, 2, &calib, &opts).unwrap();
    assert_eq!(q.quantized, 0, "a negative limit keeps every layer in f32");
    assert!(q.report.iter().all(|r| r.kept_float));
    opts.sensitivity_limit = Some(1.0);
    let q = quantize_static(&proto, SHAPE, 2, &calib, &opts).unwrap();
    assert_eq!(q.quantized, q.convolutions, "no layer changes every pixel");
}

#[test]
fn int8_package_nnef_form_computes_what_the_onnx_file_does() {
    use medseg_runtime::package::{self, Form};
    let (_, proto, _) = export(WeightFormat::F32);
    let calib = images(4);
    let q = quantize_static(&proto, SHAPE, 2, &calib, &options(Calibration::Percentile)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("int8");
    package::write(&dir, &encode(&q.proto), "int8.onnx", "int8").unwrap();
    // The activations' QuantizeLinear / DequantizeLinear, which tract cannot write as NNEF,
    // were rewritten into its element-wise operators.
    // (The archive is an uncompressed tar: graph.nnef's text is in it as written.)
    let archive = std::fs::read(dir.join(package::NNEF_FILE)).unwrap();
    let has = |s: &str| archive.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(
        has("round_even") && has("u8"),
        "no quantization steps in the NNEF graph"
    );
    let options = medseg_runtime::LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let nnef = medseg_runtime::Segmenter::from_package(&dir, Form::Nnef, &options).unwrap();
    let expected = run_all(&q.proto, SHAPE, &calib).unwrap();
    for (x, want) in calib.iter().zip(&expected) {
        let got = nnef.logits(x.clone()).unwrap();
        let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Same quantization steps; only the float kernels' summation order may differ, and
        // a sum that lands on a rounding boundary moves one step (one scale, well under 5%).
        assert!(
            worst <= 0.05 * range,
            "NNEF logits differ by {worst} of {range}"
        );
    }
}
