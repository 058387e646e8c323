//! `classify`: evaluate a model artifact on a labelled folder, or classify images with it.

use anyhow::{Result, bail};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use classify::{Cached, EvalOptions, EvalReport, LoadedModel, PredictOptions};
use stage::DeviceArg;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Uses any model artifact the project writes (`small_cnn`, `top`, `finetune`): the
/// architecture, classes, image size, preprocessing and resize filter all come from the
/// artifact's metadata.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accuracy, loss, confusion matrix and per-class precision / recall / F1 on a labelled
    /// folder (one subfolder per class, the model's classes).
    Evaluate {
        #[command(flatten)]
        model: ModelArgs,
        /// The labelled folder.
        #[arg(long, default_value = "data/validation")]
        data: PathBuf,
        /// With --json: evaluate even when the file already holds the report of this model
        /// file, these images and these options.
        #[arg(long, requires = "json")]
        force: bool,
    },
    /// The predicted class and its probability for each image. Images that cannot be read
    /// are reported and skipped; the exit status is then 1.
    Predict {
        #[command(flatten)]
        model: ModelArgs,
        /// Image files (JPEG or PNG).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// The model artifact: a stage's output folder or its `model.safetensors`.
    #[arg(long, default_value = "artifacts/small_cnn")]
    model: PathBuf,
    /// The backbone's weights, for models built on one (unset: its environment variable such
    /// as LITTLEDATA_VGG16_WEIGHTS, then the hf-hub cache); must be the file the model was
    /// trained with.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Average each image's probabilities with its left-right mirror's (test-time
    /// augmentation).
    #[arg(long)]
    tta: bool,
    /// Also write the results to this JSON file. `evaluate` records what it evaluated in it,
    /// and a rerun with the same model file, images and options reads it back instead.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Images per forward batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
}

impl ModelArgs {
    /// Opens the model artifact at `path` on `device`, describing it on stderr.
    fn load(&self, path: &Path, device: &Device) -> classify::Result<LoadedModel> {
        let model = classify::load_model(path, self.weights.as_deref(), device)?;
        eprintln!("model: {}", model.describe());
        if let (Some(w), Some(name)) = (&model.backbone, model.spec.backbone_name()) {
            eprintln!("{name} weights: {} (from {})", w.path.display(), w.source);
        }
        if !model.interpolation_recorded {
            eprintln!(
                "note: the artifact does not record its resize filter; using {:?}",
                model.interpolation
            );
        }
        Ok(model)
    }
}

/// Prints an evaluation report.
fn print_report(data: &Path, report: &EvalReport) {
    println!("data: {} ({} images)", data.display(), report.samples);
    print!("{}", report.to_text());
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let progress = std::io::stderr().is_terminal();
    match &cli.command {
        Command::Evaluate { model, data, force } => {
            let device = model.device.open()?;
            let options = EvalOptions {
                batch_size: model.batch_size as usize,
                tta: model.tta,
                progress,
            };
            let Some(json) = &model.json else {
                let loaded = model.load(&model.model, &device)?;
                print_report(data, &classify::evaluate(&loaded, data, &options)?);
                return Ok(());
            };
            let outcome =
                classify::evaluate_cached(&model.model, data, json, &options, *force, |file| {
                    model.load(file, &device)
                })?;
            print_report(data, outcome.report());
            match &outcome {
                Cached::UpToDate(_) => println!("{}: up to date", json.display()),
                Cached::Evaluated { reason, .. } => eprintln!(
                    "wrote {}{}",
                    json.display(),
                    reason
                        .as_ref()
                        .map(|r| format!(" (replacing the stored report: {r})"))
                        .unwrap_or_default()
                ),
            }
        }
        Command::Predict { model, images } => {
            let loaded = model.load(&model.model, &model.device.open()?)?;
            let options = PredictOptions {
                batch_size: model.batch_size as usize,
                tta: model.tta,
            };
            let report = classify::predict(&loaded, images, &options, &mut |p| {
                if p.is_ok() {
                    println!("{}", p.line());
                } else {
                    eprintln!("{}", p.line());
                }
            })?;
            if let Some(path) = &model.json {
                classify::write_output(path, &report.to_json())?;
                eprintln!("wrote {}", path.display());
            }
            let failed = report.failures();
            if failed > 0 {
                bail!(
                    "{failed} of {} images could not be classified",
                    report.predictions.len()
                );
            }
        }
    }
    Ok(())
}
