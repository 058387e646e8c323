//! `finetune`: the post's third method, VGG16 block 5 and the trained top model fine-tuned
//! on augmented images with blocks 1–4 frozen.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use engine::stage::{interrupted_message, written_message};
use finetune::{CacheOutcome, FinetuneOptions, FinetuneOutcome, MetricsFile};
use pipeline::TrainArgs;

/// Fine-tunes VGG16 block 5 and the top model of `<data.artifacts>/top/` (run `just
/// train-top` first) with the `[finetune]` settings, and writes `<data.artifacts>/finetune/`
/// (model.safetensors with the best epoch's weights, metrics.json, history.csv/json,
/// curves.png, checkpoints/). By default blocks 1–4 run once per cached augmented view
/// (`finetune.views` per image, `views.safetensors`); `--live` augments every batch afresh
/// and runs it through the whole network, as the post does.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
    /// Live augmentation through the whole network every batch (the post's exact semantics;
    /// the same as `--set finetune.view_cache=false`).
    #[arg(long)]
    live: bool,
    /// VGG16 weights file (overrides `bottleneck.weights`; unset: LITTLEDATA_VGG16_WEIGHTS,
    /// the hf-hub cache, then a download of timm/vgg16.tv_in1k).
    #[arg(long)]
    weights: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn print_metrics(m: &MetricsFile) {
    println!("{}", m.summary.saved_line(m.validation_samples));
    println!(
        "{} mode{} on {}: {:.1} s per epoch ({:.1} training images/s, validation included); \
         caches built in {:.1} s",
        m.mode.name(),
        m.views.map(|k| format!(" ({k} views)")).unwrap_or_default(),
        m.device,
        m.seconds_per_epoch,
        m.train_images_per_second,
        m.cache_seconds
    );
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.train.load()?;
    let stage = cli.train.options()?;
    let mut options = FinetuneOptions::new(stage.device.clone());
    options.stage = stage;
    options.live = cli.live;
    options.weights = cli.weights;
    let report = finetune::finetune(&pipeline, &options)?;

    for c in &report.caches {
        match &c.outcome {
            CacheOutcome::UpToDate => {
                println!("{}: up to date ({})", c.kind.label(), c.path.display())
            }
            CacheOutcome::Built(stats) => println!(
                "{}: {} rows in {:.1} s, {:.1} rows/s{} ({}; {})",
                c.kind.label(),
                stats.rows,
                stats.seconds,
                stats.rows_per_second(),
                if stats.parts_reused > 0 {
                    format!(", {} finished parts reused", stats.parts_reused)
                } else {
                    String::new()
                },
                c.path.display(),
                c.reason.as_deref().unwrap_or("built")
            ),
        }
    }
    match &report.outcome {
        FinetuneOutcome::UpToDate(metrics) => {
            if let Some(m) = metrics {
                println!(
                    "{}: val_acc {:.4}, val_loss {:.4} (epoch {}, {} mode)",
                    report.model.display(),
                    m.summary.saved_val_acc,
                    m.summary.saved_val_loss,
                    m.summary.saved_epoch,
                    m.mode.name()
                );
            }
            println!("up to date");
        }
        FinetuneOutcome::Interrupted { epoch, batch } => {
            println!("{}", interrupted_message(*epoch, *batch))
        }
        FinetuneOutcome::Trained(m) => {
            println!("{}", m.summary.final_line());
            print_metrics(m);
            println!(
                "trained in {:.1} s; {}",
                m.training_seconds,
                written_message(&report.dir)
            );
        }
    }
    Ok(())
}
