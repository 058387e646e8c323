//! `train-small`: the post's first method, the small convnet trained from scratch on
//! augmented images.

use anyhow::Result;
use clap::Parser;
use pipeline::StageArgs;
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
    stage: StageArgs,
    /// Continue from `small_cnn/checkpoints/last.safetensors` (after Ctrl-C, or with more
    /// `small_cnn.epochs` than the run had).
    #[arg(long)]
    resume: bool,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn print_saved(m: &Metrics) {
    println!(
        "saved the weights of epoch {} ({}): val_acc {:.4}, val_loss {:.4} on {} validation \
         images; confusion matrix {:?} (rows: true {}, columns: predicted)",
        m.saved_epoch,
        m.best
            .as_ref()
            .map(|b| format!("best {}", b.metric))
            .unwrap_or_else(|| "last epoch".into()),
        m.saved_val_acc,
        m.saved_val_loss,
        m.validation_samples,
        m.confusion_matrix,
        m.classes.join(", ")
    );
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.stage.load()?;
    let mut options = TrainOptions::new(cli.stage.device.open()?);
    options.force = cli.stage.force;
    options.resume = cli.resume;
    options.interrupt = Some(engine::Interrupt::ctrl_c()?);
    let report = train_small::train_small(&pipeline, &options)?;
    match &report.outcome {
        TrainOutcome::UpToDate(metrics) => {
            if let Some(m) = metrics {
                print_saved(m);
            }
            println!("{}: up to date", report.model.display());
        }
        TrainOutcome::Interrupted { epoch, batch } => {
            println!("interrupted in epoch {epoch} after batch {batch}; continue with --resume")
        }
        TrainOutcome::Trained(m) => {
            println!(
                "final epoch {}: {}",
                m.final_epoch.epoch,
                m.final_epoch.metrics_line()
            );
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
                "images loaded in {:.1} s; total {:.1} s; wrote {} and {}",
                report.data_seconds,
                m.seconds,
                report.model.display(),
                report.dir.join("metrics.json").display()
            );
        }
    }
    Ok(())
}
