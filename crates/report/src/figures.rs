//! The report's pictures: the three methods' training curves side by side, a grid of the
//! validation images a model got wrong, and a model's reliability diagram before and after
//! calibration.

use std::path::Path;

use engine::History;
use engine::calibration::ReliabilityBin;
use image::{Rgb, RgbImage, imageops};
use models::GradCam;
use plotters::prelude::*;
use rayon::prelude::*;
use stage::{Calibration, Mistake};

use crate::error::{ReportError, Result};

/// Side of a thumbnail's square cell, in pixels.
pub const THUMB: u32 = 128;
/// Cells per row of the mistakes grid.
pub const COLUMNS: u32 = 8;
/// Gap between cells and around the grid, in pixels.
pub(crate) const GAP: u32 = 8;
/// Height of the caption under each thumbnail, in pixels.
const CAPTION: u32 = 36;
/// Caption font size, in pixels.
pub(crate) const FONT_SIZE: f64 = 13.0;
/// Caption characters that fit under a thumbnail in the monospaced font.
pub(crate) const CAPTION_CHARS: usize = 16;

/// Width and height of a reliability diagram, in pixels.
pub const RELIABILITY_SIZE: (u32, u32) = (640, 600);
/// The uncalibrated bars' colour (the curves' orange).
pub const UNCALIBRATED_COLOR: RGBColor = RGBColor(255, 127, 14);
/// The calibrated bars' colour (the curves' blue).
pub const CALIBRATED_COLOR: RGBColor = RGBColor(31, 119, 180);

/// The training curves of named runs side by side (see [`engine::render_comparison`]), as
/// PNG bytes; `path` names the figure in errors.
pub fn curves(runs: &[(&str, &History)], path: &Path) -> Result<Vec<u8>> {
    engine::render_comparison(runs).map_err(|e| ReportError::figure(path, e))
}

/// A grid of the images of `mistakes`, in order, each scaled into a square cell with the
/// predicted class and its probability, and the file name, under it. A mistake that records
/// its Grad-CAM (`classify evaluate` does for models on VGG16 or EfficientNet-Lite0) has it
/// drawn over its thumbnail ([`models::gradcam::overlay`]: red where the model found the
/// most evidence for the class it predicted, blue where none). Returns PNG bytes and the
/// number of images that could not be read (drawn as grey cells saying so). Relative image
/// paths are taken from the current folder, where `classify evaluate` wrote them.
pub fn mistakes_grid(mistakes: &[&Mistake], path: &Path) -> Result<(Vec<u8>, usize)> {
    let thumbs: Vec<Option<RgbImage>> = mistakes
        .par_iter()
        .map(|m| {
            imagedata::load_rgb(&m.image, &imagedata::Limits::default())
                .ok()
                .map(|img| thumbnail(&img, m.cam.as_ref()))
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

/// `photo` scaled to fit a cell, with `cam` (where the model looked) drawn over it when there
/// is one and it is well formed.
fn thumbnail(photo: &RgbImage, cam: Option<&GradCam>) -> RgbImage {
    let thumb = imagedata::fit_within(photo, THUMB);
    match cam.filter(|c| c.is_valid()) {
        Some(cam) => models::gradcam::overlay(&thumb, cam, models::gradcam::OVERLAY_ALPHA),
        None => thumb,
    }
}

/// The reliability diagram of a model's calibration, titled `title`, as PNG bytes; `path`
/// names the figure in errors. x: confidence (the top probability, 0 to 1); y: the accuracy
/// of the photos in each confidence bin; the diagonal is perfect calibration. Each non-empty
/// bin has two bars side by side: without the temperature (left half, orange) and with it,
/// cross-fitted (right half, blue); the legend gives each one's expected calibration error.
pub fn reliability(title: &str, calibration: &Calibration, path: &Path) -> Result<Vec<u8>> {
    let family = engine::font_family().map_err(|e| ReportError::figure(path, e))?;
    let (width, height) = RELIABILITY_SIZE;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    {
        let fail = |e: DrawingAreaErrorKind<_>| ReportError::figure(path, e);
        let root = BitMapBackend::with_buffer(&mut canvas, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (family, 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("confidence (top probability)")
            .y_desc("accuracy")
            .x_labels(11)
            .y_labels(11)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((family, 14))
            .axis_desc_style((family, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(fail)?;
        let series = [
            (
                &calibration.reliability_before,
                UNCALIBRATED_COLOR,
                false,
                format!("uncalibrated: ECE {:.4}", calibration.ece_before),
            ),
            (
                &calibration.reliability_after,
                CALIBRATED_COLOR,
                true,
                format!(
                    "calibrated (cross-fitted), T = {:.3}: ECE {:.4}",
                    calibration.temperature, calibration.ece_after
                ),
            ),
        ];
        for (bins, color, right, label) in series {
            chart
                .draw_series(bars(bins, right).flat_map(|[a, b]| {
                    [
                        Rectangle::new([a, b], color.filled()),
                        Rectangle::new([a, b], BLACK.stroke_width(1)),
                    ]
                }))
                .map_err(fail)?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 20, y + 6)], color.filled())
                });
        }
        // The diagonal over the bars, so that it shows where they fall short of it.
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, 0.0), (1.0, 1.0)],
                8,
                5,
                grey.stroke_width(2),
            ))
            .map_err(fail)?
            .label("perfect calibration")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
            });
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((family, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(fail)?;
        root.present().map_err(fail)?;
    }
    encode_png(&canvas, path)
}

/// The share of a bin's width left empty on each side of its pair of bars, so that the bins
/// stand apart.
const BIN_GAP: f64 = 0.0625;

/// The corners of the bars of a reliability diagram's non-empty bins: each bin's left half,
/// or its right half when `right` (less [`BIN_GAP`] at the bin's edge), from 0 up to the
/// bin's accuracy.
fn bars(bins: &[ReliabilityBin], right: bool) -> impl Iterator<Item = [(f64, f64); 2]> + '_ {
    bins.iter().filter(|b| b.count > 0).map(move |b| {
        let mid = 0.5 * (b.lower + b.upper);
        let gap = BIN_GAP * (b.upper - b.lower);
        let (x0, x1) = if right {
            (mid, b.upper - gap)
        } else {
            (b.lower + gap, mid)
        };
        [(x0, b.accuracy.clamp(0.0, 1.0)), (x1, 0.0)]
    })
}

/// `s` cut to `max` characters, the last one an ellipsis when it was longer.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `img` as PNG bytes; `path` names the figure in errors.
pub(crate) fn encode_png(img: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| ReportError::figure(path, e))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_bars_split_each_non_empty_bin() {
        let bin = |lower: f64, count: usize, accuracy: f64| ReliabilityBin {
            lower,
            upper: lower + 0.25,
            count,
            confidence: lower + 0.1,
            accuracy,
        };
        let bins = [bin(0.25, 0, 0.0), bin(0.5, 3, 0.5), bin(0.75, 2, 1.0)];
        let left: Vec<_> = bars(&bins, false).collect();
        let gap = BIN_GAP * 0.25;
        assert_eq!(
            left,
            [
                [(0.5 + gap, 0.5), (0.625, 0.0)],
                [(0.75 + gap, 1.0), (0.875, 0.0)]
            ]
        );
        let right: Vec<_> = bars(&bins, true).collect();
        assert_eq!(
            right,
            [
                [(0.625, 0.5), (0.75 - gap, 0.0)],
                [(0.875, 1.0), (1.0 - gap, 0.0)]
            ]
        );
    }

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
            cam: None,
        };
        let mut hot = mistake(&good);
        // Where the model looked: the right half of the image.
        hot.cam = Some(GradCam::new(1, 2, vec![0.0, 2.0]).unwrap());
        let list = [mistake(&good), mistake(&dir.path().join("gone.jpg")), hot];
        let refs: Vec<&Mistake> = list.iter().collect();
        let (png, unreadable) = mistakes_grid(&refs, Path::new("m.png")).unwrap();
        assert_eq!(unreadable, 1);
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(
            img.dimensions(),
            (GAP + 3 * (THUMB + GAP), GAP + THUMB + CAPTION + GAP)
        );
        // The green image is scaled to the cell's width, centred vertically.
        assert_eq!(img.get_pixel(GAP + 2, GAP + THUMB / 2).0, [0, 200, 0]);
        assert_eq!(img.get_pixel(GAP + 2, GAP + 2).0, [236, 236, 236]);
        // The third has its map over it: red-tinted on the right, blue-tinted on the left,
        // and the blank margins of the cell untouched.
        let x0 = GAP + 2 * (THUMB + GAP);
        let left = img.get_pixel(x0 + 2, GAP + THUMB / 2).0;
        let right = img.get_pixel(x0 + THUMB - 3, GAP + THUMB / 2).0;
        assert!(right[0] > 50 && right[2] < 5, "{right:?}");
        assert!(left[2] > 50 && left[0] < 5, "{left:?}");
        assert_eq!(img.get_pixel(x0 + 2, GAP + 2).0, [236, 236, 236]);
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
