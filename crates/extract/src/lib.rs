//! Bottleneck features: the pretrained VGG16 conv base run once over the training and
//! validation photos, its outputs cached as safetensors artifacts (the post's second method,
//! part 1).
//!
//! - [`meta`]: what a features artifact records ([`FeatureMeta`], [`ExtractSettings`]) and
//!   its provenance.
//! - [`data`]: the class folders of a split and their content digest ([`SplitData`]).
//! - [`extractor`]: the batched decode → preprocess → conv base → stream-to-disk loop
//!   ([`Extractor`], [`extract_to_file`]), with optional augmented views; reusable for any
//!   block range (the fine-tuner caches block-4 outputs with it).
//! - [`shard`]: `--shard i/n` slices and `merge` ([`Shard`], [`merge`]).
//! - [`stage`]: the `extract` stage as a whole: freshness, weights, reports ([`extract`]).
//! - [`reader`]: reading rows of a features file without loading all of it ([`RowReader`]).
//!
//! Artifacts (under `<data.artifacts>/bottleneck/`): `train.safetensors`,
//! `validation.safetensors` and, with `bottleneck.augmented_views = K > 0`,
//! `train_augmented.safetensors` (K augmented views per training image, image-major: row
//! `i·K + v` is view `v` of image `i`). Each holds `features` `[rows, 512, h, w]` f32 and
//! `labels` `[rows]` u32.

#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod extractor;
pub mod meta;
pub mod reader;
pub mod shard;
pub mod stage;

pub use data::{Split, SplitData};
pub use error::{ExtractError, Result};
pub use extractor::{Extractor, Job, RunStats, extract_to_file};
pub use meta::{
    ExtractSettings, FEATURES_FORMAT, FeatureFile, FeatureMeta, ShardMeta, ViewSettings,
    bottleneck_dir, feature_path, features_provenance,
};
pub use reader::RowReader;
pub use shard::{MergeOptions, MergeOutcome, MergeReport, MergedFile, Shard, merge, merge_file};
pub use stage::{
    ExtractOptions, ExtractReport, FileReport, Outcome, extract, peak_memory_bytes,
    resolve_weights, settings_for,
};

/// The stage name recorded in every features artifact's provenance.
pub const STAGE: &str = "extract";

/// The RNG stream augmented views draw from: view `v` of image `i` uses
/// `imagedata::rng::substream(seed, VIEWS_STREAM, (i << 32) | v)`, so a view does not depend
/// on how many views are drawn, on batching or on sharding.
pub const VIEWS_STREAM: &str = "bottleneck-views";
