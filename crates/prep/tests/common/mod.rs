//! Helpers shared by the integration tests: synthetic images and source folders.

#![allow(dead_code)]

use std::fs;
use std::path::Path;

use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};

/// A small RGB image whose pixels depend on `seed`, so files differ.
fn pattern(seed: u32) -> RgbImage {
    RgbImage::from_fn(12, 9, |x, y| {
        Rgb([
            (x * 20 + seed) as u8,
            (y * 25 + seed * 3) as u8,
            ((x + y) * 7 + seed * 11) as u8,
        ])
    })
}

/// Writes a small JPEG.
pub fn write_jpeg(path: &Path, seed: u32) {
    ensure_parent(path);
    pattern(seed)
        .save_with_format(path, ImageFormat::Jpeg)
        .expect("write JPEG fixture");
}

/// Writes a small PNG.
pub fn write_png(path: &Path, seed: u32) {
    ensure_parent(path);
    pattern(seed)
        .save_with_format(path, ImageFormat::Png)
        .expect("write PNG fixture");
}

/// Writes a small PNG with an alpha channel.
pub fn write_rgba_png(path: &Path, seed: u32) {
    ensure_parent(path);
    RgbaImage::from_fn(10, 10, |x, y| {
        Rgba([x as u8 * 9, y as u8 * 9, seed as u8, 128])
    })
    .save_with_format(path, ImageFormat::Png)
    .expect("write RGBA PNG fixture");
}

/// Writes a small grayscale JPEG.
pub fn write_gray_jpeg(path: &Path, seed: u32) {
    ensure_parent(path);
    GrayImage::from_fn(10, 10, |x, y| Luma([(x * 13 + y * 7 + seed) as u8]))
        .save_with_format(path, ImageFormat::Jpeg)
        .expect("write gray JPEG fixture");
}

/// Writes a JPEG cut short (no end-of-image marker).
pub fn write_truncated_jpeg(path: &Path) {
    let full = tempfile::NamedTempFile::with_suffix(".jpg").expect("temp file");
    write_jpeg(full.path(), 99);
    let bytes = fs::read(full.path()).expect("read JPEG");
    ensure_parent(path);
    fs::write(path, &bytes[..bytes.len() / 2]).expect("write truncated JPEG");
}

/// Writes a PNG whose header claims `width`×`height` pixels, with almost no pixel data.
pub fn write_huge_png_header(path: &Path, width: u32, height: u32) {
    let bytes = testkit::images::png_claiming(width, height);
    ensure_parent(path);
    fs::write(path, bytes).expect("write PNG header");
}

fn ensure_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create fixture folder");
    }
}

/// A flat Kaggle-style folder: `<label>.<i>.jpg` for each label and each index.
pub fn flat_source(dir: &Path, labels: &[&str], indices: impl Iterator<Item = u32> + Clone) {
    for (l, label) in labels.iter().enumerate() {
        for i in indices.clone() {
            write_jpeg(&dir.join(format!("{label}.{i}.jpg")), i + 40 * l as u32);
        }
    }
}

/// File names in a folder, sorted, hidden ones excluded; empty when it does not exist.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = read
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// Sorted `<label>.<i>.jpg` names.
pub fn expected(label: &str, indices: impl Iterator<Item = u32>) -> Vec<String> {
    let mut out: Vec<String> = indices.map(|i| format!("{label}.{i}.jpg")).collect();
    out.sort();
    out
}
