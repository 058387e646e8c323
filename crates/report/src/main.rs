//! `report`: rebuilds `<artifacts>/report/` (report.md, report.html and their pictures) from
//! the artifacts the stages wrote, and prints where report.html is.

use anyhow::Result;
use clap::Parser;
use pipeline::ConfigArgs;
use report::{CalibrationState, MethodState, ReportOptions};

/// Compares the post's three methods from the artifacts alone: results beside the post's
/// figures, training curves, k-fold estimate, confusion matrices, the images each model got
/// wrong, each model's calibration (reliability diagrams), what the audit found in the photos
/// (`just audit`), and provenance. Cheap: nothing is trained or evaluated.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Which settings to use (the artifacts folder is `[data] artifacts`).
    #[command(flatten)]
    config: ConfigArgs,
    /// The most misclassified images shown per method (the most confident first).
    #[arg(long, default_value_t = report::DEFAULT_MAX_MISTAKES as u32, value_parser = clap::value_parser!(u32).range(1..))]
    max_mistakes: u32,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let pipeline = cli.config.load()?;
    let options = ReportOptions {
        pipeline_file: cli.config.pipeline.clone(),
        overrides: cli.config.set.clone(),
        max_mistakes: cli.max_mistakes as usize,
        source_dir: std::env::current_dir()?,
    };
    let out = report::build_report(&pipeline, &options)?;
    for state in &out.gathered.methods {
        let method = state.method();
        match state {
            MethodState::Missing { reason, .. } => {
                println!("{}: {reason}", method.label());
            }
            MethodState::Trained(run) => {
                let (acc, source) = match (&run.validation, &run.metrics) {
                    (Some(e), _) => (Some(e.report.accuracy), "evaluation"),
                    (None, Some(m)) => (Some(m.summary.saved_val_acc), "training metrics"),
                    _ => (None, ""),
                };
                match acc {
                    Some(a) => println!(
                        "{}: validation accuracy {a:.4} ({source}; the post: {})",
                        method.label(),
                        method.published()
                    ),
                    None => println!("{}: no figures", method.label()),
                }
                for note in &run.notes {
                    println!("  note: {note}");
                }
                match &run.calibration {
                    CalibrationState::Fitted { calibration: c, .. } => println!(
                        "  calibrated: temperature {:.3}, ECE {:.4} before, {:.4} after \
                         (cross-fitted)",
                        c.temperature, c.ece_before, c.ece_after
                    ),
                    CalibrationState::Stale { path, .. } => println!(
                        "  note: {} was fitted for another model file and is left out; \
                         `classify calibrate --model {}` fits this one",
                        path.display(),
                        run.dir.display()
                    ),
                    CalibrationState::Missing => {}
                }
            }
        }
    }
    match &out.gathered.audit {
        Some(a) => {
            let c = report::audit::section::Counts::of(&a.report);
            println!(
                "audit: label issues {}, leaking photos {}, duplicates {}, strays above the \
                 fence {} ({})",
                c.label_issues,
                c.leakage,
                c.duplicates,
                c.strays,
                a.path.display()
            );
            for note in &a.notes {
                println!("  note: {note}");
            }
        }
        None => println!(
            "audit: not run yet: `{}` finds likely wrong labels, copies, leakage and strays",
            report::audit::AUDIT_COMMAND
        ),
    }
    println!("wrote {}", out.markdown.display());
    println!("{}", out.html.display());
    Ok(())
}
