//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, running, checkpointing or resuming training.
///
/// Messages name the file (for checkpoints and outputs), the configuration key, or the epoch and
/// batch involved, so they can be shown to a user as they are.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A configuration value is out of range, or a key does not apply to the chosen optimizer.
    #[error("invalid training configuration: `{key}`: {reason}")]
    Config {
        /// The offending key, as written in a pipeline file (`learning_rate`, `rho`, ...).
        key: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The loss became NaN or infinite; training stopped before the weights were updated.
    #[error(
        "the loss became {value} at epoch {epoch}, batch {batch}; training stopped{}. Try a \
         lower learning rate, or check the input data for NaN or infinite values",
        match checkpoint {
            Some(p) => format!(" and the last good checkpoint {} is kept", p.display()),
            None => " (no checkpoint was written)".to_string(),
        }
    )]
    NonFiniteLoss {
        /// The epoch (1-based) in which it happened.
        epoch: usize,
        /// The batch (1-based) within that epoch.
        batch: usize,
        /// The loss value (NaN or ±inf).
        value: f32,
        /// The last good checkpoint, when checkpoints are written.
        checkpoint: Option<PathBuf>,
    },

    /// A checkpoint could not be used to resume.
    #[error("{}: cannot resume from this checkpoint: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it, or how it differs from the current run.
        reason: String,
    },

    /// Resuming was asked for, but there is no checkpoint to resume from.
    #[error("{}: no checkpoint to resume from (train without resuming first)", path.display())]
    NoCheckpoint {
        /// Where the checkpoint was expected.
        path: PathBuf,
    },

    /// A weights file does not fit the parameters it is loaded into.
    #[error("{}: {reason}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },

    /// Reading or writing an artifact (checkpoint, weights) failed.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// Writing an output file (history, curves) failed.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The training or validation data are unusable (empty, mismatched shapes or labels).
    #[error("{what}: {reason}")]
    Data {
        /// Which data (`training data`, `validation data`).
        what: String,
        /// What is wrong.
        reason: String,
    },

    /// A batch source failed to produce a batch (a decoding error, for example); the source's
    /// own message, which names the file, is shown as it is.
    #[error("{0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The Ctrl-C handler could not be installed.
    #[error("cannot install the Ctrl-C handler: {0}")]
    Signal(String),

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl From<imagedata::ConfigError> for EngineError {
    fn from(e: imagedata::ConfigError) -> Self {
        Self::Config {
            key: e.key,
            reason: e.message,
        }
    }
}

impl EngineError {
    /// Wraps a batch source's own error (for example an image that cannot be decoded).
    pub fn source(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Source(Box::new(error))
    }

    /// A [`EngineError::Config`] for `key`.
    pub(crate) fn config(key: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`EngineError::Checkpoint`] for `path`.
    pub(crate) fn checkpoint(path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A [`EngineError::Output`] for `path`.
    pub(crate) fn output(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Self::Output {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Shorthand result type of this crate.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
