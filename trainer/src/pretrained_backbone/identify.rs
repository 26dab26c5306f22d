//! What a checkpoint holds, guessed from its torchvision keys and shapes, for the hint of a
//! refusal: "the file holds a resnet50 at base width 64; this backbone is a resnet34".

use std::collections::BTreeMap;

/// A torchvision ResNet or VGG recognised from its keys (names as torchvision's
/// constructors), or `None`. `shapes` is keyed by torchvision key, without a wrapper prefix.
pub fn describe(shapes: &BTreeMap<String, Vec<usize>>) -> Option<String> {
    resnet(shapes).or_else(|| vgg(shapes))
}

fn resnet(shapes: &BTreeMap<String, Vec<usize>>) -> Option<String> {
    let width = shapes.get("conv1.weight")?.first().copied()?;
    let mut blocks = [0usize; 4];
    for key in shapes.keys() {
        for (l, count) in blocks.iter_mut().enumerate() {
            let Some(rest) = key.strip_prefix(&format!("layer{}.", l + 1)) else {
                continue;
            };
            if let Some(b) = rest.split('.').next().and_then(|b| b.parse::<usize>().ok()) {
                *count = (*count).max(b + 1);
            }
        }
    }
    if blocks[0] == 0 {
        return None;
    }
    let bottleneck = shapes.contains_key("layer1.0.conv3.weight");
    let name = match (blocks, bottleneck) {
        ([2, 2, 2, 2], false) => "resnet18".to_string(),
        ([3, 4, 6, 3], false) => "resnet34".to_string(),
        ([3, 4, 6, 3], true) => "resnet50".to_string(),
        ([3, 4, 23, 3], true) => "resnet101".to_string(),
        ([3, 8, 36, 3], true) => "resnet152".to_string(),
        (b, bottle) => format!(
            "ResNet with {} blocks {}/{}/{}/{}",
            if bottle { "bottleneck" } else { "basic" },
            b[0],
            b[1],
            b[2],
            b[3]
        ),
    };
    let stem = if shapes.contains_key("conv2.weight") {
        "deep 3-conv stem"
    } else {
        "7x7 stem"
    };
    let base = if shapes.contains_key("conv2.weight") {
        // A deep stem's conv1 is the base width, as its conv2; layer1's inner width tells.
        shapes
            .get("layer1.0.conv1.weight")
            .and_then(|s| s.first().copied())
            .unwrap_or(width)
    } else {
        width
    };
    Some(format!("{name} ({stem}, base width {base})"))
}

fn vgg(shapes: &BTreeMap<String, Vec<usize>>) -> Option<String> {
    let convs: Vec<&Vec<usize>> = shapes
        .iter()
        .filter(|(k, s)| k.starts_with("features.") && k.ends_with(".weight") && s.len() == 4)
        .map(|(_, s)| s)
        .collect();
    let first = shapes.get("features.0.weight")?;
    let bn = shapes
        .keys()
        .any(|k| k.starts_with("features.") && k.ends_with(".running_mean"));
    let name = match (convs.len(), bn) {
        (8, _) => "vgg11",
        (10, _) => "vgg13",
        (13, _) => "vgg16",
        (16, _) => "vgg19",
        (n, true) => return Some(format!("VGG with {n} convolutions and BatchNorm")),
        (n, false) => return Some(format!("VGG with {n} convolutions")),
    };
    let bn = if bn { "_bn" } else { "" };
    Some(format!("{name}{bn} (base width {})", first.first()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[(&str, &[usize])]) -> BTreeMap<String, Vec<usize>> {
        list.iter()
            .map(|(k, s)| (k.to_string(), s.to_vec()))
            .collect()
    }

    #[test]
    fn resnets_and_vggs_are_named_from_their_keys() {
        let mut r50 = keys(&[("conv1.weight", &[64, 3, 7, 7])]);
        for (l, n) in [3, 4, 6, 3].into_iter().enumerate() {
            for b in 0..n {
                r50.insert(format!("layer{}.{b}.conv1.weight", l + 1), vec![64]);
            }
        }
        r50.insert("layer1.0.conv3.weight".into(), vec![256]);
        assert_eq!(
            describe(&r50).unwrap(),
            "resnet50 (7x7 stem, base width 64)"
        );
        let vgg = keys(&[
            ("features.0.weight", &[8, 3, 3, 3]),
            ("features.1.running_mean", &[8]),
        ]);
        assert_eq!(
            describe(&vgg).unwrap(),
            "VGG with 1 convolutions and BatchNorm"
        );
        assert!(describe(&keys(&[("encoder.w", &[1])])).is_none());
    }
}
