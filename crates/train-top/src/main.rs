//! `train-top`: train the post's small fully connected model on the cached backbone
//! features, or estimate its accuracy by k-fold cross-validation.

use anyhow::Result;
use clap::Parser;
use stage::TrainArgs;
use train_top::KFoldOptions;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trains Flatten → Dense 256 → ReLU → Dropout 0.5 → Dense (sigmoid for two classes, softmax
/// for more; `[top]` sets the hidden layer and dropout) on `<data.artifacts>/bottleneck/`, and writes
/// `<data.artifacts>/top/` (model.safetensors with the best epoch's weights, metrics.json,
/// history.csv/json, curves.png, checkpoints/). Run `just extract-bottlenecks` first.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
    /// Train on the cached augmented views (`train_augmented.safetensors`, one view per image
    /// per epoch) instead of the plain training features.
    #[arg(long)]
    use_augmented: bool,
    /// Stratified k-fold cross-validation on the training and validation features pooled,
    /// with K folds (default: `top.kfold`); writes `top/kfold.json` instead of a model.
    #[arg(long, value_name = "K", num_args = 0..=1)]
    kfold: Option<Option<usize>>,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.train.load()?;
    let stage = cli.train.options()?;

    if let Some(k) = cli.kfold {
        if cli.use_augmented {
            anyhow::bail!(
                "--kfold pools the training and validation features, and augmented views exist \
                 for training images only: drop --use-augmented"
            );
        }
        let options = KFoldOptions {
            k: k.unwrap_or(pipeline.top.kfold),
            force: stage.force,
            device: stage.device,
            interrupt: stage.interrupt,
        };
        println!(
            "{}-fold cross-validation, {} epochs per fold",
            options.k, pipeline.top.epochs
        );
        let (report, up_to_date) = train_top::run_kfold(&pipeline, &options, &mut |f| {
            println!(
                "fold {}/{}: acc {:.4} (loss {:.4}) on {} held-out images, trained on {} in \
                 {:.1} s; best epoch {} at {:.4}",
                f.fold,
                options.k,
                f.acc,
                f.loss,
                f.validation_samples,
                f.train_samples,
                f.seconds,
                f.best_epoch,
                f.best_acc
            );
        })?;
        if up_to_date {
            for f in &report.folds {
                println!("fold {}/{}: acc {:.4}", f.fold, report.k, f.acc);
            }
        }
        println!(
            "{}-fold accuracy: {:.4} ± {:.4} (mean ± sample std, last-epoch weights, {} images)",
            report.k, report.mean_acc, report.std_acc, report.samples
        );
        let path = pipeline.layout().kfold();
        if up_to_date {
            println!("up to date ({})", path.display());
        } else {
            println!("wrote {}", path.display());
        }
        return Ok(());
    }

    let options = train_top::TopOptions {
        stage,
        use_augmented: cli.use_augmented,
    };
    let report = train_top::train_top(&pipeline, &options)?;
    report.print();
    Ok(())
}
