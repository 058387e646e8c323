//! The report's pictures: the three methods' training curves side by side, and a grid of the
//! validation images a model got wrong.

use std::path::Path;

use engine::History;
use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;
use rayon::prelude::*;
use stage::Mistake;

use crate::error::{ReportError, Result};

/// Side of a thumbnail's square cell, in pixels.
pub const THUMB: u32 = 128;
/// Cells per row of the mistakes grid.
pub const COLUMNS: u32 = 8;
/// Gap between cells and around the grid, in pixels.
const GAP: u32 = 8;
/// Height of the caption under each thumbnail, in pixels.
const CAPTION: u32 = 36;
/// Caption font size, in pixels.
const FONT_SIZE: f64 = 13.0;
/// Caption characters that fit under a thumbnail in the monospaced font.
const CAPTION_CHARS: usize = 16;

/// The training curves of named runs side by side (see [`engine::render_comparison`]), as
/// PNG bytes; `path` names the figure in errors.
pub fn curves(runs: &[(&str, &History)], path: &Path) -> Result<Vec<u8>> {
    engine::render_comparison(runs).map_err(|e| ReportError::figure(path, e))
}

/// A grid of the images of `mistakes`, in order, each scaled into a square cell with the
/// predicted class and its probability, and the file name, under it. Returns PNG bytes and
/// the number of images that could not be read (drawn as grey cells saying so). Relative
/// image paths are taken from the current folder, where `classify evaluate` wrote them.
pub fn mistakes_grid(mistakes: &[&Mistake], path: &Path) -> Result<(Vec<u8>, usize)> {
    let thumbs: Vec<Option<RgbImage>> = mistakes
        .par_iter()
        .map(|m| {
            imagedata::load_rgb(&m.image, &imagedata::Limits::default())
                .ok()
                .map(|img| imagedata::fit_within(&img, THUMB))
        })
        .collect();
    let n = mistakes.len().max(1) as u32;
    let columns = n.min(COLUMNS);
    let rows = n.div_ceil(columns);
    let width = GAP + columns * (THUMB + GAP);
    let height = GAP + rows * (THUMB + CAPTION + GAP);
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let cell_origin = |i: usize| {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        (
            GAP + col * (THUMB + GAP),
            GAP + row * (THUMB + CAPTION + GAP),
        )
    };
    let blank = RgbImage::from_pixel(THUMB, THUMB, Rgb([236, 236, 236]));
    for (i, thumb) in thumbs.iter().enumerate() {
        let (x, y) = cell_origin(i);
        imageops::overlay(&mut canvas, &blank, i64::from(x), i64::from(y));
        if let Some(t) = thumb {
            let dx = (THUMB - t.width()) / 2;
            let dy = (THUMB - t.height()) / 2;
            imageops::overlay(&mut canvas, t, i64::from(x + dx), i64::from(y + dy));
        }
    }
    let family = engine::font_family().map_err(|e| ReportError::figure(path, e))?;
    {
        let root = BitMapBackend::with_buffer(&mut canvas, (width, height)).into_drawing_area();
        let style = |color: RGBColor| (family, FONT_SIZE).into_font().color(&color);
        let text = |s: String, x: u32, y: u32, color: RGBColor| {
            root.draw(&Text::new(s, (x as i32, y as i32), style(color)))
                .map_err(|e| ReportError::figure(path, e))
        };
        for (i, (m, thumb)) in mistakes.iter().zip(&thumbs).enumerate() {
            let (x, y) = cell_origin(i);
            if thumb.is_none() {
                text(
                    "unreadable".into(),
                    x + 4,
                    y + THUMB / 2 - 7,
                    RGBColor(90, 90, 90),
                )?;
            }
            let verdict = format!("{} {:.3}", m.predicted, m.probability);
            text(
                shorten(&verdict, CAPTION_CHARS),
                x,
                y + THUMB + 3,
                RGBColor(170, 20, 20),
            )?;
            let name = m
                .image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            text(
                shorten(&name, CAPTION_CHARS),
                x,
                y + THUMB + 19,
                RGBColor(80, 80, 80),
            )?;
        }
        root.present().map_err(|e| ReportError::figure(path, e))?;
    }
    let unreadable = thumbs.iter().filter(|t| t.is_none()).count();
    Ok((encode_png(&canvas, path)?, unreadable))
}

/// `s` cut to `max` characters, the last one an ellipsis when it was longer.
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn encode_png(img: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ReportError::figure(path, e))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_with_an_ellipsis() {
        assert_eq!(shorten("cat.1000.jpg", 16), "cat.1000.jpg");
        assert_eq!(shorten("abcdefghij", 5), "abcd…");
    }

    #[test]
    fn a_grid_of_readable_and_unreadable_images() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("dog.1.png");
        RgbImage::from_pixel(60, 30, Rgb([0, 200, 0]))
            .save(&good)
            .unwrap();
        let mistake = |image: &Path| Mistake {
            image: image.to_path_buf(),
            actual: "dogs".into(),
            predicted: "cats".into(),
            probability: 0.875,
        };
        let list = [mistake(&good), mistake(&dir.path().join("gone.jpg"))];
        let refs: Vec<&Mistake> = list.iter().collect();
        let (png, unreadable) = mistakes_grid(&refs, Path::new("m.png")).unwrap();
        assert_eq!(unreadable, 1);
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(
            img.dimensions(),
            (GAP + 2 * (THUMB + GAP), GAP + THUMB + CAPTION + GAP)
        );
        // The green image is scaled to the cell's width, centred vertically.
        assert_eq!(img.get_pixel(GAP + 2, GAP + THUMB / 2).0, [0, 200, 0]);
        assert_eq!(img.get_pixel(GAP + 2, GAP + 2).0, [236, 236, 236]);
        // Captions are drawn in red under the cells.
        let red = (0..img.width())
            .flat_map(|x| (GAP + THUMB..img.height()).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                let p = img.get_pixel(x, y).0;
                p[0] > 120 && p[1] < 90 && p[2] < 90
            })
            .count();
        assert!(red > 50, "{red} red caption pixels");
    }
}
