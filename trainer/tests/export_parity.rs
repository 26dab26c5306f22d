//! Every UNet configuration exports to an ONNX graph that tract runs with the same logits as
//! Burn (BatchNorm folded, both up-sampling kinds, JMedSeg's layout), and int8 weights stay close.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::tensor::{Distribution, Tensor};
use medseg_models::{Architecture, SegModel, UNetConfig, Upsampling, ZooConfig};
use medseg_runtime::InputSpec;
use medseg_runtime::card::ModelCard;
use medseg_trainer::export::onnx::WeightFormat;
use medseg_trainer::export::parity::{
    F64_TOLERANCE, PARITY_TOLERANCE, Parity, QUANTIZED_TOLERANCE, check_export_parity, check_f64,
    check_parity,
};
use medseg_trainer::export::{bare_card, build_onnx};

fn card(arch: &Architecture, size: usize) -> ModelCard {
    let input = InputSpec {
        channels: arch.in_channels(),
        height: size,
        width: size,
        mean: 0.5,
        std: 0.25,
        stacked_neighbours: false,
    };
    let classes = (0..arch.num_classes()).map(|c| format!("c{c}")).collect();
    bare_card(arch, input, classes).unwrap()
}

/// A model whose BatchNorm statistics are far from the initial (0, 1), so folding matters.
fn trained_looking_model(arch: &Architecture, size: usize) -> SegModel<Flex> {
    let dev = Default::default();
    let model: SegModel<Autodiff<Flex>> = arch.init(&dev).unwrap();
    for _ in 0..20 {
        let x = Tensor::random(
            [2, arch.in_channels(), size, size],
            Distribution::Normal(3.0, 2.0),
            &dev,
        );
        let _ = model.forward(x);
    }
    model.valid()
}

fn check(upsampling: Upsampling, classes: usize, in_channels: usize) {
    let arch = Architecture::from(ZooConfig::Unet(UNetConfig {
        in_channels,
        num_classes: classes,
        base_width: 4,
        depth: 3,
        upsampling,
        ..UNetConfig::default()
    }));
    check_arch(&arch, &format!("{upsampling:?}"));
}

fn check_arch(arch: &Architecture, label: &str) {
    let in_channels = arch.in_channels();
    let size = 32;
    let model = trained_looking_model(arch, size);
    let graph = model.export([1, in_channels, size, size]);
    let dev = Default::default();
    let mut c = card(arch, size);
    let (_, tract) = build_onnx(&graph, &mut c, WeightFormat::F32, "test").unwrap();
    let p = check_parity(&model, &tract, &[], 3, &dev).unwrap();
    assert!(p.relative <= PARITY_TOLERANCE, "{label}: {p:?}");
    // A well-conditioned network is held to the fixed limit, not loosened by its sensitivity.
    assert!(p.limit() == PARITY_TOLERANCE, "{label}: {p:?}");
    let (_, q) = build_onnx(&graph, &mut c, WeightFormat::Int8, "test").unwrap();
    let p = check_parity(&model, &q, &[], 2, &dev).unwrap();
    assert!(p.relative <= QUANTIZED_TOLERANCE, "{label} int8: {p:?}");
}

#[test]
fn transposed_unet_matches_in_tract() {
    check(Upsampling::Transposed, 2, 1);
}

#[test]
fn bilinear_unet_with_rgb_input_and_more_classes_matches_in_tract() {
    check(Upsampling::Bilinear, 4, 3);
}

#[test]
fn jmedseg_layout_unet_matches_in_tract() {
    let mut arch = Architecture::by_name("unet", 3, 2).unwrap();
    arch.set_option("base_width", "4").unwrap();
    arch.set_option("depth", "3").unwrap();
    arch.set_option("layout", "jmedseg").unwrap();
    check_arch(&arch, "layout=jmedseg");
}

#[test]
fn tampered_weights_are_refused() {
    let mut arch = Architecture::by_name("unet", 1, 2).unwrap();
    arch.set_option("base_width", "2").unwrap();
    arch.set_option("depth", "2").unwrap();
    let model = trained_looking_model(&arch, 16);
    let mut c = card(&arch, 16);
    let (mut proto, _) = build_onnx(
        &model.export([1, 1, 16, 16]),
        &mut c,
        WeightFormat::F32,
        "test",
    )
    .unwrap();
    let init = &mut proto.graph.as_mut().unwrap().initializer[0];
    init.raw_data[0] ^= 0x40;
    let bytes = medseg_runtime::onnx::encode(&proto);
    let err = medseg_runtime::Segmenter::from_bytes(&bytes, "tampered.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tampered.onnx") && err.contains("do not match"),
        "{err}"
    );
    let err = medseg_runtime::Segmenter::from_bytes(&bytes[..bytes.len() / 2], "cut.onnx")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("cut.onnx"), "{err}");
}

/// R2U-Net applies each recurrent convolution `t + 1` times: the file stores its weights once
/// (shared initializers), the card counts them once, and tract still matches Burn.
#[test]
fn recurrent_weights_are_stored_once() {
    let mut arch = Architecture::by_name("r2unet", 1, 2).unwrap();
    arch.set_option("base_width", "4").unwrap();
    arch.set_option("depth", "2").unwrap();
    let model = trained_looking_model(&arch, 16);
    let graph = model.export([1, 1, 16, 16]);
    let mut c = card(&arch, 16);
    let (proto, tract) = build_onnx(&graph, &mut c, WeightFormat::F32, "test").unwrap();
    let stored_floats: usize = proto
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .filter(|t| t.data_type == 1)
        .map(|t| t.raw_data.len() / 4)
        .sum();
    let learned = burn::module::Module::num_params(&model);
    assert_eq!(graph.parameter_count(), learned);
    // Besides the weights only a few scalars (epsilons) are stored.
    assert!(
        stored_floats >= learned && stored_floats < learned + 16,
        "{stored_floats} floats stored for {learned} parameters"
    );
    let p = check_parity(&model, &tract, &[], 2, &Default::default()).unwrap();
    assert!(p.relative <= PARITY_TOLERANCE, "{p:?}");
}

/// SegNet's max-unpooling puts each value where its window's maximum was: on an image with
/// flat regions the windows there are ties, and rounding that differs from one position to
/// the next (as it does between two f32 programs) moves values to other pixels. The
/// sensitivity estimate must see that (the input is jittered too, not only the weights), and
/// the f64 check must vouch for the graph, where Burn and tract agree.
#[test]
fn max_unpooling_ties_are_seen_and_judged_in_f64() {
    let arch = Architecture::tiny("segnet", 1, 2).unwrap();
    let size = 32;
    // A flat left half (ties), a textured right half.
    let flat: Vec<f32> = (0..size * size)
        .map(|i| {
            if i % size < size / 2 {
                0.75
            } else {
                ((i * 29) % 13) as f32 / 6.0 - 1.0
            }
        })
        .collect();
    let dev = Default::default();
    // Whether the ties matter depends on the (unseeded, shared) random weights: where a tiny
    // model's few channels are all negative on the flat half, ReLU leaves ties of zeros,
    // which unpool to zeros wherever they go. So models are drawn until one shows the ties;
    // the rule is checked on every one drawn.
    let mut seen = None;
    for _ in 0..8 {
        let model = trained_looking_model(&arch, size);
        let graph = model.export([1, 1, size, size]);
        let mut c = card(&arch, size);
        let (proto, tract) = build_onnx(&graph, &mut c, WeightFormat::F32, "test").unwrap();
        let inputs = std::slice::from_ref(&flat);
        let p = check_export_parity(&model, &tract, &proto, inputs, 1, &dev).unwrap();
        // Whether tract breaks the ties as Burn did varies with the weights; where it does
        // not, the f64 comparison must have been made.
        assert_eq!(
            p.f64_relative.is_some(),
            p.relative > PARITY_TOLERANCE,
            "{p:?}"
        );
        if p.sensitivity > PARITY_TOLERANCE {
            let d = check_f64(&model, &proto, [1, 1, size, size], inputs, &dev).unwrap();
            assert!(d <= F64_TOLERANCE, "{d:.2e}");
            seen = Some(p);
            break;
        }
    }
    assert!(seen.is_some(), "ties went unnoticed in 8 models");
}

/// The pass rule: within 1e-4 at once; beyond it only with f64 agreement, and then within
/// the sensitivity limit or with (nearly) the same predictions.
#[test]
fn parity_rule_needs_f64_agreement_beyond_the_fixed_tolerance() {
    let p = Parity {
        max_abs_diff: 0.5,
        logit_range: 10.0,
        relative: 0.05,
        sensitivity: 1e-3,
        p999_relative: 0.03,
        mask_disagreement: 0.0,
        f64_relative: None,
    };
    assert!(!p.passes(), "no f64 check");
    assert!(
        !Parity {
            f64_relative: Some(1e-3),
            ..p
        }
        .passes(),
        "wrong in f64"
    );
    assert!(
        Parity {
            f64_relative: Some(1e-8),
            ..p
        }
        .passes(),
        "right in f64, same masks"
    );
    let differing = Parity {
        f64_relative: Some(1e-8),
        mask_disagreement: 0.01,
        ..p
    };
    assert!(!differing.passes(), "right in f64, other masks");
    let sensitive = Parity {
        sensitivity: 0.02,
        ..differing
    };
    assert!(sensitive.passes(), "within 4x the sensitivity");
    assert!(
        Parity {
            relative: 5e-5,
            ..p
        }
        .passes(),
        "within 1e-4"
    );
}

/// The f64 check is not blind: a graph of other weights differs by a good part of the range.
#[test]
fn f64_check_tells_a_wrong_graph() {
    let arch = Architecture::tiny("unet", 1, 2).unwrap();
    let size = 16;
    let model = trained_looking_model(&arch, size);
    let other = trained_looking_model(&arch, size);
    let mut c = card(&arch, size);
    let (proto, _) = build_onnx(
        &other.export([1, 1, size, size]),
        &mut c,
        WeightFormat::F32,
        "test",
    )
    .unwrap();
    let x: Vec<f32> = (0..size * size)
        .map(|i| (i % 7) as f32 / 3.0 - 1.0)
        .collect();
    let d = check_f64(
        &model,
        &proto,
        [1, 1, size, size],
        &[x],
        &Default::default(),
    )
    .unwrap();
    assert!(d > 1e-2, "{d:.2e}");
}

/// DeepLab's other encoders (depthwise separable and inverted residual blocks, ReLU6) at
/// both output strides export with parity.
#[test]
fn deeplab_xception_and_mobilenet_match_in_tract() {
    for backbone in ["xception", "mobilenetv2"] {
        for output_stride in ["16", "8"] {
            let mut arch = Architecture::tiny("deeplab", 1, 2).unwrap();
            arch.set_option("backbone", backbone).unwrap();
            arch.set_option("output_stride", output_stride).unwrap();
            check_arch(&arch, &format!("deeplab {backbone} os {output_stride}"));
        }
    }
}
