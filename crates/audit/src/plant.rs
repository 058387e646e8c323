//! Known faults planted in a copy of a clean split, to measure what the audit finds: a share
//! of the training photos moved to another class folder (flipped labels), training photos
//! copied into validation (exactly, re-encoded, or resized: leakage), and synthetic images of
//! no class (blank frames, noise, a screenshot: strays).

use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage, imageops};
use imagedata::{Split, SplitData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use stage::audit::{AuditReport, FlagKind};
use stage::{Result, StageError};

/// What to plant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlantOptions {
    /// The share of training photos whose label is flipped.
    pub flip_fraction: f64,
    /// Training photos copied into validation.
    pub copies: usize,
    /// Synthetic stray images added (alternately to train and validation classes).
    pub strays: usize,
    /// The seed of every choice.
    pub seed: u64,
}

impl Default for PlantOptions {
    /// 5 % flipped, 20 copies, 10 strays, seed 42.
    fn default() -> Self {
        Self {
            flip_fraction: 0.05,
            copies: 20,
            strays: 10,
            seed: 42,
        }
    }
}

/// Where the planted faults are: paths relative to their split folder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Planted {
    /// Training photos now in another class's folder.
    pub flipped: Vec<String>,
    /// Validation photos that copy a training photo.
    pub copies: Vec<String>,
    /// Stray images: `(split, file)`.
    pub strays: Vec<(String, String)>,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> StageError {
    StageError::Settings(format!("{}: {e}", path.display()))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
    }
    std::fs::copy(from, to).map_err(|e| io_error(to, e))?;
    Ok(())
}

fn save_jpeg(img: &RgbImage, quality: u8, to: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(img)
        .map_err(|e| io_error(to, e))?;
    std::fs::write(to, bytes).map_err(|e| io_error(to, e))
}

/// Synthetic stray `index` (`256 × 256`): a grey frame, a black frame, noise, a gradient, a
/// checkerboard, a text-like screenshot, stripes, a flat colour, a target, blocks; then again.
pub fn stray_image(index: usize, rng: &mut ChaCha8Rng) -> RgbImage {
    let (w, h) = (256u32, 256u32);
    match index % 10 {
        0 => RgbImage::from_pixel(w, h, Rgb([128, 128, 128])),
        1 => RgbImage::from_pixel(w, h, Rgb([4, 4, 4])),
        2 => RgbImage::from_fn(w, h, |_, _| Rgb([rng.random(), rng.random(), rng.random()])),
        3 => RgbImage::from_fn(w, h, |x, y| Rgb([x as u8, y as u8, 200])),
        4 => RgbImage::from_fn(w, h, |x, y| {
            if (x / 32 + y / 32).is_multiple_of(2) {
                Rgb([250; 3])
            } else {
                Rgb([10; 3])
            }
        }),
        5 => {
            // A window: a title bar, then lines of "text".
            let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
            for y in 0..h {
                for x in 0..w {
                    let bar = y < 20;
                    let line = y > 30 && (y - 30) % 14 < 6 && x > 10 && x < 10 + (y * 37 % 220);
                    let word_gap = (x / 23) % 5 == 4;
                    if bar {
                        img.put_pixel(x, y, Rgb([40, 90, 200]));
                    } else if line && !word_gap {
                        img.put_pixel(x, y, Rgb([20, 20, 20]));
                    }
                }
            }
            img
        }
        6 => RgbImage::from_fn(w, h, |x, _| {
            if (x / 8).is_multiple_of(2) {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 255, 0])
            }
        }),
        7 => RgbImage::from_pixel(w, h, Rgb([30, 160, 60])),
        8 => RgbImage::from_fn(w, h, |x, y| {
            let d = ((x as f32 - 128.0).powi(2) + (y as f32 - 128.0).powi(2)).sqrt() as u32;
            if (d / 16).is_multiple_of(2) {
                Rgb([255, 255, 0])
            } else {
                Rgb([0, 0, 255])
            }
        }),
        _ => RgbImage::from_fn(w, h, |x, y| {
            let v = ((x / 64) * 4 + y / 64) as u8 * 15;
            Rgb([v, 255 - v, v / 2])
        }),
    }
}

/// Copies the clean `train/` and `validation/` of `clean` into `out` and plants the faults
/// there. `out` must not hold a split yet.
pub fn plant(clean: &Path, out: &Path, options: &PlantOptions) -> Result<Planted> {
    let (train, validation) = SplitData::scan_pair(clean)?;
    if out.join("train").exists() || out.join("validation").exists() {
        return Err(StageError::Settings(format!(
            "{}: already holds a split; plant into an empty folder",
            out.display()
        )));
    }
    for data in [&train, &validation] {
        for (file, rel) in data.files.iter().zip(&data.relative) {
            copy_file(file, &out.join(data.split.dir_name()).join(rel))?;
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let classes = &train.classes;
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);
    let flips = (options.flip_fraction * train.len() as f64).round() as usize;
    if flips + options.copies > train.len() {
        return Err(StageError::Settings(format!(
            "{} flips and {} copies need more than the {} training photos",
            flips,
            options.copies,
            train.len()
        )));
    }
    let mut planted = Planted::default();
    let train_root = out.join(Split::Train.dir_name());
    for &i in &order[..flips] {
        let given = train.labels[i] as usize;
        let other = (given + rng.random_range(1..classes.len())) % classes.len();
        let name = Path::new(&train.relative[i])
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_default();
        let to = PathBuf::from(&classes[other]).join(&name);
        std::fs::rename(train_root.join(&train.relative[i]), train_root.join(&to))
            .map_err(|e| io_error(&train_root.join(&to), e))?;
        planted
            .flipped
            .push(to.to_string_lossy().replace('\\', "/"));
    }
    let validation_root = out.join(Split::Validation.dir_name());
    for (c, &i) in order[flips..flips + options.copies].iter().enumerate() {
        let class = &classes[train.labels[i] as usize];
        let name = Path::new(&train.relative[i])
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let stem = Path::new(&name)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let source = &train.files[i];
        let rel = match c % 4 {
            0 => {
                let rel = format!("{class}/copy{c}-{name}");
                copy_file(source, &validation_root.join(&rel))?;
                rel
            }
            variant => {
                let img = image::open(source)
                    .map_err(|e| io_error(source, e))?
                    .to_rgb8();
                let (w, h) = img.dimensions();
                let (img, quality) = match variant {
                    1 => (img, 70),
                    2 => (
                        imageops::resize(
                            &img,
                            w * 3 / 5,
                            h * 3 / 5,
                            imageops::FilterType::Triangle,
                        ),
                        90,
                    ),
                    _ => (
                        imageops::resize(
                            &img,
                            w * 4 / 5,
                            h * 4 / 5,
                            imageops::FilterType::Triangle,
                        ),
                        80,
                    ),
                };
                let rel = format!("{class}/copy{c}-{stem}.jpg");
                save_jpeg(&img, quality, &validation_root.join(&rel))?;
                rel
            }
        };
        planted.copies.push(rel);
    }
    for s in 0..options.strays {
        let split = if s % 3 == 2 {
            Split::Validation
        } else {
            Split::Train
        };
        let rel = format!("{}/stray{s}.png", classes[s % classes.len()]);
        let path = out.join(split.dir_name()).join(&rel);
        stray_image(s, &mut rng)
            .save(&path)
            .map_err(|e| io_error(&path, e))?;
        planted.strays.push((split.dir_name().to_string(), rel));
    }
    Ok(planted)
}

/// How much of what was planted the audit found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantScore {
    /// Flipped labels planted.
    pub flipped: usize,
    /// Of them, among the `2 × flipped` highest-ranked label issues.
    pub flipped_in_top: usize,
    /// Label issues flagged in all.
    pub label_issues: usize,
    /// Flagged label issues that are planted flips.
    pub label_issues_planted: usize,
    /// Copies planted.
    pub copies: usize,
    /// Of them, found as leakage.
    pub copies_found: usize,
    /// Photos flagged as leakage.
    pub leakage_flagged: usize,
    /// Strays planted.
    pub strays: usize,
    /// Of them, among the 20 highest stray scores.
    pub strays_in_top20: usize,
    /// Strays above the fence (flagged).
    pub strays_flagged: usize,
    /// Flagged strays that are planted.
    pub strays_flagged_planted: usize,
}

impl PlantScore {
    /// Compares an audit of the planted split with what was planted.
    pub fn of(report: &AuditReport, planted: &Planted) -> Self {
        let issues = &report.label_issues.issues;
        let is_flip =
            |split: &str, file: &str| split == "train" && planted.flipped.iter().any(|f| f == file);
        let top = 2 * planted.flipped.len();
        let flipped_in_top = issues
            .iter()
            .take(top)
            .filter(|f| is_flip(&f.photo.split, &f.photo.file))
            .count();
        let label_issues_planted = issues
            .iter()
            .filter(|f| is_flip(&f.photo.split, &f.photo.file))
            .count();
        let leaks: Vec<&str> = report
            .flagged_of(FlagKind::Leakage)
            .map(|f| f.photo.file.as_str())
            .collect();
        let copies_found = planted
            .copies
            .iter()
            .filter(|c| leaks.contains(&c.as_str()))
            .count();
        let is_stray =
            |split: &str, file: &str| planted.strays.iter().any(|(s, f)| s == split && f == file);
        let strays_in_top20 = report
            .strays
            .ranked
            .iter()
            .take(20)
            .filter(|f| is_stray(&f.photo.split, &f.photo.file))
            .count();
        let flagged: Vec<_> = report.flagged_of(FlagKind::Stray).collect();
        Self {
            flipped: planted.flipped.len(),
            flipped_in_top,
            label_issues: issues.len(),
            label_issues_planted,
            copies: planted.copies.len(),
            copies_found,
            leakage_flagged: leaks.len(),
            strays: planted.strays.len(),
            strays_in_top20,
            strays_flagged: flagged.len(),
            strays_flagged_planted: flagged
                .iter()
                .filter(|f| is_stray(&f.photo.split, &f.photo.file))
                .count(),
        }
    }

    /// A table of recall and precision per fault.
    pub fn table(&self) -> String {
        let pct = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.1} %", 100.0 * a as f64 / b as f64)
            }
        };
        format!(
            "fault           planted  found               flagged  precision\n\
             flipped labels  {:>7}  {:>4} in top {:<6}  {:>7}  {}\n\
             leaked copies   {:>7}  {:>4} as leakage   {:>7}  {}\n\
             strays          {:>7}  {:>4} in top 20    {:>7}  {}\n\
             recall: labels {} (top 2×), copies {}, strays {} (top 20)",
            self.flipped,
            self.flipped_in_top,
            2 * self.flipped,
            self.label_issues,
            pct(self.label_issues_planted, self.label_issues),
            self.copies,
            self.copies_found,
            self.leakage_flagged,
            pct(self.copies_found, self.leakage_flagged),
            self.strays,
            self.strays_in_top20,
            self.strays_flagged,
            pct(self.strays_flagged_planted, self.strays_flagged),
            pct(self.flipped_in_top, self.flipped),
            pct(self.copies_found, self.copies),
            pct(self.strays_in_top20, self.strays),
        )
    }
}
