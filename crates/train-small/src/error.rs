//! The crate's error type: every message names the file or folder involved.

use std::path::PathBuf;

/// Everything that can go wrong training the small convnet.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The settings cannot be used (for example `class_mode = "binary"` with three classes).
    #[error("{0}")]
    Settings(String),

    /// A checkpoint belongs to another run than the one asked for.
    #[error("{}: cannot resume: {reason}; train without --resume to start afresh", path.display())]
    Resume {
        /// The checkpoint (or its run record).
        path: PathBuf,
        /// What differs.
        reason: String,
    },

    /// An image or a class folder could not be read.
    #[error(transparent)]
    Data(#[from] imagedata::DataError),

    /// A split could not be scanned or digested, or the splits do not match.
    #[error(transparent)]
    Split(Box<extract::ExtractError>),

    /// Training, or writing its results, failed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),

    /// The model could not be built or described.
    #[error(transparent)]
    Model(#[from] models::ModelError),
}

impl From<extract::ExtractError> for TrainError {
    fn from(e: extract::ExtractError) -> Self {
        Self::Split(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
