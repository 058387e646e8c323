//! `curves.png`: loss and accuracy per epoch, training against validation, in two panels.
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
    ensure_font().map_err(|e| EngineError::output(Path::new("curves.png"), e))?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    draw(history, &mut rgb).map_err(|e| EngineError::output(Path::new("curves.png"), e))?;
    let img = image::RgbImage::from_raw(w, h, rgb).ok_or_else(|| {
        EngineError::output(
            Path::new("curves.png"),
            "the image buffer has the wrong size",
        )
    })?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| EngineError::output(Path::new("curves.png"), e))?;
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

fn draw(history: &History, rgb: &mut [u8]) -> std::result::Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let panels = [
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
    ];
    let last_epoch = history.epochs.iter().map(|r| r.epoch).max().unwrap_or(1);
    for (area, panel) in [left, right].iter().zip(&panels) {
        draw_panel(area, panel, last_epoch)?;
    }
    root.present().map_err(|e| e.to_string())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel<'_>,
    last_epoch: usize,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let values = panel.train.iter().chain(&panel.val).map(|p| p.1);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (y_lo, y_hi) = if !lo.is_finite() {
        (0.0, 1.0)
    } else if panel.unit_interval {
        (((lo - 0.05).max(0.0) * 20.0).floor() / 20.0, 1.0)
    } else {
        let pad = ((hi - lo) * 0.08).max(1e-3);
        ((lo - pad).max(0.0), hi + pad)
    };
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
}
