//! The post's third method: VGG16 with blocks 1–4 frozen, block 5 and the trained top model
//! fine-tuned with SGD (learning rate 1e-4, momentum 0.9) on augmented images.
//!
//! Blocks 1–4 never change, and they are about 90% of the arithmetic, so by default their
//! outputs are cached for `finetune.views` augmented views of every training image, and each
//! epoch trains block 5 + the top on one cached view per image ([`TrainingMode::ViewCache`]);
//! live augmentation through the whole network, the post's exact semantics, stays available
//! ([`TrainingMode::Live`], `--live`).
//!
//! - [`top`]: the trained top model the run starts from, checked against the data, the
//!   settings and the weights ([`TrainedTop`]).
//! - [`cache`]: the caches of blocks 1–4's outputs (`views.safetensors`,
//!   `validation_block4.safetensors`), resumable and rebuilt when stale ([`CachePlan`]).
//! - [`source`]: live augmentation through the frozen blocks ([`Block4Source`],
//!   [`FrozenBlocks`]).
//! - [`train`]: the stage as a whole ([`finetune`]).
//!
//! Outputs, under `<data.artifacts>/finetune/`: `model.safetensors` (block 5 and top weights
//! of the best epoch, with a `vgg16_finetune` model spec, so `classify --model
//! artifacts/finetune` loads it), `metrics.json`, `history.csv`, `history.json`, `curves.png`,
//! `checkpoints/`, `run.json` and the caches.

pub mod cache;
pub mod error;
pub mod source;
pub mod top;
pub mod train;

pub use cache::{
    CacheKind, CacheOutcome, CachePlan, CacheStats, DEFAULT_PART_IMAGES, FROZEN_BLOCKS,
    finetune_dir, validation_settings, views_settings,
};
pub use error::{FinetuneError, Result, TOP_HINT};
pub use source::{Block4Source, FrozenBlocks};
pub use top::{TopRequirements, TrainedTop, top_model_path};
pub use train::{
    CacheReport, FinetuneOptions, FinetuneOutcome, FinetuneReport, MetricsFile, TrainingMode,
    finetune, training_settings,
};

/// The stage name recorded in the fine-tuned model's provenance.
pub const STAGE: &str = "finetune";
