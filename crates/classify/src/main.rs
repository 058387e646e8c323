//! `classify`: evaluate a model artifact on a labelled folder, or classify images with it.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use classify::{EvalOptions, LoadedModel, PredictOptions};
use pipeline::DeviceArg;
use std::io::IsTerminal;
use std::path::PathBuf;

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
    /// VGG16 weights for VGG16-based models (unset: LITTLEDATA_VGG16_WEIGHTS, then the hf-hub
    /// cache); must be the file the model was trained with.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Average each image's probabilities with its left-right mirror's (test-time
    /// augmentation).
    #[arg(long)]
    tta: bool,
    /// Also write the results to this JSON file.
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
    fn load(&self) -> Result<LoadedModel> {
        let device = self.device.open()?;
        let model = classify::load_model(&self.model, self.weights.as_deref(), &device)?;
        eprintln!("model: {}", model.describe());
        if let Some(w) = &model.vgg16 {
            eprintln!("VGG16 weights: {} (from {})", w.path.display(), w.source);
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

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let progress = std::io::stderr().is_terminal();
    match &cli.command {
        Command::Evaluate { model, data } => {
            let loaded = model.load()?;
            let options = EvalOptions {
                batch_size: model.batch_size as usize,
                tta: model.tta,
                progress,
            };
            let report = classify::evaluate(&loaded, data, &options)?;
            println!("data: {} ({} images)", data.display(), report.samples);
            print!("{}", report.to_text());
            if let Some(path) = &model.json {
                classify::write_output(path, &report.to_json())?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Predict { model, images } => {
            let loaded = model.load()?;
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
