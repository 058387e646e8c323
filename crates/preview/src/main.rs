//! `preview`: see what the augmentation does before training with it.

use anyhow::{Context, Result, bail};
use clap::Parser;
use imagedata::{Limits, SaveFormat, load_rgb};
use pipeline::ConfigArgs;
use std::path::{Path, PathBuf};

/// Writes augmented variants of one image (named as Keras' `save_to_dir` does) and
/// `sheet.png`, the original beside every variant. The augmentation is the pipeline file's
/// `[preview.augment]`; the flags below override single settings.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// The image (default: the first image of the first class of `<data.dir>/train`).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Number of variants (default: `preview.count`).
    #[arg(long)]
    count: Option<usize>,
    /// Output folder (default: `preview.out`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// File name prefix (default: the image's label, e.g. `cat` for `cat.0.jpg`).
    #[arg(long)]
    prefix: Option<String>,
    /// Format of the variants.
    #[arg(long, value_enum, default_value = "jpeg")]
    format: Format,
    /// Rotation range, degrees.
    #[arg(long)]
    rotation_range: Option<f32>,
    /// Width shift range (fraction, or pixels when ≥ 1).
    #[arg(long)]
    width_shift_range: Option<f32>,
    /// Height shift range (fraction, or pixels when ≥ 1).
    #[arg(long)]
    height_shift_range: Option<f32>,
    /// Shear range, degrees.
    #[arg(long)]
    shear_range: Option<f32>,
    /// Zoom range: `0.2` (meaning [0.8, 1.2]) or `0.8,1.3`.
    #[arg(long)]
    zoom_range: Option<String>,
    /// Random left-right flips.
    #[arg(long)]
    horizontal_flip: Option<bool>,
    /// Random top-bottom flips.
    #[arg(long)]
    vertical_flip: Option<bool>,
    /// Fill mode: nearest, constant, reflect or wrap.
    #[arg(long)]
    fill_mode: Option<String>,
    /// Fill value for `constant`, 0–255.
    #[arg(long)]
    cval: Option<f32>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Jpeg,
    Png,
}

impl Cli {
    /// The augmentation flags, as `--set preview.augment.*` overrides.
    fn overrides(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                out.push(format!("preview.augment.{key}={v}"));
            }
        };
        push("rotation_range", self.rotation_range.map(|v| v.to_string()));
        push(
            "width_shift_range",
            self.width_shift_range.map(|v| v.to_string()),
        );
        push(
            "height_shift_range",
            self.height_shift_range.map(|v| v.to_string()),
        );
        push("shear_range", self.shear_range.map(|v| v.to_string()));
        push(
            "zoom_range",
            self.zoom_range.as_ref().map(|z| {
                if z.contains(',') {
                    format!("[{z}]")
                } else {
                    z.clone()
                }
            }),
        );
        push(
            "horizontal_flip",
            self.horizontal_flip.map(|v| v.to_string()),
        );
        push("vertical_flip", self.vertical_flip.map(|v| v.to_string()));
        push(
            "fill_mode",
            self.fill_mode.as_ref().map(|v| format!("\"{v}\"")),
        );
        push("cval", self.cval.map(|v| v.to_string()));
        out
    }
}

fn first_training_image(data_dir: &Path) -> Result<PathBuf> {
    let train = data_dir.join("train");
    let folder = imagedata::ImageFolder::scan(&train).with_context(|| {
        format!(
            "no --image given and no training images found under {} (run `just split` first)",
            train.display()
        )
    })?;
    match folder.files.first() {
        Some(p) => Ok(p.clone()),
        None => bail!("{}: no images", train.display()),
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.config.load_with(&cli.overrides())?;
    let settings = &pipeline.preview;
    let image_path = match &cli.image {
        Some(p) => p.clone(),
        None => first_training_image(&pipeline.data.dir)?,
    };
    let image = load_rgb(&image_path, &Limits::default())?;
    let out = cli.out.clone().unwrap_or_else(|| settings.out.clone());
    let count = cli.count.unwrap_or(settings.count);
    if count == 0 {
        bail!("--count must be at least 1");
    }
    let prefix = cli
        .prefix
        .clone()
        .unwrap_or_else(|| preview::default_prefix(&image_path));
    let format = match cli.format {
        Format::Jpeg => SaveFormat::Jpeg,
        Format::Png => SaveFormat::Png,
    };
    let written = preview::write_preview(
        &image,
        &settings.augment,
        count,
        pipeline.data.seed,
        &out,
        &prefix,
        format,
    )?;
    println!(
        "{}: {count} variants ({}x{}) in {}/, contact sheet {}",
        image_path.display(),
        image.width(),
        image.height(),
        out.display(),
        written.sheet.display()
    );
    Ok(())
}
