//! The crate's error type: every message names the file involved and, where it helps, the
//! command that fixes it.

use std::path::PathBuf;

/// The hint appended to messages about missing or outdated features.
pub const EXTRACT_HINT: &str = "run `just extract-bottlenecks` first";

/// Everything that can go wrong training the top model or cross-validating it.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// A features file does not exist.
    #[error("{}: no such file; {EXTRACT_HINT}", path.display())]
    MissingFeatures {
        /// The file.
        path: PathBuf,
    },

    /// A features file cannot be used as it is (not a features file, wrong split, shapes
    /// that contradict its metadata).
    #[error("{}: {reason}; {EXTRACT_HINT}", path.display())]
    BadFeatures {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The training and validation features do not belong together.
    #[error(
        "{} and {} do not match: {reason}; {EXTRACT_HINT} (it extracts both again)",
        train.display(),
        validation.display()
    )]
    Mismatch {
        /// The training features.
        train: PathBuf,
        /// The validation features.
        validation: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A features file no longer matches the pipeline file or the data folder.
    #[error("{}: {reason}; {EXTRACT_HINT}", path.display())]
    Stale {
        /// The file.
        path: PathBuf,
        /// What changed.
        reason: String,
    },

    /// The settings cannot be used (for example `--kfold` with more folds than images of a
    /// class).
    #[error("{0}")]
    Settings(String),

    /// A stop was requested (Ctrl-C) during k-fold cross-validation; nothing was written.
    #[error("interrupted during fold {fold} of {k}; kfold.json was not written")]
    Interrupted {
        /// The fold in progress (1-based).
        fold: usize,
        /// The number of folds.
        k: usize,
    },

    /// Reading the features or the data folder failed.
    #[error(transparent)]
    Extract(Box<extract::ExtractError>),

    /// Training, or writing its results, failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),

    /// The model could not be built or described.
    #[error(transparent)]
    Model(#[from] models::ModelError),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl From<extract::ExtractError> for TopError {
    fn from(e: extract::ExtractError) -> Self {
        Self::Extract(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = TopError> = std::result::Result<T, E>;
