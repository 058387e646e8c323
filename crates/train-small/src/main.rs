//! `train-small`: the post's first method, the small convnet trained from scratch on
//! augmented images.

use anyhow::Result;
use clap::Parser;
use stage::TrainArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.train.load()?;
    let report = train_small::train_small(&pipeline, &cli.train.options()?)?;
    report.print();
    Ok(())
}
