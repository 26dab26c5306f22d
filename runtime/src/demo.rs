//! The embedded demo: a small trained UNet (int8 weights) and a few phantom slices with their
//! masks, so `medseg demo` runs with no files at all. Rebuilt by `scripts/make-demo-model.sh`.

/// The demo model (ONNX with its model card).
pub const MODEL: &[u8] = include_bytes!("../assets/demo/model.onnx");

/// A sample slice: name, PNG image, PNG class-index mask.
pub struct DemoSample {
    pub name: &'static str,
    pub image: &'static [u8],
    pub mask: &'static [u8],
}

macro_rules! sample {
    ($name:literal) => {
        DemoSample {
            name: $name,
            image: include_bytes!(concat!("../assets/demo/samples/", $name, ".png")),
            mask: include_bytes!(concat!("../assets/demo/samples/", $name, "_mask.png")),
        }
    };
}

/// One slice per domain of the phantom (two of the training hospital), all from test patients.
pub const SAMPLES: &[DemoSample] = &[
    sample!("xh_test_p000_s003"),
    sample!("xh_test_p001_s008"),
    sample!("zs-big_test_p001_s002"),
    sample!("zs-small_test_p002_s002"),
];
