//! The crate's error type: every message names the file involved and, where it helps, the
//! command that fixes it.

use std::path::PathBuf;

/// The hint appended to messages about a missing or unusable top model.
pub const TOP_HINT: &str = "run `just train-top` first";

/// Everything that can go wrong fine-tuning.
#[derive(Debug, thiserror::Error)]
pub enum FinetuneError {
    /// There is no trained top model to start from.
    #[error(
        "{}: no trained top model; {TOP_HINT} (fine-tuning starts from a trained top model: a \
         randomly initialised one would wreck the pretrained weights of block 5)",
        path.display()
    )]
    MissingTop {
        /// Where the top model was expected.
        path: PathBuf,
    },

    /// The top model does not fit the data, the settings or the VGG16 weights.
    #[error("{}: {reason}; {TOP_HINT} (it trains a top model for the current data and settings)", path.display())]
    TopMismatch {
        /// The top model file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },

    /// A cache file cannot be used as it is.
    #[error("{}: {reason}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// `--resume` was asked for, but the checkpoint belongs to another run.
    #[error("{}: cannot resume: {reason}; run without --resume to start afresh", path.display())]
    Resume {
        /// The file describing the interrupted run.
        path: PathBuf,
        /// What differs.
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

    /// Reading the data folders or building a cache failed.
    #[error(transparent)]
    Extract(Box<extract::ExtractError>),

    /// Training, or writing its results, failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),

    /// The model could not be built or its weights loaded.
    #[error(transparent)]
    Model(#[from] models::ModelError),

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

impl From<extract::ExtractError> for FinetuneError {
    fn from(e: extract::ExtractError) -> Self {
        Self::Extract(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = FinetuneError> = std::result::Result<T, E>;
