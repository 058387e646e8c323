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

    /// An output file could not be written.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// An image or a class folder could not be read.
    #[error(transparent)]
    Data(Box<imagedata::DataError>),

    /// A split could not be scanned or digested, or the splits do not match.
    #[error(transparent)]
    Split(Box<extract::ExtractError>),

    /// Training failed.
    #[error(transparent)]
    Engine(Box<engine::EngineError>),

    /// The model could not be built or described.
    #[error(transparent)]
    Model(Box<models::ModelError>),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl From<imagedata::DataError> for TrainError {
    fn from(e: imagedata::DataError) -> Self {
        Self::Data(Box::new(e))
    }
}

impl From<extract::ExtractError> for TrainError {
    fn from(e: extract::ExtractError) -> Self {
        Self::Split(Box::new(e))
    }
}

impl From<engine::EngineError> for TrainError {
    fn from(e: engine::EngineError) -> Self {
        Self::Engine(Box::new(e))
    }
}

impl From<models::ModelError> for TrainError {
    fn from(e: models::ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
