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
//! (`imagedata`'s `flow_from_directory`).
//!
//! [`fit`] is the loop; each of its parts has a module of its own: one epoch's batches
//! (`epoch`), validation and [`evaluate`] (`evaluate`), keep-best (`keep_best`), early stopping
//! (`early_stopping`), and the recorder of checkpoints, history and curves (`recorder`).

#![warn(missing_docs)]

pub mod calibration;
mod checkpoint;
mod data;
mod early_stopping;
mod epoch;
mod error;
mod evaluate;
mod fit;
mod flow_source;
pub mod folds;
mod fused;
mod history;
mod interrupt;
mod keep_best;
pub mod linear;
mod loss;
mod optim;
mod params;
mod plot;
mod progress;
mod recorder;
mod wrapped;

pub use checkpoint::{BestRecord, RunInputs, checkpoint_progress};
pub use data::{Batch, BatchIter, BatchSource, TensorSource};
pub use error::{EngineError, Result};
pub use evaluate::{Evaluation, argmax, evaluate, max_entry};
pub use fit::{FitConfig, FitOutcome, FitStatus, fit};
pub use flow_source::{FlowSource, INTERPOLATION_KEY};
pub use history::{EpochRecord, History};
pub use interrupt::Interrupt;
pub use loss::Task;
pub use optim::Optimizer;
pub use params::{Param, Params};
pub use pipeline::{EarlyStopping, Metric, OptimizerConfig, OptimizerKind, OptimizerRule};
pub use plot::{font_family, render_comparison, render_curves, write_curves};
pub use progress::Verbosity;
pub use recorder::OutputPaths;
pub use wrapped::{Wrap, Wrapped};
