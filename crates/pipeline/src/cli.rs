//! The command-line options that choose the settings (`--pipeline`, `--set`, `--seed`), and
//! the `main` wrapper every binary uses.

use crate::{Pipeline, PipelineError};
use std::path::PathBuf;

/// `--pipeline`, `--set`, `--seed`: which settings to use. Flatten into a clap parser with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Pipeline file with every stage's settings.
    #[arg(
        long,
        default_value = "pipelines/blog.toml",
        env = "LITTLEDATA_PIPELINE"
    )]
    pub pipeline: PathBuf,
    /// Override a setting: `--set small_cnn.epochs=5` (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Seed for every random choice (overrides `data.seed`).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl ConfigArgs {
    /// Loads the pipeline file with `--set` and `--seed` applied, validated. `extra` overrides
    /// (from a stage's own flags) apply after `--set`.
    pub fn load_with(&self, extra: &[String]) -> Result<Pipeline, PipelineError> {
        let mut overrides = self.set.clone();
        overrides.extend_from_slice(extra);
        if let Some(seed) = self.seed {
            overrides.push(format!("data.seed={seed}"));
        }
        Pipeline::load(&self.pipeline, &overrides)
    }

    /// Loads the pipeline file with `--set` and `--seed` applied, validated.
    pub fn load(&self) -> Result<Pipeline, PipelineError> {
        self.load_with(&[])
    }
}

/// Runs a stage's `main` body: sets up logging (`RUST_LOG`), and on failure prints `error:`
/// with the cause chain (each cause once) and exits with status 1, instead of a backtrace.
pub fn run_main(body: impl FnOnce() -> anyhow::Result<()>) -> std::process::ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match body() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, leaving out causes whose text the previous message
/// already contains.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
