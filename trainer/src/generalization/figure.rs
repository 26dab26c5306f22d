//! The benchmark's picture, like JMedSeg's Fig. 1: a real phone photo of a CT slice on a
//! monitor, and each method's prediction on it side by side (drawn with [`crate::panels`]).

use image::DynamicImage;

/// A rectangle of the photo, in its pixels: `x,y,width,height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Crop {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let v: Vec<u32> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                format!("'{s}': expected x,y,width,height in pixels, e.g. 40,0,420,420")
            })?;
        match v[..] {
            [x, y, width, height] if width > 0 && height > 0 => Ok(Self {
                x,
                y,
                width,
                height,
            }),
            _ => Err(format!(
                "'{s}': expected four numbers x,y,width,height with a positive width and height"
            )),
        }
    }
}

/// The crop of `photo`, refused when it does not lie inside it (named by `source`).
pub fn crop(photo: &DynamicImage, c: Crop, source: &str) -> anyhow::Result<DynamicImage> {
    anyhow::ensure!(
        c.x.saturating_add(c.width) <= photo.width()
            && c.y.saturating_add(c.height) <= photo.height(),
        "--photo-crop {},{},{},{} does not fit in {source} ({}x{} px)",
        c.x,
        c.y,
        c.width,
        c.height,
        photo.width(),
        photo.height()
    );
    Ok(photo.crop_imm(c.x, c.y, c.width, c.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_parse_and_are_checked_against_the_photo() {
        let c: Crop = "10,20,30,40".parse().unwrap();
        assert_eq!((c.x, c.y, c.width, c.height), (10, 20, 30, 40));
        assert!("10,20,30".parse::<Crop>().is_err());
        assert!("a,b,c,d".parse::<Crop>().is_err());
        assert!("0,0,0,5".parse::<Crop>().is_err());
        let photo = DynamicImage::new_rgb8(50, 50);
        assert!(crop(&photo, c, "p.jpg").is_err());
        let err = crop(&photo, c, "p.jpg").unwrap_err().to_string();
        assert!(err.contains("p.jpg") && err.contains("50x50"), "{err}");
        let ok = crop(&photo, "10,10,40,20".parse().unwrap(), "p.jpg").unwrap();
        assert_eq!((ok.width(), ok.height()), (40, 20));
    }
}
