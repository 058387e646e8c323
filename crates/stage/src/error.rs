//! The error type of the training stages: every message names the file or setting involved
//! and, where it helps, the command that fixes it.

use std::path::PathBuf;

/// Everything that can go wrong running a training stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The settings cannot be used (a class mode that does not fit the classes, an image size
    /// too small for the network, ...).
    #[error("{0}")]
    Settings(String),

    /// An input another stage writes is missing: `hint` says which command makes it.
    #[error("{}: {what} is missing; {hint}", path.display())]
    MissingInput {
        /// Where it was expected.
        path: PathBuf,
        /// What it is (`the trained top model`, `the bottleneck features`).
        what: String,
        /// The command that makes it.
        hint: String,
    },

    /// An input exists but cannot be used with the data or settings of this run.
    #[error("{}: {reason}; {hint}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
        /// The command that makes a fitting one.
        hint: String,
    },

    /// `--resume` was asked for, but the checkpoint cannot be continued.
    #[error("{}: cannot resume: {reason}; run without --resume to start afresh", path.display())]
    Resume {
        /// The checkpoint.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// A stop was requested (Ctrl-C) where no checkpoint can be kept; nothing was written.
    #[error("interrupted {0}")]
    Interrupted(String),

    /// The `--device` value is not understood or the device is not available.
    #[error("device `{0}`")]
    Device(String),

    /// An image or a class folder could not be read.
    #[error(transparent)]
    Data(#[from] imagedata::DataError),

    /// A network could not be built or its weights found or loaded.
    #[error(transparent)]
    Model(Box<models::ModelError>),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(Box<artifact::ArtifactError>),

    /// Training, evaluation or writing their results failed.
    #[error(transparent)]
    Engine(Box<engine::EngineError>),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    /// An error of a stage's own (features, caches), already naming its file.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    /// Wraps a stage's own error.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(e))
    }
}

impl From<imagedata::ConfigError> for StageError {
    fn from(e: imagedata::ConfigError) -> Self {
        Self::Settings(e.to_string())
    }
}

/// The result type of the training stages.
pub type Result<T, E = StageError> = std::result::Result<T, E>;

/// Boxed: these errors are large, and every stage's `Result` carries them.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for StageError {
            fn from(e: $ty) -> Self {
                Self::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Model(models::ModelError),
    Artifact(artifact::ArtifactError),
    Engine(engine::EngineError)
);
