//! Which zoo members hold a backbone that torchvision's ImageNet checkpoints fit, and how
//! torchvision's state-dict keys name its parameters. Reading the files is the trainer's
//! (`medseg_trainer::pretrained_backbone`, with burn-store); this side knows only the modules
//! and the names, so the models crate stays free of file formats.
//!
//! torchvision -> here:
//! - ResNet: the same keys, except `downsample.0` / `downsample.1` (a Sequential) which are
//!   `downsample.conv` / `downsample.bn`; `fc.*` is the classifier, not used.
//! - VGG: `features.{i}` -> `stages.{s}.convs.{k}.conv` (and `features.{i + 1}` -> `.bn` in the
//!   `_bn` variants), `i` from [`torchvision_feature_index`]; `classifier.*` not used.
//! - Both: BatchNorm's `weight` / `bias` are Burn's `gamma` / `beta` (burn-store's PyTorch
//!   adapter renames them by module type); `num_batches_tracked` has no counterpart.
//!
//! The patterns are written out here rather than derived from the modules: the two names are
//! fixed by torchvision's module layout, which nothing on the Burn side describes.

use burn::tensor::backend::Backend;

use super::resnet::{ResNet, ResNetConfig, ResNetDepth};
use super::vgg::{Vgg, VggConfig, VggDepth, torchvision_feature_index};
use crate::registry::{Architecture, ZooConfig, ZooNet};

/// torchvision's first-stage width of every ResNet and VGG.
pub const TORCHVISION_BASE_WIDTH: usize = 64;

/// A backbone a torchvision checkpoint can fill, with the settings it was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorchvisionBackbone {
    ResNet(ResNetConfig),
    Vgg(VggConfig),
}

/// The backbone module itself, to load weights into.
pub enum BackboneMut<'a, B: Backend> {
    ResNet(&'a mut ResNet<B>),
    Vgg(&'a mut Vgg<B>),
}

impl TorchvisionBackbone {
    /// torchvision's constructor of this architecture: `resnet34`, `vgg11`, `vgg16_bn`.
    pub fn torchvision_name(&self) -> String {
        match self {
            Self::ResNet(c) => match c.depth {
                ResNetDepth::Resnet18 => "resnet18",
                ResNetDepth::Resnet34 => "resnet34",
                ResNetDepth::Resnet50 => "resnet50",
                ResNetDepth::Resnet101 => "resnet101",
            }
            .to_string(),
            Self::Vgg(c) => {
                let depth = match c.depth {
                    VggDepth::Vgg11 => "vgg11",
                    VggDepth::Vgg16 => "vgg16",
                };
                if c.batch_norm {
                    format!("{depth}_bn")
                } else {
                    depth.to_string()
                }
            }
        }
    }

    /// One line for logs and errors: `resnet34 (torchvision stem, base width 64, 1 input
    /// channel)`.
    pub fn describe(&self) -> String {
        let (details, base, input) = match self {
            Self::ResNet(c) => (
                if c.deep_stem {
                    "JMedSeg's deep 3-conv stem"
                } else {
                    "torchvision's 7x7 stem"
                },
                c.base_width,
                c.in_channels,
            ),
            Self::Vgg(c) => ("convolution stages", c.base_width, c.in_channels),
        };
        let s = if input == 1 { "" } else { "s" };
        format!(
            "{} ({details}, base width {base}, {input} input channel{s})",
            self.torchvision_name()
        )
    }

    pub fn base_width(&self) -> usize {
        match self {
            Self::ResNet(c) => c.base_width,
            Self::Vgg(c) => c.base_width,
        }
    }

    pub fn in_channels(&self) -> usize {
        match self {
            Self::ResNet(c) => c.in_channels,
            Self::Vgg(c) => c.in_channels,
        }
    }

    /// Whether the backbone has JMedSeg's deep stem, whose `conv2`/`bn2`/`conv3`/`bn3`
    /// torchvision's ResNets lack (the deep-base ResNets of PSPNet's semseg code have them).
    pub fn deep_stem(&self) -> bool {
        matches!(self, Self::ResNet(c) if c.deep_stem)
    }

    /// Path (here) of the first convolution's weight, the one that reads the image.
    pub fn first_conv(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "conv1.weight",
            Self::Vgg(_) => "stages.0.convs.0.conv.weight",
        }
    }

    /// The same weight's key in a torchvision state dict.
    pub fn first_conv_torchvision(&self) -> &'static str {
        match self {
            Self::ResNet(_) => "conv1.weight",
            Self::Vgg(_) => "features.0.weight",
        }
    }

    /// (regular expression, replacement) pairs that turn torchvision keys into paths here,
    /// applied in order (burn-store's `KeyRemapper`); BatchNorm's weight/bias are left to the
    /// PyTorch adapter.
    pub fn remap_patterns(&self) -> Vec<(String, String)> {
        match self {
            Self::ResNet(_) => vec![
                (r"\.downsample\.0\.".into(), ".downsample.conv.".into()),
                (r"\.downsample\.1\.".into(), ".downsample.bn.".into()),
            ],
            Self::Vgg(c) => {
                let mut pairs = Vec::new();
                for (s, &n) in c.depth.convs().iter().enumerate() {
                    for k in 0..n {
                        let i = torchvision_feature_index(c.depth, c.batch_norm, s, k);
                        let here = format!("stages.{s}.convs.{k}");
                        pairs.push((format!(r"^features\.{i}\."), format!("{here}.conv.")));
                        if c.batch_norm {
                            let j = i + 1;
                            pairs.push((format!(r"^features\.{j}\."), format!("{here}.bn.")));
                        }
                    }
                }
                pairs
            }
        }
    }

    /// The torchvision key of the parameter at `path` here (the inverse of
    /// [`Self::remap_patterns`] plus BatchNorm's renaming), for messages.
    pub fn torchvision_key(&self, path: &str) -> String {
        let (stem, last) = path.rsplit_once('.').unwrap_or(("", path));
        let is_bn = stem.rsplit('.').next().is_some_and(is_bn_name);
        let last = match (is_bn, last) {
            (true, "gamma") => "weight",
            (true, "beta") => "bias",
            (_, other) => other,
        };
        let stem = match self {
            Self::ResNet(_) => stem
                .replace(".downsample.conv", ".downsample.0")
                .replace(".downsample.bn", ".downsample.1"),
            Self::Vgg(c) => vgg_torchvision_stem(c, stem).unwrap_or_else(|| stem.to_string()),
        };
        if stem.is_empty() {
            last.to_string()
        } else {
            format!("{stem}.{last}")
        }
    }

    /// Keys of a torchvision checkpoint that no backbone here uses by design: the classifier
    /// and BatchNorm's update counter.
    pub fn unused_by_design(key: &str) -> bool {
        key.starts_with("fc.")
            || key.starts_with("classifier.")
            || key.ends_with("num_batches_tracked")
    }
}

/// `bn`, `bn1`, `bn2`, ...: the BatchNorm fields of the backbones.
fn is_bn_name(name: &str) -> bool {
    name.strip_prefix("bn")
        .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
}

/// `stages.{s}.convs.{k}.conv|bn` -> `features.{i}` (or `{i + 1}` for the BatchNorm).
fn vgg_torchvision_stem(c: &VggConfig, stem: &str) -> Option<String> {
    let parts: Vec<&str> = stem.split('.').collect();
    let ["stages", s, "convs", k, which] = parts.as_slice() else {
        return None;
    };
    let (s, k) = (s.parse().ok()?, k.parse().ok()?);
    if s >= 5 || k >= c.depth.convs()[s] {
        return None;
    }
    let i = torchvision_feature_index(c.depth, c.batch_norm, s, k);
    match *which {
        "conv" => Some(format!("features.{i}")),
        "bn" => Some(format!("features.{}", i + 1)),
        _ => None,
    }
}

impl ZooConfig {
    /// The member's torchvision-shaped backbone, with the name of the field that holds it.
    pub fn torchvision_backbone(&self) -> Option<(&'static str, TorchvisionBackbone)> {
        use TorchvisionBackbone::ResNet as R;
        let resnet = |c: ResNetConfig| Some(("backbone", R(c)));
        match self {
            Self::ResUnet(c) => resnet(c.backbone_config()),
            Self::CeNet(c) => resnet(c.backbone_config()),
            Self::DLinkNet(c) => resnet(c.backbone_config()),
            Self::PspNet(c) => resnet(c.backbone_config()),
            // Only with a ResNet backbone (Xception and MobileNetV2 take no torchvision file).
            Self::DeepLab(c) => c.resnet_config().and_then(resnet),
            Self::DaNet(c) => resnet(c.backbone_config()),
            Self::OcNet(c) => resnet(c.backbone_config()),
            Self::EaNet(c) => resnet(c.backbone_config()),
            Self::OcrNet(c) => resnet(c.backbone_config()),
            Self::TransUnet(c) => resnet(c.backbone_config()),
            Self::Ternaus(c) => Some(("encoder", TorchvisionBackbone::Vgg(c.vgg()))),
            _ => None,
        }
    }
}

impl<B: Backend> ZooNet<B> {
    /// The module [`ZooConfig::torchvision_backbone`] describes.
    pub fn torchvision_backbone_mut(&mut self) -> Option<BackboneMut<'_, B>> {
        use BackboneMut::ResNet as R;
        match self {
            Self::ResUnet(m) => Some(R(&mut m.backbone)),
            Self::CeNet(m) => Some(R(&mut m.backbone)),
            Self::DLinkNet(m) => Some(R(&mut m.backbone)),
            Self::PspNet(m) => Some(R(&mut m.backbone)),
            Self::DeepLab(m) => m.backbone.as_mut().map(R),
            Self::DaNet(m) => Some(R(&mut m.backbone)),
            Self::OcNet(m) => Some(R(&mut m.backbone)),
            Self::EaNet(m) => Some(R(&mut m.backbone)),
            Self::OcrNet(m) => Some(R(&mut m.backbone)),
            Self::TransUnet(m) => Some(R(&mut m.backbone)),
            Self::Ternaus(m) => Some(BackboneMut::Vgg(&mut m.encoder)),
            _ => None,
        }
    }
}

impl Architecture {
    /// See [`ZooConfig::torchvision_backbone`].
    pub fn torchvision_backbone(&self) -> Option<(&'static str, TorchvisionBackbone)> {
        self.net.torchvision_backbone()
    }

    /// Registry names of the members a torchvision checkpoint can start.
    pub fn with_torchvision_backbone() -> Vec<&'static str> {
        Self::names()
            .into_iter()
            .filter(|n| Self::by_name(n, 1, 2).is_ok_and(|a| a.torchvision_backbone().is_some()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::module::Module;

    use super::*;

    #[test]
    fn every_member_with_a_described_backbone_holds_that_module() {
        let dev = Default::default();
        for name in Architecture::names() {
            let arch = Architecture::tiny(name, 1, 2).unwrap();
            let mut model = arch.init::<Flex>(&dev).unwrap();
            let described = arch.torchvision_backbone();
            let module = model.net.torchvision_backbone_mut();
            match (described, module) {
                (None, None) => {}
                (Some((_, TorchvisionBackbone::ResNet(c))), Some(BackboneMut::ResNet(m))) => {
                    let expected = c.init::<Flex>(&dev);
                    assert_eq!(m.num_params(), expected.num_params(), "{name}");
                    assert_eq!(
                        m.conv1.weight.dims(),
                        expected.conv1.weight.dims(),
                        "{name}"
                    );
                }
                (Some((_, TorchvisionBackbone::Vgg(c))), Some(BackboneMut::Vgg(m))) => {
                    assert_eq!(m.num_params(), c.init::<Flex>(&dev).num_params(), "{name}");
                }
                _ => panic!("{name}: the description and the module disagree"),
            }
        }
        let names = Architecture::with_torchvision_backbone();
        for n in [
            "resunet",
            "ternaus",
            "cenet",
            "dlink",
            "pspnet",
            "transunet",
        ] {
            assert!(names.contains(&n), "{names:?}");
        }
        assert!(
            !names.contains(&"unet") && !names.contains(&"lrfea"),
            "{names:?}"
        );
    }

    #[test]
    fn keys_map_back_to_torchvision_names() {
        let resnet = TorchvisionBackbone::ResNet(ResNetConfig::new(ResNetDepth::Resnet34, 1));
        for (here, tv) in [
            ("conv1.weight", "conv1.weight"),
            ("bn1.gamma", "bn1.weight"),
            ("bn1.running_var", "bn1.running_var"),
            (
                "layer2.0.downsample.conv.weight",
                "layer2.0.downsample.0.weight",
            ),
            ("layer2.0.downsample.bn.beta", "layer2.0.downsample.1.bias"),
            ("layer3.1.bn2.gamma", "layer3.1.bn2.weight"),
        ] {
            assert_eq!(resnet.torchvision_key(here), tv);
        }
        assert_eq!(resnet.torchvision_name(), "resnet34");
        let vgg = |depth, batch_norm| {
            TorchvisionBackbone::Vgg(VggConfig {
                depth,
                in_channels: 3,
                base_width: 64,
                batch_norm,
            })
        };
        let v16 = vgg(VggDepth::Vgg16, false);
        assert_eq!(
            v16.torchvision_key("stages.4.convs.2.conv.weight"),
            "features.28.weight"
        );
        assert_eq!(
            v16.torchvision_key("stages.0.convs.1.conv.bias"),
            "features.2.bias"
        );
        let v11bn = vgg(VggDepth::Vgg11, true);
        assert_eq!(v11bn.torchvision_name(), "vgg11_bn");
        assert_eq!(
            v11bn.torchvision_key("stages.1.convs.0.bn.gamma"),
            "features.5.weight"
        );
        // Every VGG16 conv's pattern is anchored at its own index: features.2 is not features.28.
        let patterns = v16.remap_patterns();
        assert_eq!(patterns.len(), 13);
        assert!(patterns.contains(&(r"^features\.2\.".into(), "stages.0.convs.1.conv.".into())));
    }
}
