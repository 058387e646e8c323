//! Shared test helpers: image fixtures made on the fly.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageFormat, RgbImage};

/// A deterministic, textured test image.
pub fn pattern(w: u32, h: u32, salt: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            ((x * 7 + y * 3 + salt * 31) % 256) as u8,
            ((x * x + y * 5 + salt) % 256) as u8,
            ((x * y + 50 + salt * 7) % 256) as u8,
        ])
    })
}

/// Encodes `img` in `format` into memory.
pub fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// A baseline JPEG of `img` at quality 95.
pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
        .encode_image(img)
        .unwrap();
    bytes
}

/// A CMYK (Adobe, inverted) or YCCK JPEG from packed CMYK samples.
pub fn cmyk_jpeg(cmyk: &[u8], w: u16, h: u16, as_ycck: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 100);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    let ct = if as_ycck {
        jpeg_encoder::ColorType::CmykAsYcck
    } else {
        jpeg_encoder::ColorType::Cmyk
    };
    encoder.encode(cmyk, w, h, ct).unwrap();
    bytes
}

/// CRC-32 (IEEE), as PNG chunks use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `png` with its IHDR width and height replaced (and the chunk CRC recomputed).
pub fn patch_png_size(png: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = png.to_vec();
    // Signature (8) + length (4) + "IHDR" (4); width and height follow.
    assert_eq!(&out[12..16], b"IHDR");
    out[16..20].copy_from_slice(&width.to_be_bytes());
    out[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

/// `jpeg` with its SOF0 frame header's height and width replaced.
pub fn patch_jpeg_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut pos = 2;
    while pos + 4 < out.len() {
        assert_eq!(out[pos], 0xFF, "marker expected at {pos}");
        let marker = out[pos + 1];
        let len = usize::from(u16::from_be_bytes([out[pos + 2], out[pos + 3]]));
        if marker == 0xC0 || marker == 0xC2 {
            out[pos + 5..pos + 7].copy_from_slice(&height.to_be_bytes());
            out[pos + 7..pos + 9].copy_from_slice(&width.to_be_bytes());
            return out;
        }
        pos += 2 + len;
    }
    panic!("no SOF marker found");
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Largest per-sample difference between two same-sized images.
pub fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}
