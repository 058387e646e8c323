//! The post's second method, part 2: a small fully connected model trained on cached VGG16
//! bottleneck features, and k-fold cross-validation on them.
//!
//! - [`features`]: loading the features `extract` wrote, refusing pairs that do not belong
//!   together or no longer match the pipeline file and the data ([`Features`]).
//! - [`views`]: a batch source drawing one cached augmented view per image per epoch
//!   ([`ViewSource`]).
//! - [`train`]: training the top model with the shared engine and writing
//!   `<data.artifacts>/top/` ([`train_top`]).
//! - [`kfold`]: stratified k-fold cross-validation on train + validation pooled
//!   ([`run_kfold`], [`stratified_folds`]).

#![warn(missing_docs)]

pub mod error;
pub mod features;
pub mod kfold;
pub mod train;
pub mod views;

pub use error::{Result, TopError};
pub use features::{FeaturePair, Features, Header, check_pair, features_digest};
pub use kfold::{
    FoldResult, KFoldOptions, KFoldReport, StoredProvenance, kfold_path, run_kfold,
    stratified_folds,
};
pub use train::{
    MetricsFile, TopOptions, TopOutcome, TopReport, top_dir, train_top, training_settings,
};
pub use views::ViewSource;

/// The stage name recorded in the top model's provenance.
pub const STAGE: &str = "train-top";

/// The stage name recorded in `kfold.json`'s provenance.
pub const KFOLD_STAGE: &str = "train-top-kfold";
