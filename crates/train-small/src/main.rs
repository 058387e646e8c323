//! `train-small`: the post's first method, the small convnet trained from scratch on
//! augmented images.

use anyhow::Result;
use clap::Parser;
use engine::stage::{interrupted_message, written_message};
use pipeline::TrainArgs;
use train_small::{Metrics, TrainOptions, TrainOutcome};

/// Trains Conv 32 → Conv 32 → Conv 64 (3×3, ReLU, max-pool 2 each) → Dense 64 → Dropout 0.5 →
/// Dense (one sigmoid unit for two classes, softmax for more) on `<data.dir>/train` with the
/// `[small_cnn]` settings, validating on `<data.dir>/validation` every epoch, and writes
/// `<data.artifacts>/small_cnn/` (model.safetensors with the best epoch's weights,
/// metrics.json, history.csv/json, curves.png, checkpoints/). A model up to date with the
/// images and settings is left alone.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn print_saved(m: &Metrics) {
    println!(
        "{} (rows: true {}, columns: predicted)",
        m.summary.saved_line(m.validation_samples),
        m.classes.join(", ")
    );
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.train.load()?;
    let options = TrainOptions {
        stage: cli.train.options()?,
        progress: true,
    };
    let report = train_small::train_small(&pipeline, &options)?;
    match &report.outcome {
        TrainOutcome::UpToDate(metrics) => {
            if let Some(m) = metrics {
                print_saved(m);
            }
            println!("{}: up to date", report.model.display());
        }
        TrainOutcome::Interrupted { epoch, batch } => {
            println!("{}", interrupted_message(*epoch, *batch))
        }
        TrainOutcome::Trained(m) => {
            println!("{}", m.summary.final_line());
            print_saved(m);
            if let Some(t) = &m.timing {
                println!(
                    "{} epochs: {:.1} s per epoch ({:.1} s training, {:.1} s validation), \
                     {:.1} training images/s, {:.1} validation images/s, on {}",
                    t.epochs,
                    t.seconds_per_epoch,
                    t.train_seconds_per_epoch,
                    t.validation_seconds_per_epoch,
                    t.train_images_per_second,
                    t.validation_images_per_second,
                    m.device
                );
            }
            println!(
                "images loaded in {:.1} s; total {:.1} s; {}",
                report.data_seconds,
                m.seconds,
                written_message(&report.dir)
            );
        }
    }
    Ok(())
}
