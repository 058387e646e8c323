//! `finetune`: the post's third method, the backbone's tail (VGG16: block 5) and the trained
//! top model fine-tuned on augmented images with the rest of the backbone frozen.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use finetune::FinetuneOptions;
use stage::TrainArgs;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Fine-tunes the backbone's tail (VGG16: block 5) and the top model of
/// `<data.artifacts>/top/` (run `just train-top` first) with the `[finetune]` settings, and
/// writes `<data.artifacts>/finetune/` (model.safetensors with the best epoch's weights,
/// metrics.json, history.csv/json, curves.png, checkpoints/). By default the frozen part runs
/// once per cached augmented view (`finetune.views` per image, `views.safetensors`); `--live`
/// augments every batch afresh and runs it through the whole network, as the post does.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
    /// Live augmentation through the whole network every batch (the post's exact semantics;
    /// the same as `--set finetune.view_cache=false`).
    #[arg(long)]
    live: bool,
    /// The backbone's weights file (overrides `bottleneck.weights`; unset: its environment
    /// variable such as LITTLEDATA_VGG16_WEIGHTS, the hf-hub cache, then a download).
    #[arg(long)]
    weights: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.train.load()?;
    let options = FinetuneOptions {
        stage: cli.train.options()?,
        live: cli.live,
        weights: cli.weights,
        part_images: finetune::DEFAULT_PART_IMAGES,
    };
    let report = finetune::finetune(&pipeline, &options)?;
    for c in &report.caches {
        println!("{}", c.line());
    }
    report.report.print();
    Ok(())
}
