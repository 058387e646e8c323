//! `audit`: find mislabelled, duplicated, leaking and stray photos in the cached bottleneck
//! features, and draw the learning curve; writes `<data.artifacts>/audit/audit.json`.

use std::path::PathBuf;

use anyhow::Result;
use audit::plant::{PlantOptions, PlantScore, Planted};
use audit::{AuditOptions, run_audit};
use clap::{Parser, Subcommand};
use pipeline::ConfigArgs;
use stage::audit::{AuditReport, FlagKind};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Audits the photos through their cached features (run `just extract-bottlenecks` first):
/// label issues by confident learning on out-of-fold probabilities, exact and near copies
/// within and across splits, strays, and the learning curve.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Redo the audit even when `audit.json` is up to date.
    #[arg(long)]
    force: bool,
    /// Photos listed per kind.
    #[arg(long, default_value_t = 10)]
    show: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Copy a clean split and plant known faults in it (flipped labels, copies from train into
    /// validation, strays), to measure what the audit finds; writes `planted.json` beside it.
    Plant {
        /// The clean data folder (`train/`, `validation/`).
        #[arg(long)]
        clean: PathBuf,
        /// The new data folder (must not hold a split).
        #[arg(long)]
        out: PathBuf,
        /// The share of training photos whose label is flipped.
        #[arg(long, default_value_t = 0.05)]
        flip_fraction: f64,
        /// Training photos copied into validation.
        #[arg(long, default_value_t = 20)]
        copies: usize,
        /// Stray images added.
        #[arg(long, default_value_t = 10)]
        strays: usize,
        /// The seed of the choices.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Compare the audit of a planted split (`audit.json`) with what was planted
    /// (`planted.json`): recall and precision per fault.
    Score {
        /// The audit's `audit.json`.
        #[arg(long)]
        audit: PathBuf,
        /// The `planted.json` that `audit plant` wrote.
        #[arg(long)]
        planted: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn read<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Plant {
            clean,
            out,
            flip_fraction,
            copies,
            strays,
            seed,
        }) => {
            let options = PlantOptions {
                flip_fraction,
                copies,
                strays,
                seed,
            };
            let planted = audit::plant::plant(&clean, &out, &options)?;
            let path = out.join("planted.json");
            artifact::atomic_write(&path, serde_json::to_string_pretty(&planted)?.as_bytes())?;
            println!(
                "planted {} flipped labels, {} copies into validation and {} strays in {}; \
                 wrote {}",
                planted.flipped.len(),
                planted.copies.len(),
                planted.strays.len(),
                out.display(),
                path.display()
            );
            return Ok(());
        }
        Some(Command::Score { audit, planted }) => {
            let report: AuditReport = read(&audit)?;
            let planted: Planted = read(&planted)?;
            println!("{}", PlantScore::of(&report, &planted).table());
            return Ok(());
        }
        None => {}
    }
    let pipeline = cli.config.load()?;
    let (report, up_to_date) = run_audit(&pipeline, &AuditOptions { force: cli.force })?;
    let path = pipeline.layout().audit_report();
    // The last line says what happened (scripts/chain.sh reads it).
    print!("{}", summary(&report, cli.show));
    if up_to_date {
        println!("audit: up to date ({}); --force to redo it", path.display());
    } else {
        let parts: Vec<String> = report
            .part_seconds
            .iter()
            .map(|(k, v)| format!("{k} {v:.1}"))
            .collect();
        println!(
            "wrote {} in {:.1} s ({})",
            path.display(),
            report.seconds,
            parts.join(", ")
        );
    }
    Ok(())
}

/// The printed summary: counts, the first `show` photos of each kind, the learning curve.
fn summary(r: &AuditReport, show: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} train + {} validation photos, {} features; out-of-fold accuracy {:.4} (linear probe, \
         {} folds, L2 {})",
        r.train_photos,
        r.validation_photos,
        r.backbone,
        r.label_issues.oof_accuracy,
        r.label_issues.folds,
        r.label_issues.l2
    );
    let kinds = [
        (FlagKind::LabelIssue, "label issues"),
        (FlagKind::Leakage, "leaking from train into validation"),
        (FlagKind::Duplicate, "duplicates within a split"),
        (FlagKind::Stray, "strays"),
    ];
    for (kind, title) in kinds {
        let list: Vec<_> = r.flagged_of(kind).collect();
        let _ = writeln!(s, "{title}: {}", list.len());
        for f in list.iter().take(show) {
            let detail = match kind {
                FlagKind::LabelIssue => format!(
                    "given {}, suggested {}",
                    f.photo.given,
                    f.suggested.as_deref().unwrap_or("?")
                ),
                FlagKind::Leakage | FlagKind::Duplicate => format!(
                    "{} {}; similarity {:.3}, hash distance {}",
                    if f.exact == Some(true) {
                        "identical to"
                    } else {
                        "near copy of"
                    },
                    f.twin
                        .as_ref()
                        .map_or_else(String::new, |t| t.path.display().to_string()),
                    f.similarity.unwrap_or(f64::NAN),
                    f.hash_distance.unwrap_or(0)
                ),
                FlagKind::Stray => format!("class {}", f.photo.given),
            };
            let _ = writeln!(
                s,
                "  {:.3}  {}  ({detail})",
                f.score,
                f.photo.path.display()
            );
        }
    }
    let d = &r.duplicates;
    let _ = writeln!(
        s,
        "copies: similarity ≥ {} or hash distance ≤ {} bits; the photos without a copy come \
         at most to similarity {:.3} and hash distance {}",
        d.threshold, d.hash_bits, d.closest_similarity, d.closest_hash_distance
    );
    for l in &r.leak_free {
        let _ = writeln!(
            s,
            "{}: validation accuracy {:.4}, {:.4} without the leaking photos ({} photos)",
            l.model, l.accuracy, l.without_leaks, l.photos
        );
    }
    let c = &r.learning_curve;
    let _ = writeln!(s, "learning curve ({}, {} seeds):", c.head, c.seeds);
    for p in &c.points {
        let _ = writeln!(
            s,
            "  {:>6} per class: {:.4} ± {:.4}",
            p.per_class, p.mean, p.std
        );
    }
    if let Some(law) = &c.power_law {
        let _ = writeln!(
            s,
            "  error ≈ {:.3} · n^-{:.3}: doubling the photos would take the accuracy from {:.4} \
             to {:.4}",
            law.a, law.b, law.accuracy_now, law.accuracy_doubled
        );
    }
    s
}
