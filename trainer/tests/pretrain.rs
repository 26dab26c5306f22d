//! `medseg-train pretrain` end to end: a tiny model pre-trained for two steps on a generated
//! phantom, then `train --init-from` that run starts from the pretrained encoder.

use std::path::Path;
use std::process::Command;

use burn::backend::Flex;
use medseg_trainer::train::RunDir;
use medseg_trainer::train::module_paths::parameters;

fn medseg_train(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_medseg-train"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "medseg-train {args:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn pretrain_then_train_init_from_starts_with_the_pretrained_encoder() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("phantom");
    let ssl = tmp.path().join("ssl");
    let fine = tmp.path().join("fine");
    medseg_train(&["synth", "--out", s(&data), "--scale", "0.02"]);
    let model = [
        "--model",
        "unet",
        "--model-opt",
        "base_width=4",
        "--model-opt",
        "depth=2",
    ];
    let mut pre = vec![
        "pretrain",
        "--data",
        s(&data),
        "--out",
        s(&ssl),
        "--epochs",
        "1",
        "--max-steps-per-epoch",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "32",
        "--crop-size",
        "0",
        "--queue",
        "16",
        "--dim",
        "8",
        "--probe-data",
        s(&data),
    ];
    pre.extend(model);
    medseg_train(&pre);
    for f in [
        "run.json",
        "best.bin",
        "head.bin",
        "key.bin",
        "queue.json",
        "log.csv",
        "probe.json",
    ] {
        assert!(ssl.join(f).is_file(), "{f} missing");
    }
    let probe: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ssl.join("probe.json")).unwrap()).unwrap();
    assert!(probe["pretrained_accuracy"].as_f64().unwrap() >= 0.0);
    // The same probe on the finished run, on a subset of each split.
    std::fs::remove_file(ssl.join("probe.json")).unwrap();
    medseg_train(&[
        "probe",
        "--run",
        s(&ssl),
        "--data",
        s(&data),
        "--max-images",
        "3",
        "--k",
        "1",
    ]);
    let probe: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ssl.join("probe.json")).unwrap()).unwrap();
    assert_eq!(probe["bank_images"], 3);
    assert_eq!(probe["query_images"], 3);
    assert_eq!(probe["layer"], "encoder", "the pre-training's tap");
    // lr 0: the fine-tuning run's weights stay what it started from.
    let mut train = vec![
        "train",
        "--data",
        s(&data),
        "--out",
        s(&fine),
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
        "--lr",
        "0",
        "--poly",
        "0",
        "--max-val-images",
        "2",
        "--init-from",
        s(&ssl),
    ];
    train.extend(model);
    medseg_train(&train);
    let dev = Default::default();
    let pretrained = parameters(&RunDir::new(&ssl).load_model::<Flex>("best", &dev).unwrap());
    let tuned = parameters(&RunDir::new(&fine).load_model::<Flex>("best", &dev).unwrap());
    let key = "stem.first.conv.weight";
    assert_eq!(
        pretrained[key], tuned[key],
        "train --init-from loads the pretrained encoder"
    );
    // And pre-training moved it away from the random start (same seed, same init).
    let cfg = RunDir::new(&ssl).config().unwrap();
    <Flex as burn::tensor::backend::Backend>::seed(&dev, cfg.seed);
    let random = parameters(&cfg.architecture.init::<Flex>(&dev).unwrap());
    assert_ne!(pretrained[key], random[key]);
}
