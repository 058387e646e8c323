//! The one training engine of the project.
//!
//! Every model (the small convnet, the top model on bottleneck features, the fine-tuned VGG16)
//! trains through [`fit`]: batches from a [`BatchSource`], forward in training mode, a
//! numerically stable loss from the logits ([`Task`]), backward, one step of a Keras-exact
//! optimizer ([`Optimizer`]: RMSprop, SGD with momentum or Nesterov, Adam) on the trainable
//! parameters only ([`Params`]), validation every epoch, and Keras-like console output.
//!
//! With an output folder ([`OutputPaths`]) a run writes `history.csv`, `history.json`,
//! `curves.png` and, every epoch, a checkpoint (weights, optimizer state, epoch, RNG state,
//! history) from which [`FitConfig::resume`] continues bit for bit; keep-best saves the best
//! epoch's weights; early stopping, a stop request ([`Interrupt`], Ctrl-C) and a NaN guard end
//! runs cleanly. [`render_comparison`] draws several runs' curves side by side. [`evaluate`]
//! scores a trained network on a source. [`FlowSource`] feeds batches from an image folder
//! (`imagedata`'s `flow_from_directory`). [`stage`] holds what the
//! training stages share around [`fit`]: options, freshness, keep-best reload, result files.

#![warn(missing_docs)]

mod checkpoint;
mod config;
mod data;
mod error;
mod flow_source;
mod fused;
mod history;
mod interrupt;
mod loss;
mod optim;
mod params;
mod plot;
mod progress;
pub mod stage;
mod train;
mod wrapped;

pub use checkpoint::BestRecord;
pub use config::{EarlyStopping, Metric, OptimizerConfig, OptimizerKind, OptimizerRule};
pub use data::{Batch, BatchIter, BatchSource, TensorSource};
pub use error::{EngineError, Result};
pub use flow_source::{FlowSource, INTERPOLATION_KEY};
pub use history::{EpochRecord, History};
pub use interrupt::Interrupt;
pub use loss::Task;
pub use optim::Optimizer;
pub use params::{Param, Params};
pub use plot::{font_family, render_comparison, render_curves, write_curves};
pub use progress::Verbosity;
pub use stage::{
    FitSummary, Fitted, Schedule, StageDir, StageFit, StageOptions, StageOutcome, fit_keep_best,
};
pub use train::{Evaluation, FitConfig, FitOutcome, FitStatus, OutputPaths, evaluate, fit};
pub use wrapped::{Wrap, Wrapped};
