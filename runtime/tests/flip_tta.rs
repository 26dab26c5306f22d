//! Flip test-time augmentation makes the segmentation mirror-equivariant: segmenting the
//! mirrored image gives exactly the mirrored result. A plain CNN does not have this property,
//! which the test checks too, so it cannot pass by accident. Compared: the logits the
//! prediction is made from, the mask, and the per-class confidence sums.

use image::{DynamicImage, imageops};
use medseg_runtime::Segmenter;
use medseg_runtime::demo::{MODEL, SAMPLES};
use medseg_runtime::preprocess::mirror_rows;

fn mirrored<T: Clone>(values: &[T], width: usize) -> Vec<T> {
    let mut out = values.to_vec();
    mirror_rows(&mut out, width);
    out
}

#[test]
fn flip_tta_is_exactly_mirror_equivariant() {
    let plain = Segmenter::from_bytes(MODEL, "demo").unwrap();
    let spec = plain.card.input.clone();
    // At the model's own size, so no resampling stands between the image and the network.
    let img = image::load_from_memory(SAMPLES[0].image)
        .unwrap()
        .resize_exact(
            spec.width as u32,
            spec.height as u32,
            imageops::FilterType::Triangle,
        );
    let flipped = img.fliph();

    // The logits segment() makes its mask from; mirror_rows mirrors every row of every plane.
    let logits = |seg: &Segmenter, im: &DynamicImage| seg.segment_logits(im).unwrap();
    let (a, b) = (logits(&plain, &img), logits(&plain, &flipped));
    assert_ne!(
        mirrored(&a, spec.width),
        b,
        "without TTA the network is not exactly mirror-equivariant"
    );

    let tta = Segmenter::from_bytes(MODEL, "demo")
        .unwrap()
        .with_flip_tta(true);
    let (a, b) = (logits(&tta, &img), logits(&tta, &flipped));
    assert_eq!(mirrored(&a, spec.width), b);
    let pred = |im: &DynamicImage| tta.segment(im).unwrap().prediction;
    let (pa, pb) = (pred(&img), pred(&flipped));
    assert_eq!(mirrored(&pa.mask.data, spec.width), pb.mask.data);
    assert!(pb.mask.data.contains(&1), "the sample's label is found");
    // Same pixels, summed in another order.
    for (sa, sb) in pa.confidence_sums.iter().zip(&pb.confidence_sums) {
        assert!((sa - sb).abs() <= 1e-9 * sa.abs().max(1.0), "{sa} vs {sb}");
    }
}
