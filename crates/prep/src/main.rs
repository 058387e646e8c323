//! `prep`: data preparation commands. `prep split` lays out `data/train`, `data/validation`
//! (and optionally `data/test`) from a folder of labelled images.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use prep::fetch::{ResolvedSource, SOURCE_ENV, Verification, resolve_source};
use prep::split::{DEFAULT_OUT, DEFAULT_TEST, DEFAULT_TRAIN, DEFAULT_VALIDATION};
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

#[derive(Args)]
struct SplitArgs {
    /// Source folder: flat `<label>.<index>.<ext>` files (`cat.12.jpg`) or one subfolder per
    /// class. Default: $LITTLEDATA_SOURCE, else the public cats_and_dogs_filtered archive
    /// (downloaded once into the cache folder).
    #[arg(long, value_name = "DIR")]
    source: Option<PathBuf>,
    /// Output folder; gets train/, validation/, test/ and split.json.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    out: PathBuf,
    /// Training images per class.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TRAIN)]
    train: usize,
    /// Validation images per class.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_VALIDATION)]
    validation: usize,
    /// Test images per class (no test/ folder when 0).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_TEST)]
    test: usize,
    /// Take each class's images in a seeded random order instead of numeric order.
    #[arg(long)]
    shuffle: bool,
    /// Seed of the shuffle.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "shuffle")]
    seed: u64,
    /// Fail on any file that cannot be used instead of leaving it out.
    #[arg(long)]
    strict: bool,
    /// Replace an existing, different split.
    #[arg(long)]
    force: bool,
}

fn split(args: SplitArgs) -> anyhow::Result<()> {
    let resolved =
        resolve_source(args.source.as_deref(), true).context("cannot find the source images")?;
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
        out: args.out,
        train: args.train,
        validation: args.validation,
        test: args.test,
        order: if args.shuffle {
            Order::Shuffled { seed: args.seed }
        } else {
            Order::Numeric
        },
        strict: args.strict,
        force: args.force,
        show_progress: true,
    };
    let report = run_split(&opts)?;
    print!("{report}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Split(args) => split(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
