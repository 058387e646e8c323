//! What the stages share above the libraries: the template the three training stages fill in
//! ([`Trainer`], [`run`]), their options and the command-line flags every computing stage takes
//! ([`StageArgs`], [`TrainArgs`], [`DeviceArg`]), the class-mode rule ([`class_mode`]), the trained top model fine-tuning starts from ([`TrainedTop`]),
//! and the schemas of the files one stage writes and others read ([`Metrics`],
//! [`EvalReport`], [`KFoldReport`], [`Calibration`]).
//!
//! No stage crate depends on another: what two of them share lives here or in a library
//! below (`features` for bottleneck features, `pipeline` for settings and the artifacts
//! layout).

#![warn(missing_docs)]

pub mod audit;
pub mod calibration;
mod classes;
mod cli;
mod device;
mod error;
mod metrics;
mod reports;
mod template;
mod top;

pub use calibration::{Calibration, calibration_file};
pub use classes::class_mode;
pub use cli::{StageArgs, TrainArgs};
pub use device::{DeviceArg, describe as describe_device};
pub use error::{Result, StageError};
pub use metrics::{FitSummary, Metrics, Timing, summarize};
pub use reports::{
    ClassScores, EvalProvenance, EvalReport, FeatureSource, FoldResult, KFoldReport, Mistake,
    StoredProvenance, class_scores,
};
pub use template::{
    Built, Plan, StageDir, StageOptions, StageOutcome, StageReport, Trainer, interrupted_message,
    read_json, redo_reason, run, spec_metadata, write_json, written_message,
};
pub use top::{TopRequirements, TrainedTop};
