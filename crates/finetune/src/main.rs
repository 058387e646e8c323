//! `finetune`: the post's third method, VGG16 block 5 and the trained top model fine-tuned
//! on augmented images with blocks 1–4 frozen.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use finetune::{CacheOutcome, FinetuneOptions, FinetuneOutcome, MetricsFile};
use pipeline::StageArgs;

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
    stage: StageArgs,
    /// Live augmentation through the whole network every batch (the post's exact semantics;
    /// the same as `--set finetune.view_cache=false`).
    #[arg(long)]
    live: bool,
    /// Continue an interrupted run from `finetune/checkpoints/last.safetensors`.
    #[arg(long)]
    resume: bool,
    /// VGG16 weights file (overrides `bottleneck.weights`; unset: LITTLEDATA_VGG16_WEIGHTS,
    /// the hf-hub cache, then a download of timm/vgg16.tv_in1k).
    #[arg(long)]
    weights: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn print_metrics(m: &MetricsFile) {
    println!(
        "saved the weights of epoch {} ({}): val_acc {:.4}, val_loss {:.4} on {} validation \
         images; confusion matrix {:?}",
        m.saved_epoch,
        m.best
            .as_ref()
            .map(|b| format!("best {}", b.metric))
            .unwrap_or_else(|| "last".into()),
        m.saved_val_acc,
        m.saved_val_loss,
        m.validation_samples,
        m.confusion_matrix
    );
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
    let pipeline = cli.stage.load()?;
    let device = cli.stage.device.open()?;
    let mut options = FinetuneOptions::new(device);
    options.live = cli.live;
    options.resume = cli.resume;
    options.force = cli.stage.force;
    options.weights = cli.weights;
    options.interrupt = Some(engine::Interrupt::ctrl_c()?);
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
                    m.saved_val_acc,
                    m.saved_val_loss,
                    m.saved_epoch,
                    m.mode.name()
                );
            }
            println!("up to date");
        }
        FinetuneOutcome::Interrupted { epoch, batch } => {
            println!("interrupted in epoch {epoch} after batch {batch}; continue with --resume")
        }
        FinetuneOutcome::Trained(m) => {
            println!(
                "final epoch {}: {}",
                m.final_epoch.epoch,
                m.final_epoch.metrics_line()
            );
            print_metrics(m);
            println!(
                "trained in {:.1} s; wrote {} and {}",
                m.training_seconds,
                report.model.display(),
                report.dir.join("metrics.json").display()
            );
        }
    }
    Ok(())
}
