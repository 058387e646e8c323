//! `extract`: run the pretrained backbone over the training and validation images once and
//! cache its features (bottleneck features) for `train-top`.

use anyhow::Result;
use clap::{Parser, ValueEnum};
use extract::{ExtractOptions, Outcome};
use features::{MergeOptions, Shard};
use stage::StageArgs;
use std::path::PathBuf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes `<data.artifacts>/bottleneck/{train,validation}.safetensors` (and
/// `train_augmented.safetensors` with `bottleneck.augmented_views > 0`): the backbone's
/// features of every image (`bottleneck.backbone`; VGG16's block-5 output by default), with
/// labels, file lists and provenance. Files already up to date with the images, settings and
/// weights are left alone.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// `merge`: join complete sets of shard files into the single files a whole run writes
    /// (leave out to extract).
    #[arg(value_enum)]
    action: Option<Action>,
    #[command(flatten)]
    stage: StageArgs,
    /// The backbone's weights file (overrides `bottleneck.weights`; unset: its environment
    /// variable such as LITTLEDATA_VGG16_WEIGHTS, the hf-hub cache, then a download).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Compute one contiguous slice only, `i/n` with i from 1 to n, into
    /// `<file>.shard-i-of-n.safetensors`; join a complete set with `extract merge`. `auto`
    /// takes i and n from a Slurm array task, `auto/N` (or LITTLEDATA_SHARD_COUNT=N) from a
    /// Kubernetes Indexed Job's JOB_COMPLETION_INDEX (docs/cluster.md).
    #[arg(long, value_name = "I/N|auto[/N]")]
    shard: Option<Shard>,
    /// With `merge`: keep the shard files after merging (they are removed otherwise).
    #[arg(long)]
    keep_shards: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Action {
    /// Join complete sets of shard files.
    Merge,
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

/// A stop flag set by Ctrl-C: extraction stops after the current batch and leaves no partial
/// file; a second Ctrl-C exits at once.
fn ctrl_c() -> Result<engine::Interrupt> {
    let stop = engine::Interrupt::new();
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.is_triggered() {
            eprintln!("\nInterrupted again: exiting now.");
            std::process::exit(130);
        }
        eprintln!(
            "\nInterrupt received: stopping after the current batch (Ctrl-C again quits at once)."
        );
        flag.trigger();
    })?;
    Ok(stop)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    if cli.action == Some(Action::Merge) {
        if cli.shard.is_some() || cli.weights.is_some() {
            anyhow::bail!("merge takes no --shard or --weights: it joins the shards as they are");
        }
        let pipeline = cli.stage.load()?;
        let report = features::merge(
            &pipeline,
            &MergeOptions {
                force: cli.stage.force,
                keep_shards: cli.keep_shards,
            },
        )?;
        for f in &report.files {
            let what = match f.outcome {
                features::MergeOutcome::Merged => {
                    format!("merged {} shards, {} rows", f.shards, f.rows)
                }
                features::MergeOutcome::UpToDate => {
                    format!("up to date with its {} shards", f.shards)
                }
                features::MergeOutcome::NoShards => "no shards; left as it is".to_string(),
            };
            println!("{}: {what} ({})", f.file, f.path.display());
        }
        return Ok(());
    }

    if cli.keep_shards {
        anyhow::bail!("--keep-shards only applies to `extract merge`");
    }
    let pipeline = cli.stage.load()?;
    let device = cli.stage.device.open()?;
    let mut options = ExtractOptions::new(device.clone());
    options.weights = cli.weights.clone();
    options.shard = cli.shard;
    options.force = cli.stage.force;
    options.interrupt = Some(ctrl_c()?);
    let report = extract::extract(&pipeline, &options)?;

    for f in &report.files {
        match &f.outcome {
            Outcome::UpToDate => println!("{}: up to date ({})", f.file, f.path.display()),
            Outcome::Written(stats) => println!(
                "{}: {} rows in {:.1} s, {:.1} images/s ({}; {})",
                f.file,
                stats.rows,
                stats.seconds,
                stats.rows_per_second(),
                f.path.display(),
                f.reason.as_deref().unwrap_or("recomputed")
            ),
        }
    }
    if report.up_to_date() {
        println!("up to date");
        return Ok(());
    }
    let (rows, seconds) = report.computed();
    println!(
        "extracted {rows} images in {seconds:.1} s: {:.2} images/s on {} (weights {}, from {}); \
         data scan and digest {:.2} s{}",
        if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        },
        stage::describe_device(&device),
        report.weights.path.display(),
        report.weights.source,
        report.data_seconds,
        report
            .peak_memory
            .map(|b| format!("; peak memory {:.0} MiB", mib(b)))
            .unwrap_or_default()
    );
    Ok(())
}
