//! `curves.png`: loss and accuracy per epoch, training against validation, in two panels; and
//! the same curves of several runs side by side ([`render_comparison`]).
//!
//! Text is drawn with a font compiled into the crate (DejaVu Sans Mono, see
//! `assets/DejaVuSansMono-LICENSE.txt`), so plotting works on a machine with no fonts or
//! fontconfig installed.

use crate::error::{EngineError, Result};
use crate::history::History;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// The bundled font's bytes.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

/// The font family name the bundled font is registered under.
const FAMILY: &str = "sans-serif";

/// Width and height of the picture, in pixels.
const SIZE: (u32, u32) = (1200, 480);

/// Width and height of one run's column in [`render_comparison`], in pixels.
const COLUMN: (u32, u32) = (560, 900);

/// Registers the bundled font with plotters, once per process.
fn ensure_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the bundled font cannot be read".to_string())
        })
        .clone()
}

/// The family name under which the bundled font (DejaVu Sans Mono) is registered with
/// plotters, registering it on first use; text drawn in it needs no installed fonts.
pub fn font_family() -> Result<&'static str> {
    ensure_font().map_err(|e| EngineError::output(Path::new("font"), e))?;
    Ok(FAMILY)
}

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);

/// One panel's series.
struct Panel<'a> {
    title: &'a str,
    train: Vec<(usize, f64)>,
    val: Vec<(usize, f64)>,
    /// Accuracy panels are drawn on [lowest, 1].
    unit_interval: bool,
}

/// Draws the history's loss and accuracy curves into a PNG image and returns its bytes.
pub fn render_curves(history: &History) -> Result<Vec<u8>> {
    render_png(SIZE, |rgb| draw(history, rgb))
}

/// Draws the loss and accuracy curves of several named runs side by side into a PNG image
/// and returns its bytes: one column per run (its name on top, loss above accuracy), the
/// runs' panels on shared y axes so that they compare at a glance.
pub fn render_comparison(runs: &[(&str, &History)]) -> Result<Vec<u8>> {
    let columns = runs.len().max(1) as u32;
    let size = (COLUMN.0 * columns, COLUMN.1);
    render_png(size, |rgb| draw_comparison(runs, size, rgb))
}

/// Draws into an RGB buffer of `size` and encodes it as PNG.
fn render_png(
    size: (u32, u32),
    draw: impl FnOnce(&mut [u8]) -> std::result::Result<(), String>,
) -> Result<Vec<u8>> {
    let fail = |e: String| EngineError::output(Path::new("curves.png"), e);
    ensure_font().map_err(fail)?;
    let (w, h) = size;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    draw(&mut rgb).map_err(fail)?;
    let img = image::RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| fail("the image buffer has the wrong size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| fail(e.to_string()))?;
    Ok(png)
}

/// Draws the curves and writes them to `path` as a PNG, atomically.
pub fn write_curves(history: &History, path: &Path) -> Result<()> {
    let png = render_curves(history).map_err(|e| match e {
        EngineError::Output { reason, .. } => EngineError::output(path, reason),
        other => other,
    })?;
    artifact::atomic_write(path, &png)?;
    Ok(())
}

fn series(
    history: &History,
    f: impl Fn(&crate::history::EpochRecord) -> Option<f64>,
) -> Vec<(usize, f64)> {
    history
        .epochs
        .iter()
        .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.epoch, v)))
        .collect()
}

/// The loss and accuracy panels of one history.
fn panels(history: &History) -> [Panel<'static>; 2] {
    [
        Panel {
            title: "loss",
            train: series(history, |r| Some(r.loss)),
            val: series(history, |r| r.val_loss),
            unit_interval: false,
        },
        Panel {
            title: "accuracy",
            train: series(history, |r| Some(r.acc)),
            val: series(history, |r| r.val_acc),
            unit_interval: true,
        },
    ]
}

fn last_epoch(history: &History) -> usize {
    history.epochs.iter().map(|r| r.epoch).max().unwrap_or(1)
}

fn draw(history: &History, rgb: &mut [u8]) -> std::result::Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let last = last_epoch(history);
    for (area, panel) in [left, right].iter().zip(&panels(history)) {
        draw_panel(area, panel, last, y_range(&[panel]))?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_comparison(
    runs: &[(&str, &History)],
    size: (u32, u32),
    rgb: &mut [u8],
) -> std::result::Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let all: Vec<[Panel<'static>; 2]> = runs.iter().map(|(_, h)| panels(h)).collect();
    let ranges: Vec<(f64, f64)> = (0..2)
        .map(|i| y_range(&all.iter().map(|p| &p[i]).collect::<Vec<_>>()))
        .collect();
    let columns = root.split_evenly((1, runs.len().max(1)));
    for ((column, (name, history)), run_panels) in columns.iter().zip(runs).zip(&all) {
        let column = column
            .titled(name, (FAMILY, 26))
            .map_err(|e| e.to_string())?;
        let (top, bottom) = column.split_vertically(column.dim_in_pixel().1 / 2);
        let last = last_epoch(history);
        for ((area, panel), range) in [top, bottom].iter().zip(run_panels).zip(&ranges) {
            draw_panel(area, panel, last, *range)?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The y axis of panels drawn on one scale: accuracy on [lowest, 1], loss on its range
/// padded by 8%.
fn y_range(panels: &[&Panel<'_>]) -> (f64, f64) {
    let values = panels
        .iter()
        .flat_map(|p| p.train.iter().chain(&p.val))
        .map(|p| p.1);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if panels.first().is_some_and(|p| p.unit_interval) {
        (((lo - 0.05).max(0.0) * 20.0).floor() / 20.0, 1.0)
    } else {
        let pad = ((hi - lo) * 0.08).max(1e-3);
        ((lo - pad).max(0.0), hi + pad)
    }
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
    last_epoch: usize,
    (y_lo, y_hi): (f64, f64),
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let x_hi = last_epoch.max(2);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(1usize..x_hi, y_lo..y_hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(x_hi.min(10))
        .y_labels(8)
        .y_label_formatter(&|v| format!("{v:.2}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for (points, color, label) in [
        (&panel.train, TRAIN_COLOR, "train"),
        (&panel.val, VAL_COLOR, "validation"),
    ] {
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(if panel.unit_interval {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EpochRecord;

    #[test]
    fn writes_a_decodable_png_with_text() {
        let history = History {
            epochs: (1..=5)
                .map(|e| EpochRecord {
                    epoch: e,
                    loss: 0.7 / e as f64,
                    acc: 0.5 + 0.08 * e as f64,
                    val_loss: Some(0.75 / e as f64),
                    val_acc: Some(0.45 + 0.08 * e as f64),
                    seconds: 1.0,
                    val_seconds: None,
                    lr: 1e-3,
                })
                .collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        write_curves(&history, &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), SIZE);
        // Both series colours are present, and dark (text and axis) pixels too.
        let has = |c: [u8; 3]| img.pixels().any(|p| p.0 == c);
        assert!(has([31, 119, 180]) && has([255, 127, 14]));
        let dark = img.pixels().filter(|p| p.0.iter().all(|&v| v < 80)).count();
        assert!(dark > 500, "{dark} dark pixels");

        // A single epoch without validation still draws.
        let one = History {
            epochs: vec![EpochRecord {
                val_loss: None,
                val_acc: None,
                ..history.epochs[0].clone()
            }],
        };
        assert!(render_curves(&one).unwrap().starts_with(b"\x89PNG"));
    }

    #[test]
    fn compares_runs_side_by_side_on_shared_axes() {
        let run = |epochs: usize, acc: f64| History {
            epochs: (1..=epochs)
                .map(|e| EpochRecord {
                    epoch: e,
                    loss: 1.0 / e as f64,
                    acc,
                    val_loss: Some(1.2 / e as f64),
                    val_acc: Some(acc - 0.05),
                    seconds: 1.0,
                    val_seconds: None,
                    lr: 1e-3,
                })
                .collect(),
        };
        let (a, b) = (run(5, 0.8), run(3, 0.95));
        let png = render_comparison(&[("one", &a), ("two", &b)]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * COLUMN.0, COLUMN.1));
        // Each column has both series' colours.
        let half = COLUMN.0;
        for x0 in [0, half] {
            let has = |c: [u8; 3]| {
                (x0..x0 + half).any(|x| (0..COLUMN.1).any(|y| img.get_pixel(x, y).0 == c))
            };
            assert!(has([31, 119, 180]) && has([255, 127, 14]), "column at {x0}");
        }
        // Shared axes: both runs' accuracy panels span the same range.
        let all = [panels(&a), panels(&b)];
        let acc = y_range(&[&all[0][1], &all[1][1]]);
        assert_eq!(acc, (0.7, 1.0));
        assert!(y_range(&[&all[0][0], &all[1][0]]).1 > 1.2);
        // No runs still draws an empty picture; the font is available by name.
        assert!(render_comparison(&[]).unwrap().starts_with(b"\x89PNG"));
        assert_eq!(font_family().unwrap(), FAMILY);
    }
}
