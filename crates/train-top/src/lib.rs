//! The post's second method, part 2: a small fully connected model trained on a backbone's
//! cached features, and k-fold cross-validation on them.
//!
//! - [`train`]: the top model as a [`stage::Trainer`] ([`TopTrainer`]), trained with the shared
//!   stage template into `<data.artifacts>/top/` ([`train_top`]).
//! - [`kfold`]: stratified k-fold cross-validation on train + validation pooled
//!   ([`run_kfold`], [`stratified_folds`]).
//!
//! The features come from the `features` library ([`features::FeaturePair`]), which refuses
//! files that do not belong together or no longer match the pipeline file and the data.

#![warn(missing_docs)]

pub mod kfold;
pub mod train;

pub use kfold::{KFoldOptions, mean_std, run_kfold, stratified_folds};
pub use train::{TopOptions, TopTrainer, spec_for, train_top};
