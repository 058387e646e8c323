//! Decoding: colour types, and every kind of bad file, each with the documented outcome.

mod common;

use common::*;
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageBuffer, ImageFormat, Rgba, RgbaImage};
use imagedata::{DataError, Limits, decode::probe, load_rgb};

#[test]
fn png_and_jpeg_rgb_decode() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(33, 17, 1);
    let png = write(
        dir.path(),
        "a.png",
        &encode(&img.clone().into(), ImageFormat::Png),
    );
    assert_eq!(load_rgb(&png, &Limits::default()).unwrap(), img);
    let jpg = write(dir.path(), "a.jpg", &jpeg(&img));
    let decoded = load_rgb(&jpg, &Limits::default()).unwrap();
    assert_eq!(decoded.dimensions(), (33, 17));
    assert!(max_diff(&decoded, &img) < 40, "lossy but close");
    assert_eq!(
        probe(&png).unwrap(),
        (imagedata::decode::Format::Png, 33, 17)
    );
}

#[test]
fn grayscale_is_replicated_to_three_channels() {
    let dir = tempfile::tempdir().unwrap();
    let gray = GrayImage::from_fn(10, 6, |x, y| image::Luma([(x * 20 + y) as u8]));
    let png = write(
        dir.path(),
        "g.png",
        &encode(&DynamicImage::ImageLuma8(gray.clone()), ImageFormat::Png),
    );
    let rgb = load_rgb(&png, &Limits::default()).unwrap();
    for (x, y, p) in rgb.enumerate_pixels() {
        let v = gray.get_pixel(x, y)[0];
        assert_eq!(p.0, [v, v, v]);
    }
    // A grayscale JPEG.
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 100)
        .encode_image(&gray)
        .unwrap();
    let jpg = write(dir.path(), "g.jpg", &bytes);
    let rgb = load_rgb(&jpg, &Limits::default()).unwrap();
    assert_eq!(rgb.dimensions(), (10, 6));
    for (x, y, p) in rgb.enumerate_pixels() {
        assert_eq!(p[0], p[1]);
        assert_eq!(p[1], p[2]);
        assert!(p[0].abs_diff(gray.get_pixel(x, y)[0]) <= 8);
    }
}

#[test]
fn alpha_is_dropped_not_composited() {
    let dir = tempfile::tempdir().unwrap();
    let rgba = RgbaImage::from_fn(8, 5, |x, y| {
        Rgba([x as u8 * 30, y as u8 * 50, 77, (x * 30) as u8])
    });
    let png = write(
        dir.path(),
        "rgba.png",
        &encode(&DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png),
    );
    let rgb = load_rgb(&png, &Limits::default()).unwrap();
    for (x, y, p) in rgb.enumerate_pixels() {
        let q = rgba.get_pixel(x, y);
        assert_eq!(p.0, [q[0], q[1], q[2]], "colour kept even where alpha is 0");
    }
    let la = GrayAlphaImage::from_fn(4, 4, |x, _| image::LumaA([x as u8 * 60, 0]));
    let png = write(
        dir.path(),
        "la.png",
        &encode(&DynamicImage::ImageLumaA8(la), ImageFormat::Png),
    );
    let rgb = load_rgb(&png, &Limits::default()).unwrap();
    assert_eq!(rgb.get_pixel(3, 2).0, [180, 180, 180]);
}

#[test]
fn sixteen_bit_png_is_rounded_to_eight_bits() {
    let dir = tempfile::tempdir().unwrap();
    let img: ImageBuffer<image::Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(4, 3, |x, y| {
        image::Rgb([x as u16 * 20000, y as u16 * 30000, 65535])
    });
    let png = write(
        dir.path(),
        "16.png",
        &encode(&DynamicImage::ImageRgb16(img.clone()), ImageFormat::Png),
    );
    let rgb = load_rgb(&png, &Limits::default()).unwrap();
    for (x, y, p) in rgb.enumerate_pixels() {
        let q = img.get_pixel(x, y);
        for c in 0..3 {
            let want = (f64::from(q[c]) / 257.0).round() as u8;
            assert!(p[c].abs_diff(want) <= 1, "{} vs {want}", p[c]);
        }
    }
}

#[test]
fn cmyk_and_ycck_jpegs_become_rgb() {
    let dir = tempfile::tempdir().unwrap();
    // Left half pure cyan (C = 255), right half pure yellow (Y = 255), bottom rows 50% black.
    let (w, h) = (16u16, 16u16);
    let mut cmyk = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let k = if y >= 8 { 128 } else { 0 };
            if x < 8 {
                cmyk.extend_from_slice(&[255, 0, 0, k]);
            } else {
                cmyk.extend_from_slice(&[0, 0, 255, k]);
            }
        }
    }
    for as_ycck in [false, true] {
        let path = write(dir.path(), "cmyk.jpg", &cmyk_jpeg(&cmyk, w, h, as_ycck));
        let rgb = load_rgb(&path, &Limits::default()).unwrap();
        assert_eq!(rgb.dimensions(), (16, 16));
        let close =
            |p: [u8; 3], want: [u8; 3]| p.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 12);
        assert!(
            close(rgb.get_pixel(2, 2).0, [0, 255, 255]),
            "cyan, ycck={as_ycck}: {:?}",
            rgb.get_pixel(2, 2)
        );
        assert!(
            close(rgb.get_pixel(13, 2).0, [255, 255, 0]),
            "yellow, ycck={as_ycck}: {:?}",
            rgb.get_pixel(13, 2)
        );
        assert!(
            close(rgb.get_pixel(13, 13).0, [127, 127, 0]),
            "dark yellow, ycck={as_ycck}: {:?}",
            rgb.get_pixel(13, 13)
        );
    }
}

#[test]
fn missing_and_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jpg");
    let err = load_rgb(&missing, &Limits::default()).unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("missing.jpg"));

    let empty = write(dir.path(), "empty.jpg", b"");
    let err = load_rgb(&empty, &Limits::default()).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{}: empty file (0 bytes)", empty.display())
    );
}

#[test]
fn non_images_are_refused_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "notes.jpg", b"these are not pixels\n");
    let err = load_rgb(&text, &Limits::default()).unwrap_err();
    assert!(matches!(err, DataError::Unsupported { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("notes.jpg") && msg.contains("not a JPEG or PNG"),
        "{msg}"
    );

    let gif = write(
        dir.path(),
        "anim.png",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
    );
    let err = load_rgb(&gif, &Limits::default()).unwrap_err();
    assert!(matches!(err, DataError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("gif"), "{err}");

    // A PNG signature followed by garbage.
    let bad = write(
        dir.path(),
        "bad.png",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDRgarbage-garbage",
    );
    let err = load_rgb(&bad, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("bad.png"), "{err}");
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(64, 48, 3);
    let full = jpeg(&img);
    for cut in [full.len() / 2, full.len() - 2, 300] {
        let path = write(dir.path(), "cut.jpg", &full[..cut]);
        let err = load_rgb(&path, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, DataError::Truncated { format: "JPEG", .. }),
            "cut {cut}: {err}"
        );
        assert!(err.to_string().contains("cut.jpg: truncated JPEG"), "{err}");
    }
    // Bytes after the end-of-image marker are fine.
    let mut padded = full.clone();
    padded.extend_from_slice(&[0u8; 100]);
    let path = write(dir.path(), "padded.jpg", &padded);
    assert!(load_rgb(&path, &Limits::default()).is_ok());

    let png = encode(&img.into(), ImageFormat::Png);
    let path = write(dir.path(), "cut.png", &png[..png.len() / 2]);
    let err = load_rgb(&path, &Limits::default()).unwrap_err();
    assert!(
        matches!(err, DataError::Truncated { format: "PNG", .. }),
        "{err}"
    );
}

#[test]
fn headers_claiming_huge_sizes_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let png = encode(&pattern(4, 4, 0).into(), ImageFormat::Png);
    let bomb = write(dir.path(), "bomb.png", &patch_png_size(&png, 30000, 30000));
    let err = load_rgb(&bomb, &Limits::default()).unwrap_err();
    match &err {
        DataError::TooLarge { width, height, .. } => assert_eq!((*width, *height), (30000, 30000)),
        other => panic!("expected TooLarge, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("bomb.png: image too large: the header claims 30000x30000"),
        "{err}"
    );

    let jpg = jpeg(&pattern(8, 8, 0));
    let bomb = write(dir.path(), "bomb.jpg", &patch_jpeg_size(&jpg, 30000, 30000));
    let err = load_rgb(&bomb, &Limits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TooLarge {
                width: 30000,
                height: 30000,
                ..
            }
        ),
        "{err}"
    );

    // Within the pixel limits but over the allocation limit.
    let small = write(dir.path(), "small.png", &png);
    let tight = Limits {
        max_alloc: 20,
        ..Limits::default()
    };
    let err = load_rgb(&small, &tight).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::TooLarge { .. } | DataError::OverLimit { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", small.display())),
        "{err}"
    );
    assert!(!err.to_string().contains("0x0"), "{err}");
    let narrow = Limits {
        max_width: 3,
        ..Limits::default()
    };
    assert!(matches!(
        load_rgb(&small, &narrow),
        Err(DataError::TooLarge { .. })
    ));
    assert!(load_rgb(&small, &Limits::default()).is_ok());
}

#[test]
fn corrupt_data_never_panics() {
    // Flip bytes all over a real JPEG and PNG: every outcome must be Ok or a named error.
    let dir = tempfile::tempdir().unwrap();
    let img = pattern(40, 30, 9);
    for (name, bytes) in [
        ("x.jpg", jpeg(&img)),
        ("x.png", encode(&img.into(), ImageFormat::Png)),
    ] {
        for i in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[i] ^= 0x5A;
            let path = write(dir.path(), name, &b);
            if let Err(e) = load_rgb(&path, &Limits::default()) {
                assert!(e.to_string().contains(name), "{e}");
            }
        }
    }
}
