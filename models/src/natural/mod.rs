//! Segmentation networks from natural images (SegNet, DeepLab, PSPNet, ...), one file per
//! member, on the shared [`crate::blocks`] and [`crate::backbones`].

pub mod danet;
pub mod deeplab;
pub mod dlink;
pub mod eanet;
pub mod hardnet;
pub mod hrnet;
pub mod lrfea;
pub mod ocnet;
pub mod ocrnet;
pub mod pspnet;
pub mod segnet;
