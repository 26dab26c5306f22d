//! Image-classification backbones that segmentation networks reuse as encoders (ResNet, VGG,
//! Xception, MobileNetV2, HarDNet, JMedSeg's large-receptive-field ResNet).
//!
//! Each returns the feature map of every stage, so a member can take its skips where it likes
//! and tap its own encoder output. Field names follow torchvision's modules (`conv1`, `bn1`,
//! `layer1`..`layer4`, blocks with `conv1`/`bn1`/..., `downsample`), so torchvision's ImageNet
//! checkpoints load with a small key mapping ([`torchvision`]; `medseg-train train
//! --pretrained-backbone FILE`). Without such a file every backbone starts from random weights:
//! nothing is downloaded here.

pub mod hardnet;
pub mod lrf_resnet;
pub mod mobilenet_v2;
pub mod resnet;
pub mod torchvision;
pub mod vgg;
pub mod xception;
