//! Decoding images and masks from files, with errors that name the file.

use std::borrow::Cow;
use std::path::Path;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::bit_depth::gray_to_8_bits;
use crate::error::RuntimeError;

/// Decodes PNG, JPEG, BMP or TIFF (any bit depth, gray or colour), applying EXIF orientation so that
/// phone photos come out the right way up. 16-bit gray comes back as 8-bit gray stretched
/// between its own percentiles ([`gray_to_8_bits`]), so training, import and the bedside
/// runtime all see the same 8 bits of such a file.
pub fn load_image(path: &Path) -> Result<DynamicImage, RuntimeError> {
    decode(path).map(gray_to_8_bits)
}

/// Larger than any phone photo (200 MP sensors give 16320 px) or scanned film.
const MAX_SIDE_PX: u32 = 20_000;
/// Room for a 200 MP colour photo (600 MB decoded); twice image's default decoder limit.
const MAX_DECODED_BYTES: u64 = 1 << 30;

/// [`load_image`] for a file already in memory (an upload), `name` standing for its path in
/// errors, with at most `max_side_px` pixels a side (at most the file limit).
pub fn load_image_bytes(
    bytes: &[u8],
    name: &str,
    max_side_px: u32,
) -> Result<DynamicImage, RuntimeError> {
    let path = Path::new(name);
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RuntimeError::io(path, e))?;
    decode_with(reader, path, max_side_px.min(MAX_SIDE_PX)).map(gray_to_8_bits)
}

/// Decodes at the file's own bit depth (masks hold class indices, not intensities).
fn decode(path: &Path) -> Result<DynamicImage, RuntimeError> {
    let reader = ImageReader::open(path)
        .map_err(|e| RuntimeError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| RuntimeError::io(path, e))?;
    decode_with(reader, path, MAX_SIDE_PX)
}

fn decode_with<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    path: &Path,
    max_side_px: u32,
) -> Result<DynamicImage, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadImage {
        path: path.to_path_buf(),
        reason,
    };
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| bad(format!("not a decodable PNG, JPEG, BMP or TIFF image ({e}); DICOM and NIfTI files are read as scans by name (.dcm, .nii, .nii.gz) or by their DICM marker")))?;
    // `into_decoder` leaves the decoder without the limits `ImageReader::decode` would set:
    // a small PNG of zeros claiming 60000x60000 px took 18 GB here before.
    let (w, h) = decoder.dimensions();
    if w.max(h) > max_side_px || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(bad(format!(
            "image is {w}x{h} px ({} MB decoded); this runtime reads at most {max_side_px} px a \
             side and {} MB, downscale it first",
            decoder.total_bytes() >> 20,
            MAX_DECODED_BYTES >> 20
        )));
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    decoder
        .set_limits(limits)
        .map_err(|e| bad(format!("cannot decode within the memory limit ({e})")))?;
    let orientation = decoder
        .orientation()
        .map_err(|e| bad(format!("unreadable EXIF orientation ({e})")))?;
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| bad(format!("decoding failed, the file may be truncated ({e})")))?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("image has zero size".into()));
    }
    Ok(img)
}

/// The image as 8-bit gray: borrowed when it already is, converted otherwise. A copy of a
/// 24 MP photo is 24 MB (gray) or 72 MB (RGB); converted or borrowed, the values are the same.
pub fn as_gray(img: &DynamicImage) -> Cow<'_, GrayImage> {
    match img.as_luma8() {
        Some(gray) => Cow::Borrowed(gray),
        None => Cow::Owned(img.to_luma8()),
    }
}

/// The image as 8-bit RGB: borrowed when it already is, converted otherwise (see [`as_gray`]).
pub fn as_rgb(img: &DynamicImage) -> Cow<'_, RgbImage> {
    match img.as_rgb8() {
        Some(rgb) => Cow::Borrowed(rgb),
        None => Cow::Owned(img.to_rgb8()),
    }
}

/// A class-index mask: one byte per pixel, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl Mask {
    pub fn from_gray(img: GrayImage) -> Self {
        Self {
            width: img.width() as usize,
            height: img.height() as usize,
            data: img.into_raw(),
        }
    }

    pub fn to_gray(&self) -> GrayImage {
        GrayImage::from_raw(self.width as u32, self.height as u32, self.data.clone())
            .expect("mask buffer matches its size")
    }
}

/// Loads a mask (PNG class-index image or 2D `.npy` array of integers) and checks every label
/// is below `num_classes`.
pub fn load_mask(path: &Path, num_classes: usize) -> Result<Mask, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadMask {
        path: path.to_path_buf(),
        reason,
    };
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    let mask = if is_npy {
        load_npy_mask(path)?
    } else {
        let img = decode(path).map_err(|e| bad(e.to_string()))?;
        if img.color().has_color() {
            return Err(bad(
                "colour PNG; expected a single-channel image whose pixel values are class indices"
                    .into(),
            ));
        }
        match img {
            // 16-bit masks hold the indices themselves; into_luma8 would divide them by 257.
            // Values beyond a byte are out of range for any class count; the rest are checked
            // below with every other mask.
            DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA16(_) => {
                let (w, h) = (img.width() as usize, img.height() as usize);
                let data = img
                    .into_luma16()
                    .into_raw()
                    .into_iter()
                    .map(|v| u8::try_from(v).map_err(|_| out_of_range(path, v.into(), num_classes)))
                    .collect::<Result<_, _>>()?;
                Mask {
                    width: w,
                    height: h,
                    data,
                }
            }
            other => Mask::from_gray(other.into_luma8()),
        }
    };
    if let Some(&v) = mask.data.iter().find(|&&v| v as usize >= num_classes) {
        return Err(out_of_range(path, v.into(), num_classes));
    }
    Ok(mask)
}

fn out_of_range(path: &Path, value: u64, num_classes: usize) -> RuntimeError {
    RuntimeError::BadMask {
        path: path.to_path_buf(),
        reason: format!(
            "label value {value} but the data set has {num_classes} classes (expected 0..={})",
            num_classes - 1
        ),
    }
}

fn load_npy_mask(path: &Path) -> Result<Mask, RuntimeError> {
    let bad = |reason: String| RuntimeError::BadMask {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| RuntimeError::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .map_err(|e| bad(format!("not a readable .npy file ({e})")))?;
    let shape = npy.shape().to_vec();
    // Accept [h, w] and [1, h, w] / [h, w, 1].
    let (height, width) = match shape.as_slice() {
        [h, w] | [1, h, w] | [h, w, 1] => (*h as usize, *w as usize),
        other => {
            return Err(bad(format!(
                "array shape {other:?}; expected [height, width]"
            )));
        }
    };
    let values: Vec<i64> = read_npy_integers(npy).map_err(bad)?;
    if values.len() != width * height {
        return Err(bad(format!(
            "holds {} values for shape {height}x{width}; the file may be truncated",
            values.len()
        )));
    }
    let data = values
        .into_iter()
        .map(|v| {
            u8::try_from(v)
                .map_err(|_| bad(format!("label value {v} is not a class index 0..=255")))
        })
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(Mask {
        width,
        height,
        data,
    })
}

fn read_npy_integers(npy: npyz::NpyFile<&[u8]>) -> Result<Vec<i64>, String> {
    use npyz::{DType, TypeChar};
    let dtype = npy.dtype();
    let DType::Plain(ty) = &dtype else {
        return Err(format!(
            "dtype {dtype:?}; expected a plain integer or bool array"
        ));
    };
    let err = |e: std::io::Error| format!("reading values failed, the file may be truncated ({e})");
    let size = ty.size_field();
    Ok(match (ty.type_char(), size) {
        (TypeChar::Bool, _) => npy
            .into_vec::<bool>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Uint, 1) => npy
            .into_vec::<u8>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Uint, 2) => npy
            .into_vec::<u16>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 1) => npy
            .into_vec::<i8>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 2) => npy
            .into_vec::<i16>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 4) => npy
            .into_vec::<i32>()
            .map_err(err)?
            .into_iter()
            .map(i64::from)
            .collect(),
        (TypeChar::Int, 8) => npy.into_vec::<i64>().map_err(err)?,
        (TypeChar::Float, 4) => float_labels(
            npy.into_vec::<f32>()
                .map_err(err)?
                .into_iter()
                .map(f64::from),
        )?,
        (TypeChar::Float, 8) => float_labels(npy.into_vec::<f64>().map_err(err)?.into_iter())?,
        (c, s) => return Err(format!("dtype {c:?}{s}; expected integer class indices")),
    })
}

/// Float masks are accepted only when every value is a whole number.
fn float_labels(values: impl Iterator<Item = f64>) -> Result<Vec<i64>, String> {
    values
        .map(|v| {
            if v.fract() == 0.0 && v >= 0.0 {
                Ok(v as i64)
            } else {
                Err(format!("label value {v} is not a whole class index"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_borrow_an_image_of_their_format_and_convert_any_other() {
        let rgb =
            image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 70, 9]));
        let colour = DynamicImage::ImageRgb8(rgb.clone());
        let gray = DynamicImage::ImageLuma8(colour.to_luma8());
        assert!(matches!(as_rgb(&colour), Cow::Borrowed(r) if *r == rgb));
        assert!(matches!(as_gray(&gray), Cow::Borrowed(_)));
        assert!(matches!(as_gray(&colour), Cow::Owned(g) if g == colour.to_luma8()));
        assert!(matches!(as_rgb(&gray), Cow::Owned(r) if r == gray.to_rgb8()));
    }

    #[test]
    fn png_mask_with_out_of_range_label_is_rejected_naming_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        GrayImage::from_raw(2, 1, vec![0, 3])
            .unwrap()
            .save(&path)
            .unwrap();
        let err = load_mask(&path, 2).unwrap_err().to_string();
        assert!(
            err.contains("m.png") && err.contains("label value 3"),
            "{err}"
        );
        assert_eq!(load_mask(&path, 4).unwrap().data, vec![0, 3]);
    }

    #[test]
    fn npy_mask_round_trips_and_truncation_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        let mut buf = Vec::new();
        {
            use npyz::WriterBuilder;
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&[2, 3])
                .writer(&mut buf)
                .begin_nd()
                .unwrap();
            w.extend([0i64, 1, 1, 0, 0, 1]).unwrap();
            w.finish().unwrap();
        }
        std::fs::write(&path, &buf).unwrap();
        let m = load_mask(&path, 2).unwrap();
        assert_eq!((m.width, m.height), (3, 2));
        assert_eq!(m.data, vec![0, 1, 1, 0, 0, 1]);
        std::fs::write(&path, &buf[..buf.len() - 5]).unwrap();
        let err = load_mask(&path, 2).unwrap_err().to_string();
        assert!(err.contains("m.npy"), "{err}");
    }

    #[test]
    fn jpeg_exif_orientation_is_applied() {
        // A 4x2 JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6)
        // must come out 2x4, as a phone photo taken in portrait does.
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageLuma8(GrayImage::new(4, 2))
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let tiff: [u8; 26] = [
            0x49, 0x49, 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, // little-endian TIFF, IFD at 8
            0x01, 0x00, // one entry
            0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
            0x00, // Orientation = 6
            0x00, 0x00, 0x00, 0x00, // no next IFD
        ];
        let mut app1 = vec![0xFF, 0xE1, 0x00, (2 + 6 + tiff.len()) as u8];
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(&tiff);
        jpeg.splice(2..2, app1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portrait.jpg");
        std::fs::write(&path, &jpeg).unwrap();
        let img = load_image(&path).unwrap();
        assert_eq!((img.width(), img.height()), (2, 4));
    }

    #[test]
    fn truncated_png_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img.png");
        GrayImage::from_pixel(64, 64, image::Luma([7]))
            .save(&path)
            .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_image(&path).unwrap_err().to_string();
        assert!(err.contains("img.png"), "{err}");
    }

    #[test]
    fn sixteen_bit_images_are_stretched_and_sixteen_bit_masks_keep_their_indices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ct16.png");
        let scan = image::ImageBuffer::from_fn(64, 4, |x, _| image::Luma([1000 + 30 * x as u16]));
        image::DynamicImage::ImageLuma16(scan).save(&path).unwrap();
        let img = load_image(&path).unwrap().into_luma8();
        assert_eq!(img.get_pixel(0, 0).0[0], 0);
        assert_eq!(img.get_pixel(63, 0).0[0], 255);

        let path = dir.path().join("mask16.png");
        let labels = image::ImageBuffer::from_fn(4, 4, |x, _| image::Luma([(x % 3) as u16]));
        image::DynamicImage::ImageLuma16(labels)
            .save(&path)
            .unwrap();
        let mask = load_mask(&path, 3).unwrap();
        assert_eq!(&mask.data[..4], &[0, 1, 2, 0]);
        let err = load_mask(&path, 2).unwrap_err().to_string();
        assert!(
            err.contains("mask16.png") && err.contains("label value 2"),
            "{err}"
        );
        let big = image::ImageBuffer::from_pixel(2, 2, image::Luma([300u16]));
        image::DynamicImage::ImageLuma16(big).save(&path).unwrap();
        let err = load_mask(&path, 2).unwrap_err().to_string();
        assert!(err.contains("label value 300"), "{err}");
    }

    #[test]
    fn images_beyond_the_size_limit_are_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.png");
        GrayImage::new(MAX_SIDE_PX + 1, 1).save(&path).unwrap();
        let err = load_image(&path).unwrap_err().to_string();
        assert!(
            err.contains("wide.png") && err.contains("20001x1 px") && err.contains("downscale"),
            "{err}"
        );
    }
}
