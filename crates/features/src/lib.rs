//! Features of a pretrained backbone, cached as safetensors artifacts: what `extract` writes
//! for the top model (method 2) and what `finetune` caches of the frozen part (method 3).
//!
//! - [`meta`]: what a features artifact records ([`FeatureMeta`], [`ExtractSettings`], which
//!   part of which backbone: [`FeaturePart`]), the settings a pipeline implies for each file,
//!   and its provenance.
//! - [`extractor`]: the batched decode → preprocess → backbone → stream-to-disk loop
//!   ([`Extractor`], [`extract_to_file`]), with optional augmented views.
//! - [`slice`]: `--shard i/n`, one slice of a split ([`Shard`]); [`cluster`]: `--shard auto`,
//!   the slice from a Slurm array task or a Kubernetes Indexed Job.
//! - [`shard`]: `merge`, joining a complete set of shard files ([`merge`]).
//! - [`reader`]: reading rows of a features file without loading all of it ([`RowReader`]).
//! - [`load`]: loading features with the checks that keep a model from training on features
//!   that do not belong together or no longer describe the data ([`FeaturePair`]).
//! - [`matching`]: whether a features file stands for running the backbone over a folder
//!   (what evaluation checks before reading cached features instead).
//! - [`views`]: training on cached augmented views, one per image per epoch ([`ViewSource`]).
//!
//! Files (under `<data.artifacts>/bottleneck/`): `train.safetensors`,
//! `validation.safetensors` and, with `bottleneck.augmented_views = K > 0`,
//! `train_augmented.safetensors` (K augmented views per training image, image-major: row
//! `i·K + v` is view `v` of image `i`). Each holds `features` `[rows, C, h, w]` and `labels`
//! `[rows]` u32.

#![warn(missing_docs)]

pub mod cluster;
pub mod error;
pub mod extractor;
pub mod load;
pub mod matching;
pub mod meta;
pub mod reader;
pub mod shard;
pub mod slice;
pub mod views;

pub use error::{EXTRACT_HINT, FeaturesError, Result};
pub use extractor::{Extractor, Job, RunStats, extract_to_file};
pub use load::{FeaturePair, Features, Header, check_pair, features_digest};
pub use meta::{
    ExtractSettings, FEATURES_FORMAT, FeatureFile, FeatureMeta, FeaturePart, ShardMeta,
    ViewSettings, feature_path, features_provenance,
};
pub use reader::RowReader;
pub use shard::{MergeOptions, MergeOutcome, MergeReport, MergedFile, merge, merge_file};
pub use slice::Shard;
pub use views::ViewSource;
