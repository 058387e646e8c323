//! `pipeline`: reads a pipeline file as every stage does (defaults, `--set`, validation) and
//! prints settings, for scripts that drive the stages.

use anyhow::Result;
use clap::{Parser, Subcommand};
use pipeline::ConfigArgs;

#[derive(Debug, Parser)]
#[command(version, about = "Print the effective settings of a pipeline file")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the effective value of each KEY on a line of its own (`data.dir`, `top.epochs`, or
    /// a section such as `small_cnn`): a string as it is, an unset setting as an empty line,
    /// anything else as JSON.
    Get {
        #[command(flatten)]
        config: ConfigArgs,
        /// Settings, as `section.key`.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(|| match Cli::parse().command {
        Command::Get { config, keys } => get(&config, &keys),
    })
}

fn get(config: &ConfigArgs, keys: &[String]) -> Result<()> {
    let pipeline = config.load()?;
    for key in keys {
        match pipeline.get(key)? {
            serde_json::Value::String(s) => println!("{s}"),
            serde_json::Value::Null => println!(),
            other => println!("{other}"),
        }
    }
    Ok(())
}
