//! Pre-trained backbones (`train --pretrained-backbone`) against checkpoints torch wrote
//! (`scripts/make-pretrained-fixture.py`, committed in tests/fixtures/pretrained): the loaded
//! backbone reproduces torch's features on the same input within 1e-4, from a `.pt` and from
//! a `.safetensors` file, in half precision too; a gray model computes what torch computes
//! on the gray image repeated in RGB; files that do not fit are refused naming the file, the
//! keys and both shapes; garbage and truncated files are errors, not panics; and `train`
//! starts a run from such a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::{Autodiff, Flex};
use burn::tensor::Tensor;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, ModuleStore, SafetensorsStore,
};

use medseg_models::backbones::resnet::{ResNetConfig, ResNetDepth};
use medseg_models::backbones::torchvision::BackboneMut;
use medseg_models::burn_ops::BurnOps;
use medseg_models::{Architecture, SegModel, StnConfig};
use medseg_trainer::pretrained_backbone::{PretrainedError, load};
use medseg_trainer::train::module_paths::parameters;

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pretrained")
        .join(name)
}

/// torch's inputs and outputs, by name (see the fixture script).
fn expected() -> BTreeMap<String, Tensor<Flex, 4>> {
    let mut store = SafetensorsStore::from_file(fixture("expected.safetensors"));
    store
        .get_all_snapshots()
        .unwrap()
        .iter()
        .map(|(k, s)| {
            (
                k.clone(),
                Tensor::from_data(s.to_data().unwrap(), &Default::default()),
            )
        })
        .collect()
}

fn assert_close(ours: &Tensor<Flex, 4>, torch: &Tensor<Flex, 4>, what: &str) {
    assert_eq!(ours.dims(), torch.dims(), "{what}");
    let diff: f32 = (ours.clone() - torch.clone()).abs().max().into_scalar();
    let scale: f32 = torch.clone().abs().max().into_scalar();
    assert!(
        scale > 0.05,
        "{what}: torch's output is ~0 ({scale}), the test would be blind"
    );
    assert!(diff <= TOLERANCE, "{what}: max |ours - torch| = {diff}");
}

fn arch(name: &str, channels: usize, opts: &[&str]) -> Architecture {
    let mut a = Architecture::by_name(name, channels, 2).unwrap();
    for o in opts {
        let (k, v) = o.split_once('=').unwrap();
        a.set_option(k, v).unwrap();
    }
    a
}

/// CE-Net on a ResNet-18 at the fixture's width 4.
fn cenet18(channels: usize) -> Architecture {
    arch("cenet", channels, &["backbone=resnet18", "base_width=4"])
}

fn loaded<B: burn::tensor::backend::Backend>(
    a: &Architecture,
    file: &str,
) -> (SegModel<B>, medseg_trainer::pretrained_backbone::Loaded) {
    let mut model = a.init::<B>(&Default::default()).unwrap();
    let report = load(&mut model, a, &fixture(file)).unwrap();
    (model, report)
}

fn resnet_features(model: &mut SegModel<Flex>, x: Tensor<Flex, 4>) -> Vec<Tensor<Flex, 4>> {
    let Some(BackboneMut::ResNet(net)) = model.net.torchvision_backbone_mut() else {
        panic!("a ResNet backbone")
    };
    let f = net.run(&mut BurnOps::new(&Default::default()), x);
    std::iter::once(f.stem).chain(f.stages).collect()
}

#[test]
fn torch_resnet_features_are_reproduced_from_pt_and_safetensors() {
    let e = expected();
    for file in ["resnet18-w4.pt", "resnet18-w4.safetensors"] {
        let (mut model, report) = loaded::<Flex>(&cenet18(3), file);
        // 20 convolutions and 20 BatchNorms of 4 tensors; fc's weight and bias and the 20
        // BatchNorm counters are not used.
        assert_eq!(report.tensors, 20 + 20 * 4, "{file}");
        assert_eq!(report.unused, 2 + 20, "{file}");
        assert!(!report.summed_rgb && report.prefix.is_empty(), "{file}");
        assert_eq!(report.field, "backbone");
        let features = resnet_features(&mut model, e["resnet.input_rgb"].clone());
        for (ours, name) in features
            .iter()
            .zip(["stem", "layer1", "layer2", "layer3", "layer4"])
        {
            assert_close(
                ours,
                &e[&format!("resnet.{name}")],
                &format!("{file} {name}"),
            );
        }
    }
}

#[test]
fn a_gray_model_sums_the_rgb_filters() {
    let e = expected();
    let (mut model, report) = loaded::<Flex>(&cenet18(1), "resnet18-w4.pt");
    assert!(report.summed_rgb);
    let features = resnet_features(&mut model, e["resnet.input_gray"].clone());
    assert_close(&features[4], &e["resnet.gray.layer4"], "gray layer4");
}

#[test]
fn a_half_precision_vgg_fills_ternaus_encoder() {
    let e = expected();
    let a = arch("ternaus", 3, &["encoder=vgg11", "base_width=2"]);
    let (mut model, report) = loaded::<Flex>(&a, "vgg11-w2-half.pt");
    assert_eq!((report.tensors, report.unused), (16, 2));
    assert_eq!(report.field, "encoder");
    let Some(BackboneMut::Vgg(vgg)) = model.net.torchvision_backbone_mut() else {
        panic!("a VGG encoder")
    };
    let stages = vgg.run(
        &mut BurnOps::new(&Default::default()),
        e["vgg.input_rgb"].clone(),
    );
    for (i, ours) in stages.iter().enumerate() {
        let name = format!("vgg.stage{}", i + 1);
        assert_close(ours, &e[&name], &name);
    }
}

/// The training backend, behind a spatial transformer, and a member that builds three of
/// the four layers: the backbone takes the file, its parameters stay trainable, the rest of
/// the model (the transformer included) is not touched.
#[test]
fn a_training_model_with_a_transformer_keeps_all_but_its_backbone() {
    type A = Autodiff<Flex>;
    let a = arch(
        "resunet",
        1,
        &["backbone=resnet18", "base_width=4", "deep_stem=false"],
    )
    .with_stn(StnConfig::default());
    let mut model = a.init::<A>(&Default::default()).unwrap();
    let before = parameters(&model);
    let report = load(&mut model, &a, &fixture("resnet18-w4.safetensors")).unwrap();
    // layer4: 2 blocks of 2 conv + 2 BN (4 tensors each) and a downsample (conv + BN).
    assert_eq!(report.unused, 22 + 2 * 10 + 5);
    let after = parameters(&model);
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert!(
        changed.iter().all(|k| k.starts_with("backbone.")),
        "{changed:?}"
    );
    assert_eq!(changed.len(), report.tensors);
    let medseg_models::ZooNet::ResUnet(net) = &model.net else {
        panic!("resunet")
    };
    assert!(net.backbone.conv1.weight.is_require_grad());
}

fn refusal(a: &Architecture, file: &Path) -> String {
    let mut model = a.init::<Flex>(&Default::default()).unwrap();
    let before = parameters(&model);
    let err = load(&mut model, a, file).unwrap_err().to_string();
    eprintln!("{err}\n");
    assert!(
        parameters(&model) == before,
        "a refused file changed the model: {err}"
    );
    assert!(
        err.contains(file.file_name().unwrap().to_str().unwrap()),
        "the error names the file: {err}"
    );
    err
}

#[test]
fn files_that_do_not_fit_are_refused_with_keys_and_shapes() {
    let pt = fixture("resnet18-w4.pt");
    // Another depth: ResNet-34 has more blocks than the file.
    let err = refusal(
        &arch("cenet", 1, &["backbone=resnet34", "base_width=4"]),
        &pt,
    );
    assert!(err.contains("layer1.2.conv1.weight"), "{err}");
    assert!(
        err.contains("the file holds a resnet18 (7x7 stem, base width 4)"),
        "{err}"
    );
    assert!(err.contains("this backbone is a resnet34"), "{err}");
    // Another width (a width-scaled model): the key and both shapes.
    let err = refusal(
        &arch("cenet", 1, &["backbone=resnet18", "base_width=8"]),
        &pt,
    );
    assert!(
        err.contains(
            "layer1.0.conv1.weight: the file has [4, 4, 3, 3], this backbone [8, 8, 3, 3]"
        ),
        "{err}"
    );
    assert!(err.contains("4 filters and this backbone's 8"), "{err}");
    // JMedSeg's deep stem: torchvision files lack conv2/conv3.
    let err = refusal(
        &arch("resunet", 1, &["backbone=resnet18", "base_width=4"]),
        &pt,
    );
    assert!(
        err.contains("conv2.weight") && err.contains("deep stem"),
        "{err}"
    );
    assert!(err.contains("deep_stem=false"), "{err}");
    // A first convolution that reads neither 3 nor 1 channels.
    let err = refusal(&cenet18(2), &pt);
    assert!(
        err.contains("reads 3 channels in the file and 2 here"),
        "{err}"
    );
    // A VGG file for a ResNet.
    let err = refusal(&cenet18(1), &fixture("vgg11-w2-half.pt"));
    assert!(
        err.contains("the file holds a vgg11 (base width 2)"),
        "{err}"
    );
}

/// A bottleneck ResNet-50 file, written here by burn-store with torchvision's names (the same
/// way torch names them: `downsample.0`, BatchNorm `weight`/`bias`) behind DataParallel's
/// `module.` prefix, for a ResNet-34 member: the blocks' first convolutions are 1x1 in the
/// file and 3x3 here. A ResNet-50 member takes it, prefix stripped.
#[test]
fn a_resnet50_file_for_a_resnet34_backbone_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resnet50-w2.safetensors");
    let r50 = ResNetConfig {
        base_width: 2,
        ..ResNetConfig::new(ResNetDepth::Resnet50, 3)
    }
    .init::<Flex>(&Default::default());
    let remap = KeyRemapper::new()
        .add_pattern(r"\.downsample\.conv\.", ".downsample.0.")
        .unwrap()
        .add_pattern(r"\.downsample\.bn\.", ".downsample.1.")
        .unwrap()
        .add_pattern("^", "module.")
        .unwrap();
    let mut store = SafetensorsStore::from_file(&file)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remap);
    r50.save_into(&mut store).unwrap();
    let err = refusal(
        &arch("dlink", 1, &["backbone=resnet34", "base_width=2"]),
        &file,
    );
    assert!(
        err.contains(
            "layer1.0.conv1.weight: the file has [2, 2, 1, 1], this backbone [2, 2, 3, 3]"
        ),
        "{err}"
    );
    assert!(err.contains("the file holds a resnet50"), "{err}");
    // The same file fits a ResNet-50 member exactly: Burn's own save, read back.
    let a = arch("dlink", 3, &["backbone=resnet50", "base_width=2"]);
    let mut model = a.init::<Flex>(&Default::default()).unwrap();
    let report = load(&mut model, &a, &file).unwrap();
    assert_eq!(report.prefix, "module.");
    let medseg_models::ZooNet::DLinkNet(net) = &model.net else {
        panic!("dlink")
    };
    assert_eq!(parameters(&net.backbone), parameters(&r50));
}

#[test]
fn garbage_truncated_and_missing_files_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let a = cenet18(1);
    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"this is not a checkpoint at all").unwrap();
    assert!(refusal(&a, &garbage).contains("neither a PyTorch checkpoint"));
    for name in [
        "resnet18-w4.pt",
        "resnet18-w4.safetensors",
        "vgg11-w2-half.pt",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for keep in [bytes.len() / 2, bytes.len() - 100, 64] {
            let cut = dir.path().join(format!("cut-{keep}-{name}"));
            std::fs::write(&cut, &bytes[..keep]).unwrap();
            let mut model = a.init::<Flex>(&Default::default()).unwrap();
            match load(&mut model, &a, &cut) {
                Err(PretrainedError::Unreadable { file, .. }) => assert_eq!(file, cut),
                other => panic!("{name} cut to {keep} bytes: {other:?}"),
            }
        }
    }
    let err = refusal(&a, &dir.path().join("absent.safetensors"));
    assert!(err.contains("absent.safetensors"), "{err}");
    // A member without such a backbone: the error lists those that have one.
    let unet = Architecture::by_name("unet", 1, 2).unwrap();
    let mut model = unet.init::<Flex>(&Default::default()).unwrap();
    let err = load(&mut model, &unet, &fixture("resnet18-w4.pt"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unet has no backbone"), "{err}");
    assert!(err.contains("cenet") && err.contains("ternaus"), "{err}");
}

fn medseg_train(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `train --pretrained-backbone` with `--freeze backbone`: the run records the file, and its
/// checkpoint's backbone convolutions are the file's (summed for the gray phantom).
#[test]
fn train_starts_from_the_file_and_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let run = tmp.path().join("run");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, text) = medseg_train(&["synth", "--out", &s(&data), "--scale", "0.02"]);
    assert!(ok, "{text}");
    let pt = fixture("resnet18-w4.pt");
    let common = [
        "train",
        "--data",
        &s(&data),
        "--model",
        "cenet",
        "--model-opt",
        "backbone=resnet18",
        "--model-opt",
        "base_width=4",
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--image-size",
        "32",
        "--crop-size",
        "0",
        "--max-val-images",
        "2",
        "--pretrained-backbone",
        &s(&pt),
    ]
    .map(String::from);
    let mut args: Vec<String> = common.to_vec();
    args.extend(["--out", &s(&run), "--freeze", "backbone", "--stn", "-v"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, text) = medseg_train(&args);
    assert!(ok, "{text}");
    assert!(text.contains("summed over R, G and B"), "{text}");
    let dir = medseg_trainer::train::RunDir::new(&run);
    let cfg = dir.config().unwrap();
    assert_eq!(
        cfg.pretrained_backbone,
        Some(std::fs::canonicalize(&pt).unwrap())
    );
    let trained = parameters(&dir.load_model::<Flex>("best", &Default::default()).unwrap());
    let (reference, _) = loaded::<Flex>(&cfg.architecture, "resnet18-w4.pt");
    let reference = parameters(&reference);
    for key in ["backbone.conv1.weight", "backbone.layer3.1.conv2.weight"] {
        assert_eq!(trained[key], reference[key], "{key}");
    }
    // run.json files written before the field load as "no file".
    let mut json = serde_json::to_value(&cfg).unwrap();
    json.as_object_mut().unwrap().remove("pretrained_backbone");
    let old: medseg_trainer::train::RunConfig = serde_json::from_value(json).unwrap();
    assert_eq!(old.pretrained_backbone, None);
    // A member without a ResNet/VGG backbone is refused before anything is written.
    let other = tmp.path().join("unet");
    let (ok, text) = medseg_train(&[
        "train",
        "--data",
        &s(&data),
        "--model",
        "unet",
        "--out",
        &s(&other),
        "--pretrained-backbone",
        &s(&pt),
    ]);
    assert!(!ok && text.contains("unet has no backbone"), "{text}");
    assert!(!other.join("run.json").exists());
}
