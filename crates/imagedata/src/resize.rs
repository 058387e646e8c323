//! Resizing to `target_size` with SIMD resamplers (`fast_image_resize`).
//!
//! `nearest` picks source pixel `floor((x + 0.5) * src / dst)` in each direction, as PIL's
//! `NEAREST` (and so Keras' default `load_img`) does; it is a plain gather with tabulated
//! indices (the same formula as `fast_image_resize`'s, without its per-row thread dispatch,
//! which costs more than the copy itself at these sizes). `bilinear` is `fast_image_resize`'s
//! SIMD triangle-filter convolution, whose support grows when shrinking (antialiased), as
//! PIL's `BILINEAR` resize.

use std::path::Path;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use image::RgbImage;

use crate::config::{Interpolation, TargetSize};
use crate::decode::{Limits, decode_rgb, load_rgb};
use crate::error::DataError;

/// Resizes `src` to `target` with `interpolation`; returns a copy when the size already matches.
///
/// `path` is used in error messages only (resizing itself cannot fail for valid images).
pub fn resize_rgb(
    src: &RgbImage,
    target: TargetSize,
    interpolation: Interpolation,
    path: &Path,
) -> Result<RgbImage, DataError> {
    if src.width() == target.width && src.height() == target.height {
        return Ok(src.clone());
    }
    let mut dst = vec![0u8; target.pixels() * 3];
    resize_into(
        src.as_raw(),
        src.width(),
        src.height(),
        &mut dst,
        target,
        interpolation,
    )
    .map_err(|detail| DataError::Corrupt {
        path: path.to_path_buf(),
        detail,
    })?;
    RgbImage::from_raw(target.width, target.height, dst).ok_or_else(|| DataError::Corrupt {
        path: path.to_path_buf(),
        detail: "resized buffer has the wrong size".to_string(),
    })
}

/// Resizes packed RGB `src` (`width` × `height`) into `dst`, which holds `target` packed RGB.
///
/// When the sizes match, the pixels are copied.
pub fn resize_into(
    src: &[u8],
    width: u32,
    height: u32,
    dst: &mut [u8],
    target: TargetSize,
    interpolation: Interpolation,
) -> Result<(), String> {
    let need_src = width as usize * height as usize * 3;
    let need_dst = target.pixels() * 3;
    if src.len() != need_src || dst.len() != need_dst {
        return Err(format!(
            "buffer sizes do not match: source {} bytes for {width}x{height}, destination {} \
             bytes for {target}",
            src.len(),
            dst.len()
        ));
    }
    if width == target.width && height == target.height {
        dst.copy_from_slice(src);
        return Ok(());
    }
    let src_view = fast_image_resize::images::ImageRef::new(width, height, src, PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let mut dst_view = Image::from_slice_u8(target.width, target.height, dst, PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let alg = match interpolation {
        Interpolation::Nearest => ResizeAlg::Nearest,
        Interpolation::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
    };
    Resizer::new()
        .resize(
            &src_view,
            &mut dst_view,
            &ResizeOptions::new().resize_alg(alg),
        )
        .map_err(|e| e.to_string())
}

/// Decodes the image at `path` and resizes it to `target` (the first-pass work of every data
/// flow).
pub fn load_resized(
    path: &Path,
    target: TargetSize,
    interpolation: Interpolation,
    limits: &Limits,
) -> Result<RgbImage, DataError> {
    fit_to(load_rgb(path, limits)?, target, interpolation, path)
}

/// Decodes an in-memory JPEG or PNG (`path` names it in error messages) and resizes it to
/// `target`: [`load_resized`] of bytes already read.
pub fn decode_resized(
    bytes: &[u8],
    path: &Path,
    target: TargetSize,
    interpolation: Interpolation,
    limits: &Limits,
) -> Result<RgbImage, DataError> {
    fit_to(
        decode_rgb(bytes, path, limits)?,
        target,
        interpolation,
        path,
    )
}

/// `img` at `target`: itself when it already is that size, resized otherwise.
pub fn fit_to(
    img: RgbImage,
    target: TargetSize,
    interpolation: Interpolation,
    path: &Path,
) -> Result<RgbImage, DataError> {
    if img.width() == target.width && img.height() == target.height {
        return Ok(img);
    }
    resize_rgb(&img, target, interpolation, path)
}

/// `img` scaled (triangle filter, aspect ratio kept) so that its longer side is `side` pixels:
/// the thumbnails of the preview grid and the report.
pub fn fit_within(img: &RgbImage, side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = f64::from(side) / f64::from(w.max(h).max(1));
    let nw = ((f64::from(w) * scale).round() as u32).clamp(1, side);
    let nh = ((f64::from(h) * scale).round() as u32).clamp(1, side);
    image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_within_keeps_the_aspect_ratio() {
        let wide = RgbImage::new(300, 100);
        assert_eq!(fit_within(&wide, 90).dimensions(), (90, 30));
        let tall = RgbImage::new(10, 40);
        assert_eq!(fit_within(&tall, 120).dimensions(), (30, 120));
        let thin = RgbImage::new(1000, 1);
        assert_eq!(fit_within(&thin, 50).dimensions(), (50, 1));
    }

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]))
    }

    #[test]
    fn nearest_picks_centre_samples() {
        // 8 -> 4 columns: centres 0.5*2 = 1, 3, 5, 7.
        let src = gradient(8, 6);
        let out = resize_rgb(
            &src,
            TargetSize::new(3, 4),
            Interpolation::Nearest,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(out.dimensions(), (4, 3));
        let xs: Vec<u8> = (0..4).map(|x| out.get_pixel(x, 0)[0]).collect();
        assert_eq!(xs, vec![10, 30, 50, 70]);
        // 6 -> 3 rows: rows 1, 3, 5.
        let ys: Vec<u8> = (0..3).map(|y| out.get_pixel(0, y)[1]).collect();
        assert_eq!(ys, vec![10, 30, 50]);
        assert!(out.pixels().all(|p| p[2] == 7));
    }

    #[test]
    fn nearest_upscale_repeats_pixels() {
        let src = gradient(2, 2);
        let out = resize_rgb(
            &src,
            TargetSize::new(4, 4),
            Interpolation::Nearest,
            Path::new("t"),
        )
        .unwrap();
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(out.get_pixel(x, y), src.get_pixel(x / 2, y / 2));
            }
        }
    }

    #[test]
    fn bilinear_preserves_constants_and_averages() {
        let flat = RgbImage::from_pixel(9, 7, image::Rgb([12, 34, 56]));
        let out = resize_rgb(
            &flat,
            TargetSize::new(3, 4),
            Interpolation::Bilinear,
            Path::new("t"),
        )
        .unwrap();
        assert!(out.pixels().all(|p| p.0 == [12, 34, 56]));
        // Halving a two-column image averages each pair.
        let src = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 0 } else { 200 }; 3]));
        let out = resize_rgb(
            &src,
            TargetSize::new(1, 1),
            Interpolation::Bilinear,
            Path::new("t"),
        )
        .unwrap();
        assert!((i32::from(out.get_pixel(0, 0)[0]) - 100).abs() <= 1);
    }

    #[test]
    fn same_size_is_a_copy_and_bad_buffers_are_refused() {
        let src = gradient(5, 4);
        let out = resize_rgb(
            &src,
            TargetSize::new(4, 5),
            Interpolation::Bilinear,
            Path::new("t"),
        )
        .unwrap();
        assert_eq!(out, src);
        let mut dst = vec![0u8; 10];
        assert!(
            resize_into(
                src.as_raw(),
                5,
                4,
                &mut dst,
                TargetSize::new(2, 2),
                Interpolation::Nearest
            )
            .is_err()
        );
    }

    #[test]
    fn nearest_matches_fast_image_resize() {
        for (w, h, tw, th) in [
            (500, 375, 150, 150),
            (7, 3, 20, 11),
            (150, 150, 149, 151),
            (1, 1, 4, 3),
        ] {
            let src = RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 13 + y) as u8, (y * 7) as u8, (x ^ y) as u8])
            });
            let target = TargetSize::new(th, tw);
            let mut ours = vec![0u8; target.pixels() * 3];
            resize_into(
                src.as_raw(),
                w,
                h,
                &mut ours,
                target,
                Interpolation::Nearest,
            )
            .unwrap();
            let src_view =
                fast_image_resize::images::ImageRef::new(w, h, src.as_raw(), PixelType::U8x3)
                    .unwrap();
            let mut theirs = vec![0u8; target.pixels() * 3];
            let mut dst_view = Image::from_slice_u8(tw, th, &mut theirs, PixelType::U8x3).unwrap();
            Resizer::new()
                .resize(
                    &src_view,
                    &mut dst_view,
                    &ResizeOptions::new().resize_alg(ResizeAlg::Nearest),
                )
                .unwrap();
            assert_eq!(ours, theirs, "{w}x{h} -> {tw}x{th}");
        }
    }
}
