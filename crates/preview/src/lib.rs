//! The augmentation preview: augmented variants of one image, saved as Keras' `save_to_dir`
//! names them, plus a contact sheet of the original beside every variant.

use image::{Rgb, RgbImage, imageops};
use imagedata::{AugmentConfig, ImageDataGenerator, SaveFormat, rng, save_image};
use std::path::{Path, PathBuf};

/// Side of one square cell of the contact sheet, in pixels.
pub const CELL: u32 = 160;
/// Gap between cells and around the sheet, in pixels.
pub const GAP: u32 = 6;

/// What [`write_preview`] wrote.
#[derive(Debug, Clone)]
pub struct PreviewOutput {
    /// The augmented variants, in order.
    pub variants: Vec<PathBuf>,
    /// The contact sheet.
    pub sheet: PathBuf,
}

/// The Keras-style prefix of an image's variants: the file name up to the first `.` or `_`
/// (`cat.0.jpg` → `cat`).
pub fn default_prefix(image: &Path) -> String {
    let name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.split(['.', '_']).next().unwrap_or_default();
    if stem.is_empty() {
        "image".into()
    } else {
        stem.to_string()
    }
}

/// Augments `original` `count` times (draws from the `preview` stream of `seed`), writes each
/// variant to `out/{prefix}_0_{n}.{format}` and the contact sheet to `out/sheet.png`. Every
/// file is written atomically.
pub fn write_preview(
    original: &RgbImage,
    augment: &AugmentConfig,
    count: usize,
    seed: u64,
    out: &Path,
    prefix: &str,
    format: SaveFormat,
) -> Result<PreviewOutput, imagedata::DataError> {
    let generator = ImageDataGenerator::new(augment.clone(), Default::default())
        .map_err(|e| imagedata::DataError::Invalid(e.to_string()))?;
    let mut variants = Vec::with_capacity(count);
    let mut images = Vec::with_capacity(count);
    for n in 0..count {
        let mut r = rng::substream(seed, "preview", n as u64);
        let img = generator.augment_image(original, &mut r);
        let path = out.join(format!("{prefix}_0_{n}.{}", format.extension()));
        save_image(&img, &path, format)?;
        variants.push(path);
        images.push(img);
    }
    let sheet = contact_sheet(original, &images);
    let sheet_path = out.join("sheet.png");
    save_image(&sheet, &sheet_path, SaveFormat::Png)?;
    Ok(PreviewOutput {
        variants,
        sheet: sheet_path,
    })
}

/// A grid of square cells: the original first (framed in orange), then every variant, each
/// scaled to fit its cell with its aspect ratio kept.
pub fn contact_sheet(original: &RgbImage, variants: &[RgbImage]) -> RgbImage {
    let n = variants.len() + 1;
    let cols = (n as f64).sqrt().ceil().max(1.0) as u32;
    let cols = cols.max(((n as u32).div_ceil(3)).min(7));
    let rows = (n as u32).div_ceil(cols);
    let width = cols * CELL + (cols + 1) * GAP;
    let height = rows * CELL + (rows + 1) * GAP;
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([32, 32, 32]));
    for (i, img) in std::iter::once(original).chain(variants).enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let x0 = GAP + col * (CELL + GAP);
        let y0 = GAP + row * (CELL + GAP);
        if i == 0 {
            let frame = RgbImage::from_pixel(CELL + 4, CELL + 4, Rgb([255, 140, 0]));
            imageops::overlay(&mut sheet, &frame, i64::from(x0) - 2, i64::from(y0) - 2);
        }
        let fitted = imagedata::fit_within(img, CELL);
        let dx = (CELL - fitted.width()) / 2;
        let dy = (CELL - fitted.height()) / 2;
        let cell = RgbImage::from_pixel(CELL, CELL, Rgb([16, 16, 16]));
        imageops::overlay(&mut sheet, &cell, i64::from(x0), i64::from(y0));
        imageops::overlay(&mut sheet, &fitted, i64::from(x0 + dx), i64::from(y0 + dy));
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 3) as u8, (y * 5) as u8, 128]))
    }

    #[test]
    fn prefix_from_name() {
        assert_eq!(
            default_prefix(Path::new("data/train/cats/cat.0.jpg")),
            "cat"
        );
        assert_eq!(default_prefix(Path::new("x/dog_12.png")), "dog");
        assert_eq!(default_prefix(Path::new(".jpg")), "image");
    }

    #[test]
    fn writes_variants_and_sheet() {
        let dir = tempfile::tempdir().unwrap();
        let img = gradient(64, 48);
        let out = write_preview(
            &img,
            &AugmentConfig::blog(),
            20,
            7,
            dir.path(),
            "cat",
            SaveFormat::Jpeg,
        )
        .unwrap();
        assert_eq!(out.variants.len(), 20);
        assert_eq!(out.variants[3], dir.path().join("cat_0_3.jpeg"));
        for p in &out.variants {
            let v = image::open(p).unwrap();
            assert_eq!((v.width(), v.height()), (64, 48));
        }
        let sheet = image::open(&out.sheet).unwrap().to_rgb8();
        // 21 cells: 7 columns × 3 rows.
        assert_eq!(sheet.width(), 7 * CELL + 8 * GAP);
        assert_eq!(sheet.height(), 3 * CELL + 4 * GAP);
        // The original's orange frame is there.
        assert_eq!(sheet.get_pixel(GAP - 1, GAP + 10), &Rgb([255, 140, 0]));
        // Variants differ from one another (flip/shear/zoom drawn per variant).
        let a = image::open(&out.variants[0]).unwrap().to_rgb8();
        let distinct = out.variants[1..]
            .iter()
            .any(|p| image::open(p).unwrap().to_rgb8() != a);
        assert!(distinct);
    }

    #[test]
    fn same_seed_same_variants() {
        let img = gradient(40, 40);
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let aug = AugmentConfig::blog();
        let a = write_preview(&img, &aug, 4, 1, d1.path(), "x", SaveFormat::Png).unwrap();
        let b = write_preview(&img, &aug, 4, 1, d2.path(), "x", SaveFormat::Png).unwrap();
        for (p, q) in a.variants.iter().zip(&b.variants) {
            assert_eq!(std::fs::read(p).unwrap(), std::fs::read(q).unwrap());
        }
    }

    #[test]
    fn identity_augmentation_gives_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let img = gradient(30, 20);
        let out = write_preview(
            &img,
            &AugmentConfig::default(),
            2,
            0,
            dir.path(),
            "x",
            SaveFormat::Png,
        )
        .unwrap();
        assert_eq!(image::open(&out.variants[1]).unwrap().to_rgb8(), img);
    }
}
