//! From received image bytes to a protocol `Result`: decoding, segmentation, areas, contour.

use std::io::Cursor;

use anyhow::{Context, bail};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use medseg_protocol::{CaptureBegin, ImageFormat, MAX_CLASSES, MAX_CONTOUR, Point, SegResult};
use medseg_runtime::Segmenter;
use medseg_runtime::image_io::Mask;
use medseg_runtime::measure::class_stats;

use crate::contour::outline;

/// A segmentation reduced to what travels on the wire, plus the mask for the screen.
#[derive(Debug, Clone)]
pub struct Analysis {
    pub result: SegResult,
    pub mask: Mask,
}

/// Anything that segments an image (the runtime's model, or a stand-in in tests).
pub trait Analyzer {
    fn analyze(&self, image_id: u32, img: &DynamicImage) -> anyhow::Result<Analysis>;
}

impl Analyzer for Segmenter {
    fn analyze(&self, image_id: u32, img: &DynamicImage) -> anyhow::Result<Analysis> {
        let seg = self.segment(img).context("segmentation failed")?;
        let pred = &seg.prediction;
        let stats = class_stats(pred, &self.card.classes, None);
        let areas = stats
            .iter()
            .map(|s| s.area_pixels as u32)
            .collect::<Vec<_>>();
        let confidence = pred.foreground_mean_confidence().unwrap_or(0.0);
        let result = to_result(
            image_id,
            &areas,
            &outline(
                &pred.mask.data,
                pred.mask.width,
                pred.mask.height,
                MAX_CONTOUR,
            ),
            confidence,
            seg.inference_ms,
        );
        Ok(Analysis {
            result,
            // Moved, not copied: a photo-sized mask is 24 MB at 24 MP.
            mask: seg.prediction.mask,
        })
    }
}

/// Packs measurements into a `Result`, keeping the first classes / points that fit.
pub fn to_result(
    image_id: u32,
    areas: &[u32],
    contour: &[(u32, u32)],
    confidence: f32,
    inference_ms: f64,
) -> SegResult {
    let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
    SegResult {
        image_id,
        areas: areas.iter().take(MAX_CLASSES).copied().collect(),
        contour: contour
            .iter()
            .take(MAX_CONTOUR)
            .map(|&(x, y)| Point {
                x: clamp(x),
                y: clamp(y),
            })
            .collect(),
        confidence,
        inference_ms: inference_ms.round().clamp(0.0, u32::MAX as f64) as u32,
    }
}

/// Decodes received bytes as the `CaptureBegin` described them. PNG and JPEG must match the
/// announced size (after EXIF orientation), so a mixed-up header cannot pass unnoticed.
pub fn decode(begin: &CaptureBegin, bytes: &[u8]) -> anyhow::Result<DynamicImage> {
    let (w, h) = (begin.width as u32, begin.height as u32);
    let img = match begin.format {
        ImageFormat::Gray8 => GrayImage::from_raw(w, h, bytes.to_vec())
            .map(DynamicImage::ImageLuma8)
            .context("gray image: byte count is not width * height")?,
        ImageFormat::Rgb8 => RgbImage::from_raw(w, h, bytes.to_vec())
            .map(DynamicImage::ImageRgb8)
            .context("RGB image: byte count is not 3 * width * height")?,
        ImageFormat::Png | ImageFormat::Jpeg => {
            let expected = if begin.format == ImageFormat::Png {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::Jpeg
            };
            let mut decoder = ImageReader::with_format(Cursor::new(bytes), expected)
                .into_decoder()
                .with_context(|| format!("not a {expected:?} file"))?;
            let orientation = decoder
                .orientation()
                .context("unreadable EXIF orientation")?;
            let mut img = DynamicImage::from_decoder(decoder)
                .with_context(|| format!("{expected:?} decoding failed"))?;
            img.apply_orientation(orientation);
            img
        }
    };
    if (img.width(), img.height()) != (w, h) {
        bail!(
            "image is {}x{}, CaptureBegin announced {w}x{h}",
            img.width(),
            img.height()
        );
    }
    Ok(img)
}

impl<T: Analyzer + ?Sized> Analyzer for std::sync::Arc<T> {
    fn analyze(&self, image_id: u32, img: &DynamicImage) -> anyhow::Result<Analysis> {
        (**self).analyze(image_id, img)
    }
}
