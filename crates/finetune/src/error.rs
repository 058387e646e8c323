//! The errors of the fine-tuning caches: every message names the file involved.

use std::path::PathBuf;

/// Everything that can go wrong building or reading a cache of the frozen part's outputs.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// A cache file cannot be used as it is.
    #[error("{}: {reason}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The settings cannot be used.
    #[error("{0}")]
    Settings(String),

    /// A cache file or folder could not be listed, moved into place or removed.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A stop was requested (Ctrl-C) while a cache was being built; finished parts are kept
    /// and the next run continues from them.
    #[error("interrupted while building {}; finished parts are kept, run again to continue", path.display())]
    Interrupted {
        /// The cache being built.
        path: PathBuf,
    },

    /// Extracting or reading the cached features failed.
    #[error(transparent)]
    Features(Box<features::FeaturesError>),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// The training images could not be read.
    #[error(transparent)]
    Data(#[from] imagedata::DataError),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl From<features::FeaturesError> for FinetuneError {
    fn from(e: features::FeaturesError) -> Self {
        Self::Features(Box::new(e))
    }
}

impl From<FinetuneError> for stage::StageError {
    fn from(e: FinetuneError) -> Self {
        stage::StageError::other(e)
    }
}

/// The crate's result type.
pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;
