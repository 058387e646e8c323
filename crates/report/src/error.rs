//! The crate's error type.

use std::path::PathBuf;

/// Everything that stops the report from being built. Messages name the file and the problem.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file exists but cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file the stages wrote is not what they write (corrupt or from another version).
    #[error("{}: not valid {what}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What the file should hold (`training history`, `evaluation results`, ...).
        what: &'static str,
        /// The parse error, with its line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors artifact cannot be read.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),
    /// A bottleneck features artifact's metadata cannot be read.
    #[error(transparent)]
    Features(Box<features::FeaturesError>),
    /// A model artifact's spec cannot be read.
    #[error("{}: {source}", path.display())]
    Spec {
        /// The model artifact.
        path: PathBuf,
        /// What is wrong with its spec.
        #[source]
        source: Box<models::ModelError>,
    },
    /// A calibration file (`calibration.safetensors`) is not what `classify calibrate` writes.
    /// The message is the reader's, which names the file.
    #[error("{source}")]
    Calibration {
        /// The calibration file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<stage::StageError>,
    },
    /// `audit/audit.json` is not what `audit` writes (corrupt, or from another version).
    #[error("{}: {reason}; `just audit` writes it again", path.display())]
    Audit {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A figure cannot be drawn or encoded.
    #[error("{}: {reason}", path.display())]
    Figure {
        /// The figure's file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl From<features::FeaturesError> for ReportError {
    fn from(e: features::FeaturesError) -> Self {
        Self::Features(Box::new(e))
    }
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn figure(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Self::Figure {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Shorthand result type of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
