//! A grid of photo thumbnails with captions, for any list of photos: each cell holds one
//! photo, or several side by side (a photo and its twin), scaled into squares of
//! [`THUMB`](crate::figures::THUMB) pixels as the mistakes grid draws them, with coloured
//! caption lines under it. A photo that cannot be read is a grey square saying so.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage, imageops};
use plotters::prelude::*;
use rayon::prelude::*;

use crate::error::{ReportError, Result};
use crate::figures::{CAPTION_CHARS, COLUMNS, FONT_SIZE, GAP, THUMB, encode_png, shorten};

/// Gap between the photos of one cell, in pixels.
pub const INNER_GAP: u32 = 4;
/// Height of one caption line, in pixels.
pub const LINE_HEIGHT: u32 = 16;
/// The colour of a cell's first caption line (the finding).
pub const ALERT: RGBColor = RGBColor(170, 20, 20);
/// The colour of the other caption lines (file names).
pub const MUTED: RGBColor = RGBColor(80, 80, 80);
/// The frame of a marked cell.
pub const MARK: Rgb<u8> = Rgb([220, 30, 30]);
/// The background of a photo's square (and of an unreadable photo's).
pub const BLANK: Rgb<u8> = Rgb([236, 236, 236]);
/// Width of a marked cell's frame, in pixels (less than [`GAP`]).
const FRAME: u32 = 3;

/// One cell of a [`thumbnail_grid`].
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The photos, drawn side by side in this order (relative paths are taken from the
    /// current folder).
    pub photos: Vec<PathBuf>,
    /// The caption lines under the photos, top first, each with its colour; cut with an
    /// ellipsis to the cell's width.
    pub lines: Vec<(String, RGBColor)>,
    /// Framed in red.
    pub marked: bool,
}

/// The photos a grid of `cells` cells of `photos` photos side by side shows per row: eight
/// single photos, four pairs.
pub fn columns(cells: usize, photos: usize) -> u32 {
    let per_row = (COLUMNS / photos.max(1) as u32).max(1);
    (cells.max(1) as u32).min(per_row)
}

/// The width and height of a cell's photos (without the caption): `photos` squares side by
/// side.
pub fn cell_size(photos: usize) -> (u32, u32) {
    let k = photos.max(1) as u32;
    (k * THUMB + (k - 1) * INNER_GAP, THUMB)
}

/// The width and height in pixels of the [`thumbnail_grid`] of `cells` cells of at most
/// `photos` photos and `lines` caption lines each.
pub fn grid_size(cells: usize, photos: usize, lines: usize) -> (u32, u32) {
    let columns = columns(cells, photos);
    let rows = (cells.max(1) as u32).div_ceil(columns);
    let (w, h) = cell_size(photos);
    (
        GAP + columns * (w + GAP),
        GAP + rows * (h + caption_height(lines) + GAP),
    )
}

fn caption_height(lines: usize) -> u32 {
    4 + LINE_HEIGHT * lines as u32
}

/// A grid of `cells`, in order, left to right and top to bottom (eight single photos or four
/// pairs per row; see [`grid_size`]), as PNG bytes, and the number of photos that could not
/// be read (drawn as grey squares saying so); `path` names the figure in errors.
pub fn thumbnail_grid(cells: &[Cell], path: &Path) -> Result<(Vec<u8>, usize)> {
    let photos = cells
        .iter()
        .map(|c| c.photos.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let lines = cells.iter().map(|c| c.lines.len()).max().unwrap_or(0);
    let columns = columns(cells.len(), photos);
    let (width, height) = grid_size(cells.len(), photos, lines);
    let (cell_w, cell_h) = cell_size(photos);
    let pitch_y = cell_h + caption_height(lines) + GAP;
    let thumbs: Vec<Vec<Option<RgbImage>>> = cells
        .par_iter()
        .map(|c| {
            c.photos
                .iter()
                .map(|p| {
                    imagedata::load_rgb(p, &imagedata::Limits::default())
                        .ok()
                        .map(|img| imagedata::fit_within(&img, THUMB))
                })
                .collect()
        })
        .collect();
    let origin = |i: usize| {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        (GAP + col * (cell_w + GAP), GAP + row * pitch_y)
    };
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    let blank = RgbImage::from_pixel(THUMB, THUMB, BLANK);
    for (i, (cell, row)) in cells.iter().zip(&thumbs).enumerate() {
        let (x, y) = origin(i);
        if cell.marked {
            let (w, h) = cell_size(cell.photos.len());
            let frame = RgbImage::from_pixel(w + 2 * FRAME, h + 2 * FRAME, MARK);
            imageops::overlay(
                &mut canvas,
                &frame,
                i64::from(x - FRAME),
                i64::from(y - FRAME),
            );
        }
        for (j, thumb) in row.iter().enumerate() {
            let px = x + j as u32 * (THUMB + INNER_GAP);
            imageops::overlay(&mut canvas, &blank, i64::from(px), i64::from(y));
            if let Some(t) = thumb {
                let dx = (THUMB - t.width()) / 2;
                let dy = (THUMB - t.height()) / 2;
                imageops::overlay(&mut canvas, t, i64::from(px + dx), i64::from(y + dy));
            }
        }
    }
    let chars = CAPTION_CHARS * photos;
    let family = engine::font_family().map_err(|e| ReportError::figure(path, e))?;
    {
        let root = BitMapBackend::with_buffer(&mut canvas, (width, height)).into_drawing_area();
        let text = |s: String, x: u32, y: u32, color: &RGBColor| {
            let style = (family, FONT_SIZE).into_font().color(color);
            root.draw(&Text::new(s, (x as i32, y as i32), style))
                .map_err(|e| ReportError::figure(path, e))
        };
        for (i, (cell, row)) in cells.iter().zip(&thumbs).enumerate() {
            let (x, y) = origin(i);
            for (j, thumb) in row.iter().enumerate() {
                if thumb.is_none() {
                    let px = x + j as u32 * (THUMB + INNER_GAP);
                    text(
                        "unreadable".into(),
                        px + 4,
                        y + THUMB / 2 - 7,
                        &RGBColor(90, 90, 90),
                    )?;
                }
            }
            for (k, (line, color)) in cell.lines.iter().enumerate() {
                text(
                    shorten(line, chars),
                    x,
                    y + cell_h + 3 + k as u32 * LINE_HEIGHT,
                    color,
                )?;
            }
        }
        root.present().map_err(|e| ReportError::figure(path, e))?;
    }
    let unreadable = thumbs.iter().flatten().filter(|t| t.is_none()).count();
    Ok((encode_png(&canvas, path)?, unreadable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singles_and_pairs_fill_the_same_width() {
        assert_eq!(columns(3, 1), 3);
        assert_eq!(columns(30, 1), COLUMNS);
        assert_eq!(columns(30, 2), COLUMNS / 2);
        assert_eq!(
            grid_size(0, 1, 2),
            (GAP + THUMB + GAP, GAP + THUMB + 36 + GAP)
        );
        let (single, _) = grid_size(8, 1, 2);
        let (pair, _) = grid_size(4, 2, 2);
        assert_eq!(single - pair, 4 * (GAP - INNER_GAP));
        assert_eq!(grid_size(9, 1, 3).1, GAP + 2 * (THUMB + 52 + GAP));
    }

    #[test]
    fn pairs_marks_and_unreadable_photos() {
        let dir = tempfile::tempdir().unwrap();
        let green = dir.path().join("green.png");
        RgbImage::from_pixel(40, 40, Rgb([0, 200, 0]))
            .save(&green)
            .unwrap();
        let blue = dir.path().join("blue.jpg");
        RgbImage::from_pixel(20, 40, Rgb([0, 0, 255]))
            .save(&blue)
            .unwrap();
        let cells = [
            Cell {
                photos: vec![green.clone(), blue.clone()],
                lines: vec![("identical".into(), ALERT)],
                marked: false,
            },
            Cell {
                photos: vec![dir.path().join("gone.png")],
                lines: vec![("a".into(), ALERT), ("b".into(), MUTED)],
                marked: true,
            },
        ];
        let (png, unreadable) = thumbnail_grid(&cells, Path::new("g.png")).unwrap();
        assert_eq!(unreadable, 1);
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), grid_size(2, 2, 2));
        // The pair: green on the left, the blue one (portrait, centred) on the right.
        assert_eq!(img.get_pixel(GAP + 2, GAP + 2).0, [0, 200, 0]);
        let right = GAP + THUMB + INNER_GAP;
        assert_eq!(img.get_pixel(right + 2, GAP + 2).0, BLANK.0);
        let p = img.get_pixel(right + THUMB / 2, GAP + THUMB / 2).0;
        assert!(p[2] > 200 && p[0] < 40, "{p:?}");
        // The second cell is framed and grey.
        let x0 = GAP + cell_size(2).0 + GAP;
        assert_eq!(img.get_pixel(x0 - 2, GAP + 10).0, MARK.0);
        assert_eq!(img.get_pixel(x0 + 2, GAP + 2).0, BLANK.0);
    }
}
