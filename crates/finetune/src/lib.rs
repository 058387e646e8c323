//! The post's third method: a pretrained backbone with its frozen part kept as it is (VGG16:
//! blocks 1–4), its tail (VGG16: block 5) and the trained top model fine-tuned with SGD
//! (learning rate 1e-4, momentum 0.9) on augmented images.
//!
//! The frozen part never changes, and it is most of the arithmetic, so by default its outputs
//! are cached for `finetune.views` augmented views of every training image, and each epoch
//! trains the tail + the top on one cached view per image ([`TrainingMode::ViewCache`]); live
//! augmentation through the whole network, the post's exact semantics, stays available
//! ([`TrainingMode::Live`], `--live`).
//!
//! - [`cache`]: the caches of the frozen part's outputs (`views.safetensors`,
//!   `validation_frozen.safetensors`), resumable and rebuilt when stale ([`CachePlan`]).
//! - [`source`]: live augmentation through the frozen part ([`FrozenSource`], [`Frozen`]).
//! - [`train`]: the stage as a [`stage::Trainer`] ([`FinetuneTrainer`], [`finetune`]).
//!
//! Outputs, under `<data.artifacts>/finetune/`: `model.safetensors` (the tail and top weights
//! of the best epoch, with a `finetune` model spec, so `classify --model artifacts/finetune`
//! loads it), `metrics.json`, `history.csv`, `history.json`, `curves.png`, `checkpoints/` and
//! the caches.

#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod source;
pub mod train;

pub use cache::{CacheKind, CacheOutcome, CachePlan, CacheStats, DEFAULT_PART_IMAGES};
pub use error::{FinetuneError, Result};
pub use source::{Frozen, FrozenSource};
pub use train::{
    CacheReport, FinetuneOptions, FinetuneReport, FinetuneTrainer, TrainingMode, finetune,
};
