//! The post's first method: the small convnet trained from scratch on augmented images.
//!
//! [`train_small`] reads `<data.dir>/train` (augmented per `[small_cnn.augment]`, reshuffled
//! every epoch) and `<data.dir>/validation` (preprocessing only), builds the post's network
//! ([`models::SmallCnn`]: one sigmoid unit for two classes, a softmax unit per class for
//! more), and trains it with the shared stage template ([`SmallTrainer`] fills it in) into
//! `<data.artifacts>/small_cnn/`:
//!
//! - `model.safetensors`: the best epoch's weights (by `small_cnn.monitor`), the model spec
//!   (architecture, classes, image size, preprocessing), the resize filter and the provenance
//!   that makes a rerun a no-op;
//! - `metrics.json` ([`stage::Metrics`]): final and saved validation figures, confusion
//!   matrix, epoch times and throughput, device;
//! - the engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`
//!   (`last.safetensors` to resume from, `best.safetensors`).

#![warn(missing_docs)]

pub mod data;
pub mod train;

pub use data::load_flow;
pub use train::{SmallTrainer, train_small};
