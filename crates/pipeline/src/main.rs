//! `pipeline`: reads a pipeline file as every stage does (defaults, `--set`, validation) and
//! prints settings, for scripts that drive the stages; lists the pretrained backbones.

use anyhow::Result;
use clap::{Parser, Subcommand};
use models::BackboneKind;
use pipeline::ConfigArgs;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Print the effective settings of a pipeline file, or the backbones"
)]
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
    /// List the pretrained backbones `bottleneck.backbone` can name: default input size,
    /// features, what fine-tuning trains, where the weights are looked for.
    Backbones {
        /// Print only the names of those that can be fine-tuned, one per line.
        #[arg(long)]
        finetune: bool,
    },
}

fn main() -> std::process::ExitCode {
    pipeline::run_main(|| match Cli::parse().command {
        Command::Get { config, keys } => get(&config, &keys),
        Command::Backbones { finetune } => {
            backbones(finetune);
            Ok(())
        }
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

fn backbones(finetune_only: bool) {
    for kind in BackboneKind::ALL {
        let split = kind.finetune_split();
        if finetune_only {
            if split.is_some() {
                println!("{kind}");
            }
            continue;
        }
        let (h, w) = kind.default_target_size();
        let weights = kind.weights_location();
        println!("{kind}");
        println!("  input:      {h}x{w} by default");
        println!("  features:   {}", kind.features_name());
        println!(
            "  fine-tune:  {}",
            split.unwrap_or("not supported (extraction and the top model only)")
        );
        println!(
            "  weights:    ${}, else {} {} from the hf-hub cache or a download",
            weights.env_var, weights.hub_repo, weights.hub_file
        );
    }
}
