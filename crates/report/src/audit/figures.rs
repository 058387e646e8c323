//! The section's pictures: thumbnail grids of the label issues, the leaking photos and the
//! duplicates (each beside its twin), and the strays, drawn with [`crate::grid`]; and the
//! learning curve with its power law.

use std::collections::BTreeMap;
use std::path::Path;

use image::{Rgb, RgbImage};
use plotters::prelude::*;
use stage::audit::{FlagKind, Flagged, LearningCurve, PowerLaw};

use super::{
    AuditInfo, DUPLICATES_FILE, LABEL_ISSUES_FILE, LEAKAGE_FILE, LEARNING_CURVE_FILE,
    MAX_LABEL_ISSUES, MAX_PAIRS, MAX_STRAYS, STRAYS_FILE, locate,
};
use crate::error::{ReportError, Result};
use crate::figures::encode_png;
use crate::grid::{ALERT, Cell, MUTED, thumbnail_grid};

/// Width and height of the learning curve, in pixels.
pub const LEARNING_CURVE_SIZE: (u32, u32) = (860, 600);
/// The mean accuracy's colour, with its error bars (the curves' blue).
pub const MEAN_COLOR: RGBColor = RGBColor(31, 119, 180);
/// The power law's colour (the curves' orange).
pub const FIT_COLOR: RGBColor = RGBColor(255, 127, 14);
/// How far past the largest size the power law is drawn.
pub const EXTRAPOLATION: f64 = 4.0;

/// One thumbnail grid drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridFigure {
    /// The PNG's file name, in the report folder.
    pub file: String,
    /// Cells shown.
    pub shown: usize,
    /// Findings of its kind in all.
    pub total: usize,
    /// Photos shown as unreadable.
    pub unreadable: usize,
}

/// The section's pictures, by file name in the report folder; a grid with nothing to show is
/// not drawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFigures {
    /// The likely wrong labels.
    pub label_issues: Option<GridFigure>,
    /// The leaking validation photos beside their twins in train.
    pub leakage: Option<GridFigure>,
    /// The duplicates beside their twins.
    pub duplicates: Option<GridFigure>,
    /// The highest-scored strays.
    pub strays: Option<GridFigure>,
    /// The learning curve, when it has a point.
    pub learning_curve: Option<String>,
}

/// `flagged` sorted by score, highest first (ties in their order).
fn by_score<'a>(flagged: impl Iterator<Item = &'a Flagged>) -> Vec<&'a Flagged> {
    let mut v: Vec<&Flagged> = flagged.collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score));
    v
}

/// The file's name without its folders.
fn file_name(f: &Flagged) -> String {
    f.photo
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| f.photo.file.clone())
}

/// What a pair's caption says about how alike the two are: `identical files`, or the
/// features' cosine similarity and the difference hashes' distance in bits
/// (`similarity 0.951, hash 3`).
pub fn likeness(f: &Flagged) -> String {
    if f.exact == Some(true) {
        return "identical files".into();
    }
    let mut parts = Vec::new();
    if let Some(s) = f.similarity {
        parts.push(format!("similarity {s:.3}"));
    }
    if let Some(d) = f.hash_distance {
        parts.push(format!("hash {d}"));
    }
    if parts.is_empty() {
        parts.push(format!("score {:.3}", f.score));
    }
    parts.join(", ")
}

/// The grid cells of the label issues: the photo, then `given → suggested`, the score, and
/// the split and file name.
pub fn label_issue_cells(issues: &[&Flagged], data_dir: &Path) -> Vec<Cell> {
    issues
        .iter()
        .map(|f| Cell {
            photos: vec![locate(&f.photo, data_dir)],
            lines: vec![
                (
                    format!(
                        "{} → {}",
                        f.photo.given,
                        f.suggested.as_deref().unwrap_or("?")
                    ),
                    ALERT,
                ),
                (format!("score {:.3}", f.score), MUTED),
                (format!("{}: {}", f.photo.split, file_name(f)), MUTED),
            ],
            marked: false,
        })
        .collect()
}

/// The grid cells of duplicates or leaking photos: the photo and its twin side by side, then
/// how alike they are and both files (class folder and name; the twin's in red when it is
/// in another class folder).
pub fn pair_cells(pairs: &[&Flagged], data_dir: &Path) -> Vec<Cell> {
    pairs
        .iter()
        .map(|f| {
            let mut photos = vec![locate(&f.photo, data_dir)];
            let mut lines = vec![(likeness(f), ALERT), (f.photo.file.clone(), MUTED)];
            if let Some(t) = &f.twin {
                photos.push(locate(t, data_dir));
                let color = if t.given == f.photo.given {
                    MUTED
                } else {
                    ALERT
                };
                lines.push((format!("twin: {}", t.file), color));
            }
            Cell {
                photos,
                lines,
                marked: false,
            }
        })
        .collect()
}

/// The grid cells of the strays: the photo, then its score, its split and class, and the file
/// name; the ones above `fence` framed.
pub fn stray_cells(strays: &[&Flagged], fence: f64, data_dir: &Path) -> Vec<Cell> {
    strays
        .iter()
        .map(|f| {
            let above = f.score > fence;
            Cell {
                photos: vec![locate(&f.photo, data_dir)],
                lines: vec![
                    (
                        format!("score {:.3}", f.score),
                        if above { ALERT } else { MUTED },
                    ),
                    (format!("{}: {}", f.photo.split, f.photo.given), MUTED),
                    (file_name(f), MUTED),
                ],
                marked: above,
            }
        })
        .collect()
}

/// Draws the section's pictures for `audit` (photos found as [`locate`] finds them under
/// `data_dir`), inserting each PNG into `images` by its file name; `dir` is the report folder
/// (for naming the figures in errors).
pub fn draw(
    audit: &AuditInfo,
    data_dir: &Path,
    dir: &Path,
    images: &mut BTreeMap<String, Vec<u8>>,
) -> Result<AuditFigures> {
    let r = &audit.report;
    let mut out = AuditFigures::default();
    let mut grid = |file: &str, cells: Vec<Cell>, total: usize| -> Result<Option<GridFigure>> {
        if cells.is_empty() {
            return Ok(None);
        }
        let (png, unreadable) = thumbnail_grid(&cells, &dir.join(file))?;
        images.insert(file.to_string(), png);
        Ok(Some(GridFigure {
            file: file.to_string(),
            shown: cells.len(),
            total,
            unreadable,
        }))
    };
    let mut issues = by_score(r.label_issues.issues.iter());
    let total = issues.len();
    issues.truncate(MAX_LABEL_ISSUES);
    out.label_issues = grid(
        LABEL_ISSUES_FILE,
        label_issue_cells(&issues, data_dir),
        total,
    )?;
    for kind in [FlagKind::Leakage, FlagKind::Duplicate] {
        let mut pairs = by_score(r.duplicates.found.iter().filter(|f| f.kind == kind));
        let total = pairs.len();
        pairs.truncate(MAX_PAIRS);
        let (file, slot) = match kind {
            FlagKind::Leakage => (LEAKAGE_FILE, &mut out.leakage),
            _ => (DUPLICATES_FILE, &mut out.duplicates),
        };
        *slot = grid(file, pair_cells(&pairs, data_dir), total)?;
    }
    let strays: Vec<&Flagged> = r.strays.ranked.iter().take(MAX_STRAYS).collect();
    out.strays = grid(
        STRAYS_FILE,
        stray_cells(&strays, r.strays.threshold, data_dir),
        r.strays.ranked.len(),
    )?;
    if let Some(png) = learning_curve(&r.learning_curve, &dir.join(LEARNING_CURVE_FILE))? {
        images.insert(LEARNING_CURVE_FILE.to_string(), png);
        out.learning_curve = Some(LEARNING_CURVE_FILE.to_string());
    }
    Ok(out)
}

/// The accuracy `law` predicts with `n` training photos per class: `1 − a·n^(−b)`.
pub fn predicted_accuracy(law: &PowerLaw, n: f64) -> f64 {
    1.0 - law.a * n.powf(-law.b)
}

/// What the legend and the text say about the power law: `doubling the photos: 0.9875 →
/// 0.9901`.
pub fn doubling(law: &PowerLaw) -> String {
    format!(
        "doubling the photos: {:.4} → {:.4}",
        law.accuracy_now, law.accuracy_doubled
    )
}

/// The learning curve as PNG bytes, or `None` when it has no point; `path` names the figure
/// in errors. x: training photos per class (log scale); y: validation accuracy. Each seed's
/// accuracy is a faint dot, the mean over seeds a line with min–max error bars, and the power
/// law (when fitted) a dashed line to [`EXTRAPOLATION`] times the largest size, with a ring at
/// twice the largest size; the legend gives what doubling the photos does.
pub fn learning_curve(curve: &LearningCurve, path: &Path) -> Result<Option<Vec<u8>>> {
    let points: Vec<_> = curve
        .points
        .iter()
        .filter(|p| p.per_class > 0 && p.mean.is_finite())
        .collect();
    let (Some(n_lo), Some(n_hi)) = (
        points.iter().map(|p| p.per_class).min(),
        points.iter().map(|p| p.per_class).max(),
    ) else {
        return Ok(None);
    };
    let (n_lo, n_hi) = (n_lo as f64, n_hi as f64);
    let law = curve
        .power_law
        .as_ref()
        .filter(|l| l.a.is_finite() && l.b.is_finite());
    let x_lo = n_lo / 1.3;
    let x_hi = if law.is_some() {
        EXTRAPOLATION * n_hi
    } else {
        n_hi
    } * 1.3;
    let fit: Vec<(f64, f64)> = law
        .map(|l| {
            const STEPS: u32 = 96;
            (0..=STEPS)
                .map(|i| {
                    let t = f64::from(i) / f64::from(STEPS);
                    let n = n_lo * (EXTRAPOLATION * n_hi / n_lo).powf(t);
                    (n, predicted_accuracy(l, n))
                })
                .collect()
        })
        .unwrap_or_default();
    let ys = points
        .iter()
        .flat_map(|p| p.accuracies.iter().copied().chain([p.mean]))
        .chain(fit.iter().map(|&(_, y)| y))
        .filter(|y| y.is_finite());
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    let y_lo = ((lo - 0.02) * 50.0).floor().max(0.0) / 50.0;
    let y_hi = (((hi + 0.01) * 50.0).ceil() / 50.0)
        .min(1.0)
        .max(y_lo + 0.02);

    let family = engine::font_family().map_err(|e| ReportError::figure(path, e))?;
    let (width, height) = LEARNING_CURVE_SIZE;
    let mut canvas = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    {
        let fail = |e: DrawingAreaErrorKind<_>| ReportError::figure(path, e);
        let root = BitMapBackend::with_buffer(&mut canvas, (width, height)).into_drawing_area();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Learning curve: a linear probe on the cached features",
                (family, 20),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)
            .map_err(fail)?;
        chart
            .configure_mesh()
            .x_desc("training photos per class (log scale)")
            .y_desc("validation accuracy")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .label_style((family, 14))
            .axis_desc_style((family, 16))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(fail)?;
        let seed_color = MEAN_COLOR.mix(0.3);
        chart
            .draw_series(points.iter().flat_map(|p| {
                p.accuracies
                    .iter()
                    .filter(|a| a.is_finite())
                    .map(move |&a| Circle::new((p.per_class as f64, a), 3, seed_color.filled()))
            }))
            .map_err(fail)?
            .label(format!(
                "each seed's subset ({} per size)",
                curve.seeds.max(1)
            ))
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, seed_color.filled()));
        let bar = MEAN_COLOR.stroke_width(2);
        let range = |p: &stage::audit::CurvePoint| {
            let finite = p.accuracies.iter().copied().filter(|a| a.is_finite());
            let lo = finite.clone().fold(p.mean, f64::min);
            let hi = finite.fold(p.mean, f64::max);
            (lo, hi)
        };
        chart
            .draw_series(points.iter().map(|p| {
                let (lo, hi) = range(p);
                let x = p.per_class as f64;
                PathElement::new(vec![(x, lo), (x, hi)], bar)
            }))
            .map_err(fail)?;
        chart
            .draw_series(points.iter().flat_map(|p| {
                let (lo, hi) = range(p);
                let x = p.per_class as f64;
                [lo, hi].map(|y| {
                    EmptyElement::at((x, y)) + PathElement::new(vec![(-5, 0), (5, 0)], bar)
                })
            }))
            .map_err(fail)?;
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (p.per_class as f64, p.mean)),
                bar,
            ))
            .map_err(fail)?
            .label("mean over seeds, bars from the lowest to the highest")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], bar));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.per_class as f64, p.mean), 4, MEAN_COLOR.filled())),
            )
            .map_err(fail)?;
        if let Some(l) = law {
            let dashed = FIT_COLOR.stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(fit, 8, 5, dashed))
                .map_err(fail)?
                .label(format!(
                    "power law 1 − {:.3}·n^−{:.3}; {}",
                    l.a,
                    l.b,
                    doubling(l)
                ))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], dashed));
            chart
                .draw_series([Circle::new(
                    (2.0 * n_hi, l.accuracy_doubled),
                    5,
                    FIT_COLOR.stroke_width(2),
                )])
                .map_err(fail)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((family, 14))
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(fail)?;
        root.present().map_err(fail)?;
    }
    encode_png(&canvas, path).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stage::audit::{CurvePoint, PhotoRef};

    fn flagged(kind: FlagKind, score: f64) -> Flagged {
        Flagged {
            photo: PhotoRef {
                path: "data/train/cats/cat.1.jpg".into(),
                split: "train".into(),
                file: "cats/cat.1.jpg".into(),
                given: "cats".into(),
            },
            kind,
            score,
            suggested: None,
            twin: None,
            exact: None,
            similarity: None,
            hash_distance: None,
        }
    }

    #[test]
    fn pairs_say_how_alike_they_are() {
        let mut f = flagged(FlagKind::Duplicate, 0.95);
        assert_eq!(likeness(&f), "score 0.950");
        f.similarity = Some(0.951);
        f.hash_distance = Some(3);
        f.exact = Some(false);
        assert_eq!(likeness(&f), "similarity 0.951, hash 3");
        f.exact = Some(true);
        assert_eq!(likeness(&f), "identical files");
    }

    #[test]
    fn strays_above_the_fence_are_marked() {
        let list = [flagged(FlagKind::Stray, 0.8), flagged(FlagKind::Stray, 0.5)];
        let refs: Vec<&Flagged> = list.iter().collect();
        let cells = stray_cells(&refs, 0.6, Path::new("data"));
        assert!(cells[0].marked && !cells[1].marked);
        assert_eq!(cells[0].lines[0].0, "score 0.800");
        assert_eq!(cells[1].lines[1].0, "train: cats");
        assert_eq!(cells[1].lines[2].0, "cat.1.jpg");
    }

    #[test]
    fn a_learning_curve_with_and_without_its_power_law() {
        let point = |n: usize, accuracies: Vec<f64>| CurvePoint {
            per_class: n,
            mean: accuracies.iter().sum::<f64>() / accuracies.len() as f64,
            std: 0.0,
            accuracies,
        };
        let mut curve = LearningCurve {
            head: "linear probe".into(),
            l2: 0.01,
            seeds: 2,
            validation_photos: 100,
            points: vec![
                point(5, vec![0.7, 0.8]),
                point(20, vec![0.85, 0.87]),
                point(80, vec![0.93, 0.93]),
            ],
            power_law: Some(PowerLaw {
                a: 0.5,
                b: 0.4,
                accuracy_now: 0.9,
                accuracy_doubled: 0.92,
            }),
        };
        let png = learning_curve(&curve, Path::new("l.png")).unwrap().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), LEARNING_CURVE_SIZE);
        let count = |c: RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
        assert!(count(FIT_COLOR) > 100, "the dashed power law");
        assert!(count(MEAN_COLOR) > 100, "the mean and its bars");
        curve.power_law = None;
        let png = learning_curve(&curve, Path::new("l.png")).unwrap().unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(
            img.pixels()
                .filter(|p| p.0 == [FIT_COLOR.0, FIT_COLOR.1, FIT_COLOR.2])
                .count(),
            0
        );
        curve.points.clear();
        assert!(
            learning_curve(&curve, Path::new("l.png"))
                .unwrap()
                .is_none()
        );
    }
}
