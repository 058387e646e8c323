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
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no filter, no interlace
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A short IDAT (an empty zlib stream) so decoders get past the header.
    let idat: &[u8] = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    bytes.extend_from_slice(&((idat.len() - 4) as u32).to_be_bytes());
    bytes.extend_from_slice(idat);
    bytes.extend_from_slice(&crc32(idat).to_be_bytes());
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(b"IEND");
    bytes.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    ensure_parent(path);
    fs::write(path, bytes).expect("write PNG header");
}

/// CRC-32 (IEEE), as PNG chunks use.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
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
