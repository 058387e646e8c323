//! Decoding JPEG and PNG files into 8-bit RGB, with limits against decompression bombs.
//!
//! Colour handling follows what Keras' `load_img(color_mode="rgb")` (PIL's `convert("RGB")`)
//! produces:
//!
//! - grayscale (8 or 16 bit) is replicated to three channels;
//! - an alpha channel (gray+alpha, RGBA) is **dropped**: the colour samples are kept as they are,
//!   not composited on a background;
//! - 16-bit samples are rounded to 8 bits;
//! - CMYK and YCCK (Adobe) JPEGs are converted to RGB by the decoder (Adobe's inverted CMYK
//!   convention, which is what Photoshop and most CMYK JPEGs use);
//! - the EXIF orientation tag is ignored, as PIL and Keras ignore it.
//!
//! The header is read and checked against [`Limits`] before any pixel buffer is allocated, so a
//! file claiming 30000×30000 pixels is refused at once. A JPEG whose data ends before its
//! end-of-image marker is refused as truncated (the decoder alone would fill the missing part
//! with gray). Decoder panics are caught and reported as errors.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use crate::error::DataError;

/// Limits checked against an image header before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted decoded buffer in bytes (width × height × bytes per pixel of the file's
    /// own colour type).
    pub max_alloc: u64,
}

impl Default for Limits {
    /// 16384 × 16384 pixels and 1 GiB of decoded data.
    fn default() -> Self {
        Limits {
            max_width: 16384,
            max_height: 16384,
            max_alloc: 1 << 30,
        }
    }
}

impl Limits {
    fn to_image_limits(self) -> image::Limits {
        let mut l = image::Limits::default();
        l.max_image_width = Some(self.max_width);
        l.max_image_height = Some(self.max_height);
        l.max_alloc = Some(self.max_alloc);
        l
    }
}

/// The image formats this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG (baseline or progressive; gray, YCbCr, CMYK or YCCK).
    Jpeg,
    /// PNG (any bit depth and colour type).
    Png,
}

impl Format {
    /// The format's usual name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
        }
    }
}

/// File extensions (lower case) treated as images when listing folders.
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`] (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
}

/// Reads and decodes the JPEG or PNG file at `path` into 8-bit RGB.
///
/// Errors name the file and say what is wrong: not found, empty, not an image (or an
/// unsupported format), truncated, corrupt, or larger than `limits`. Never panics.
pub fn load_rgb(path: &Path, limits: &Limits) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decode_rgb(&bytes, path, limits)
}

/// Decodes an in-memory JPEG or PNG into 8-bit RGB; `path` is used in error messages only.
pub fn decode_rgb(bytes: &[u8], path: &Path, limits: &Limits) -> Result<RgbImage, DataError> {
    let format = sniff(bytes, path)?;
    if format == Format::Jpeg {
        check_jpeg_structure(bytes).map_err(|problem| match problem {
            JpegProblem::Truncated(detail) => DataError::Truncated {
                path: path.to_path_buf(),
                format: "JPEG",
                detail: detail.to_string(),
            },
            JpegProblem::Corrupt(detail) => DataError::Corrupt {
                path: path.to_path_buf(),
                detail: detail.to_string(),
            },
        })?;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        decode_checked(bytes, format, path, limits)
    }));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic without a message".to_string());
            Err(DataError::DecoderPanic {
                path: path.to_path_buf(),
                detail,
            })
        }
    }
}

/// Reads only the header of the image at `path`: its format and `(width, height)`.
///
/// Cheap: no pixel data is decoded. Applies the same format checks as [`load_rgb`] (but not the
/// truncation check, which needs the whole file).
pub fn probe(path: &Path) -> Result<(Format, u32, u32), DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let format = sniff(&bytes, path)?;
    let reader = ImageReader::with_format(Cursor::new(&bytes[..]), format.image_format());
    let decoder = catch_unwind(AssertUnwindSafe(|| reader.into_decoder()))
        .map_err(|_| DataError::DecoderPanic {
            path: path.to_path_buf(),
            detail: "while reading the header".to_string(),
        })?
        .map_err(|e| map_image_error(e, format, path))?;
    let (w, h) = decoder.dimensions();
    Ok((format, w, h))
}

/// Identifies the format from the file's first bytes.
fn sniff(bytes: &[u8], path: &Path) -> Result<Format, DataError> {
    if bytes.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => Ok(Format::Jpeg),
        Ok(ImageFormat::Png) => Ok(Format::Png),
        Ok(other) => Err(DataError::Unsupported {
            path: path.to_path_buf(),
            detail: format!(
                "{} images are not supported (only JPEG and PNG)",
                other.extensions_str().first().unwrap_or(&"this format")
            ),
        }),
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(DataError::Unsupported {
                path: path.to_path_buf(),
                detail: format!(
                    "not a JPEG or PNG file (starts with bytes {})",
                    head.join(" ")
                ),
            })
        }
    }
}

/// Reads the header, checks it against `limits`, then decodes and converts to RGB.
fn decode_checked(
    bytes: &[u8],
    format: Format,
    path: &Path,
    limits: &Limits,
) -> Result<RgbImage, DataError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    // Headers are parsed without dimension limits so that the claimed size can be reported;
    // the dimension limits are checked below, before any pixel buffer is allocated. The
    // allocation limit applies throughout (it also bounds metadata such as PNG text chunks).
    let mut header_limits = image::Limits::default();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    header_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(header_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(e, format, path))?;
    let (width, height) = decoder.dimensions();
    let too_large = |limit: String| DataError::TooLarge {
        path: path.to_path_buf(),
        width,
        height,
        limit,
    };
    if width > limits.max_width || height > limits.max_height {
        return Err(too_large(format!(
            "{}x{} pixels",
            limits.max_width, limits.max_height
        )));
    }
    if width == 0 || height == 0 {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("the header claims {width}x{height} pixels"),
        });
    }
    let needed = decoder.total_bytes();
    if needed > limits.max_alloc {
        return Err(too_large(format!(
            "{} bytes of decoded data (this image needs {needed})",
            limits.max_alloc
        )));
    }
    decoder
        .set_limits(limits.to_image_limits())
        .map_err(|e| map_image_error(e, format, path))?;
    let image =
        DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, format, path))?;
    Ok(match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// Turns an `image` error into a [`DataError`] naming `path`.
fn map_image_error(err: ImageError, format: Format, path: &Path) -> DataError {
    let path = path.to_path_buf();
    match err {
        ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DataError::Truncated {
                path,
                format: format.name(),
                detail: "the data ends early".to_string(),
            }
        }
        ImageError::IoError(source) => DataError::Io { path, source },
        ImageError::Limits(e) => DataError::OverLimit {
            path,
            detail: e.to_string(),
        },
        ImageError::Unsupported(e) => DataError::Unsupported {
            path,
            detail: e.to_string(),
        },
        ImageError::Decoding(e) => {
            let detail = e.to_string();
            let lower = detail.to_ascii_lowercase();
            if lower.contains("eof") || lower.contains("end of") || lower.contains("truncat") {
                DataError::Truncated {
                    path,
                    format: format.name(),
                    detail,
                }
            } else {
                DataError::Corrupt { path, detail }
            }
        }
        other => DataError::Corrupt {
            path,
            detail: other.to_string(),
        },
    }
}

/// What is structurally wrong with a JPEG byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JpegProblem {
    Truncated(&'static str),
    Corrupt(&'static str),
}

/// Walks the JPEG marker structure from SOI to EOI without decoding anything.
///
/// Segment lengths are followed, and entropy-coded data after each SOS is skipped up to the
/// next marker (byte stuffing `FF 00`, restart markers and fill bytes are recognised). Bytes
/// after EOI are allowed (many cameras append data). The file is truncated when it ends before
/// EOI.
fn check_jpeg_structure(data: &[u8]) -> Result<(), JpegProblem> {
    if data.len() < 2 || data[0] != 0xFF || data[1] != 0xD8 {
        return Err(JpegProblem::Corrupt("missing start-of-image marker"));
    }
    let n = data.len();
    let mut pos = 2;
    let mut seen_frame = false;
    loop {
        // Find the next marker prefix; libjpeg tolerates (and warns about) stray bytes here.
        match data[pos.min(n)..].iter().position(|&b| b == 0xFF) {
            Some(skip) => pos += skip,
            None => {
                return Err(JpegProblem::Truncated(
                    "the data ends before the end-of-image marker",
                ));
            }
        }
        // Skip fill bytes.
        while pos < n && data[pos] == 0xFF {
            pos += 1;
        }
        if pos >= n {
            return Err(JpegProblem::Truncated(
                "the data ends before the end-of-image marker",
            ));
        }
        let marker = data[pos];
        pos += 1;
        match marker {
            0xD9 => {
                return if seen_frame {
                    Ok(())
                } else {
                    Err(JpegProblem::Corrupt("no image frame before end-of-image"))
                };
            }
            // Standalone markers: TEM, RSTn, and a stray 00.
            0x01 | 0xD0..=0xD7 | 0x00 => continue,
            0xD8 => return Err(JpegProblem::Corrupt("a second start-of-image marker")),
            _ => {}
        }
        if pos + 2 > n {
            return Err(JpegProblem::Truncated("the data ends inside a header"));
        }
        let len = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
        if len < 2 {
            return Err(JpegProblem::Corrupt(
                "a marker segment with an invalid length",
            ));
        }
        if pos + len > n {
            return Err(JpegProblem::Truncated("the data ends inside a header"));
        }
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            seen_frame = true;
        }
        pos += len;
        if marker == 0xDA {
            // Entropy-coded data: runs until a marker other than RSTn, stuffing or fill.
            loop {
                match data[pos..].iter().position(|&b| b == 0xFF) {
                    None => {
                        return Err(JpegProblem::Truncated(
                            "the data ends inside the compressed image data",
                        ));
                    }
                    Some(i) => {
                        let at = pos + i;
                        let mut next = at + 1;
                        while next < n && data[next] == 0xFF {
                            next += 1;
                        }
                        if next >= n {
                            return Err(JpegProblem::Truncated(
                                "the data ends inside the compressed image data",
                            ));
                        }
                        let b = data[next];
                        if b == 0x00 || (0xD0..=0xD7).contains(&b) {
                            pos = next + 1;
                        } else {
                            pos = at;
                            break;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn skeleton(scan: &[u8], eoi: bool) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        v.extend(seg(0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]));
        v.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
        v.extend_from_slice(scan);
        if eoi {
            v.extend_from_slice(&[0xFF, 0xD9]);
        }
        v
    }

    #[test]
    fn structure_accepts_complete_streams() {
        assert_eq!(check_jpeg_structure(&skeleton(&[1, 2, 3], true)), Ok(()));
        // Stuffing, restart markers and fill bytes inside the scan, trailing bytes after EOI.
        let mut v = skeleton(
            &[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56, 0xFF, 0xFF],
            true,
        );
        v.extend_from_slice(b"trailing camera data");
        assert_eq!(check_jpeg_structure(&v), Ok(()));
    }

    #[test]
    fn structure_detects_truncation() {
        let full = skeleton(&[1, 2, 3, 4, 5], true);
        for cut in [3, 10, 25, full.len() - 3, full.len() - 1] {
            assert!(
                matches!(
                    check_jpeg_structure(&full[..cut]),
                    Err(JpegProblem::Truncated(_))
                ),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            check_jpeg_structure(&skeleton(&[1, 2, 0xFF, 0x00], false)),
            Err(JpegProblem::Truncated(_))
        ));
    }

    #[test]
    fn structure_detects_corruption() {
        assert!(matches!(
            check_jpeg_structure(b"\xFF\xD8\xFF\xD9"),
            Err(JpegProblem::Corrupt(_))
        ));
        assert!(matches!(
            check_jpeg_structure(b"\xFF\xD8\xFF\xE0\x00\x01"),
            Err(JpegProblem::Corrupt(_))
        ));
    }

    #[test]
    fn extensions() {
        assert!(has_image_extension(Path::new("a/cat.1.JPG")));
        assert!(has_image_extension(Path::new("b.png")));
        assert!(has_image_extension(Path::new("b.jpeg")));
        assert!(!has_image_extension(Path::new("notes.txt")));
        assert!(!has_image_extension(Path::new("jpg")));
    }
}
