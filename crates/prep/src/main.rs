//! `prep`: data preparation commands. `prep split` lays out `data/train`, `data/validation`
//! (and optionally `data/test`) from a folder of labelled images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pipeline::ConfigArgs;
use prep::fetch::{ResolvedSource, SOURCE_ENV, Verification, resolve_source};
use prep::{Order, SplitOptions, run_split};

#[derive(Parser)]
#[command(name = "prep", version, about = "Prepare image data for training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split a folder of labelled images into train/validation/test class folders.
    Split(SplitArgs),
}

/// `prep split`: the defaults come from the pipeline file's `[split]` and `[data]` sections
/// (the post's recipe in `pipelines/blog.toml`); each flag overrides its key.
#[derive(Args)]
struct SplitArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Source folder: flat `<label>.<index>.<ext>` files (`cat.12.jpg`) or one subfolder per
    /// class. Default: `split.source`, then $LITTLEDATA_SOURCE, else the public
    /// cats_and_dogs_filtered archive (downloaded once into the cache folder).
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Output folder; gets train/, validation/, test/ and split.json [default: `data.dir`].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Training images per class [default: `split.train`, 1000].
    #[arg(long, value_name = "N")]
    train: Option<usize>,
    /// Validation images per class [default: `split.validation`, 500].
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Test images per class, no test/ folder when 0 [default: `split.test`, 0].
    #[arg(long, value_name = "N")]
    test: Option<usize>,
    /// Take each class's images in a seeded random order (`--seed`, else `data.seed`) instead
    /// of numeric order [default: `split.shuffle`].
    #[arg(long)]
    shuffle: bool,
    /// Leave out the photos FILE names (repeatable): an audit report
    /// (`artifacts/audit/audit.json`, its `flagged` entries' `path`), a JSON array of paths, or
    /// a text file with one path or file name per line (`#` comments). The next photos in
    /// order take their places [default: `split.exclude`].
    #[arg(long, value_name = "FILE")]
    exclude: Vec<PathBuf>,
    /// Fail on any file that cannot be used instead of leaving it out, and on `--exclude`
    /// entries that match no photo of the source.
    #[arg(long)]
    strict: bool,
    /// Replace an existing, different split.
    #[arg(long)]
    force: bool,
}

fn split(args: SplitArgs) -> anyhow::Result<()> {
    let pipeline = args.config.load()?;
    let settings = &pipeline.split;
    let source = args.source.clone().or_else(|| settings.source.clone());
    let resolved =
        resolve_source(source.as_deref(), true).context("cannot find the source images")?;
    match &resolved {
        ResolvedSource::Given(_) => {}
        ResolvedSource::FromEnv(path) => {
            eprintln!("source from ${SOURCE_ENV}: {}", path.display());
        }
        ResolvedSource::Archive(archive) => {
            if archive.downloaded {
                eprintln!("downloaded {}", archive.archive.display());
            }
            match &archive.verification {
                Verification::Pinned => {
                    eprintln!(
                        "verified {} (sha256 {})",
                        archive.archive.display(),
                        archive.sha256
                    );
                }
                Verification::Recorded { record } => eprintln!(
                    "no published sha256 for {}: recorded {} in {} for later checks",
                    archive.archive.display(),
                    archive.sha256,
                    record.display()
                ),
                Verification::MatchesRecord { .. } => eprintln!(
                    "verified {} against its recorded sha256 {}",
                    archive.archive.display(),
                    archive.sha256
                ),
            }
            if archive.unpacked {
                eprintln!(
                    "unpacked {} files into {}",
                    archive.files,
                    archive.source.display()
                );
            }
        }
    }
    let opts = SplitOptions {
        source: resolved.path().to_path_buf(),
        out: args.out.unwrap_or_else(|| pipeline.data.dir.clone()),
        train: args.train.unwrap_or(settings.train),
        validation: args.validation.unwrap_or(settings.validation),
        test: args.test.unwrap_or(settings.test),
        order: if args.shuffle || settings.shuffle {
            Order::Shuffled {
                seed: pipeline.data.seed,
            }
        } else {
            Order::Numeric
        },
        exclude: if args.exclude.is_empty() {
            settings.exclude.clone()
        } else {
            args.exclude
        },
        strict: args.strict,
        force: args.force,
        show_progress: true,
    };
    let report = run_split(&opts)?;
    for warning in report.warnings() {
        eprintln!("warning: {warning}");
    }
    print!("{report}");
    Ok(())
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    pipeline::run_main(|| match Cli::parse().command {
        Command::Split(args) => split(args),
    })
}
