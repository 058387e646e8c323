//! The command-line options every computing stage shares, on top of
//! [`pipeline::ConfigArgs`]: `--device`, `--force`, and `--resume` for the training stages.

use pipeline::{ConfigArgs, Pipeline, PipelineError};

use crate::device::DeviceArg;
use crate::error::Result;
use crate::template::StageOptions;

/// [`ConfigArgs`] plus `--device` and `--force`, for stages that compute artifacts.
#[derive(Debug, Clone, clap::Args)]
pub struct StageArgs {
    /// Which settings to use.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceArg,
    /// Redo the stage even when its artifacts are up to date.
    #[arg(long)]
    pub force: bool,
}

impl StageArgs {
    /// Loads the pipeline file with `--set` and `--seed` applied, validated.
    pub fn load(&self) -> Result<Pipeline, PipelineError> {
        self.config.load()
    }
}

/// [`StageArgs`] plus `--resume`, for the stages that train a model.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Settings, device and `--force`.
    #[command(flatten)]
    pub stage: StageArgs,
    /// Continue an interrupted run from `checkpoints/last.safetensors` in the stage's output
    /// folder (after Ctrl-C, or with more epochs than the run had).
    #[arg(long)]
    pub resume: bool,
}

impl TrainArgs {
    /// Loads the pipeline file with `--set` and `--seed` applied, validated.
    pub fn load(&self) -> Result<Pipeline, PipelineError> {
        self.stage.load()
    }

    /// The stage options the flags ask for: the `--device` opened, `--force`, `--resume`, and
    /// Ctrl-C as the stop request (the run finishes its batch and saves a checkpoint).
    pub fn options(&self) -> Result<StageOptions> {
        let mut options = StageOptions::new(self.stage.device.open()?);
        options.force = self.stage.force;
        options.resume = self.resume;
        options.interrupt = Some(engine::Interrupt::ctrl_c()?);
        Ok(options)
    }
}
