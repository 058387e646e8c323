//! The post's first method: the small convnet trained from scratch on augmented images.
//!
//! [`train_small`] reads `<data.dir>/train` (augmented per `[small_cnn.augment]`, reshuffled
//! every epoch) and `<data.dir>/validation` (preprocessing only), builds the post's network
//! ([`models::SmallCnn`]: one sigmoid unit for two classes, a softmax unit per class for
//! more), trains it with the shared engine and the `[small_cnn]` settings, and writes
//! `<data.artifacts>/small_cnn/`:
//!
//! - `model.safetensors`: the best epoch's weights (by `small_cnn.monitor`), the model spec
//!   (architecture, classes, image size, preprocessing), the resize filter
//!   ([`engine::INTERPOLATION_KEY`]) and the provenance that makes a rerun a no-op;
//! - `metrics.json` ([`Metrics`]): final and saved validation figures, confusion matrix,
//!   epoch times and throughput, device;
//! - the engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`
//!   (`last.safetensors` to resume from, `best.safetensors`), plus `checkpoints/run.json`,
//!   which ties the checkpoint to its data and settings.

pub mod data;
pub mod error;
pub mod train;

pub use data::{load_flow, resolve_class_mode};
pub use error::{Result, TrainError};
pub use train::{
    Metrics, Timing, TrainOptions, TrainOutcome, TrainReport, small_cnn_dir, train_small,
    training_settings,
};

/// The stage name recorded in the model's provenance.
pub const STAGE: &str = "train-small";

/// The RNG stream the network's initial weights are drawn from.
pub const INIT_STREAM: &str = "small-cnn-init";
