//! The crate's error type: every message names the file or folder involved.

use std::path::PathBuf;

/// Everything that can go wrong extracting, reading or merging bottleneck features.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An image or a class folder could not be read.
    #[error(transparent)]
    Data(#[from] imagedata::DataError),

    /// The VGG16 weights could not be found or loaded.
    #[error(transparent)]
    Model(#[from] models::ModelError),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// A tensor operation failed (`context` says on what).
    #[error("{context}: {source}")]
    Tensor {
        /// What was being computed.
        context: String,
        /// The underlying error.
        #[source]
        source: candle_core::Error,
    },

    /// An I/O error on a named file or folder.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A split's data cannot be used (too few classes, classes that differ between splits).
    #[error("{}: {reason}", path.display())]
    Dataset {
        /// The split's folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// The settings cannot be used (an image size too small for the conv base, a bad block
    /// range).
    #[error("{0}")]
    Settings(String),

    /// A `--shard` argument is malformed.
    #[error("--shard {arg}: {reason}")]
    ShardArg {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        reason: String,
    },

    /// Shard files cannot be merged (missing, mixed or inconsistent shards).
    #[error("{}: {reason}", path.display())]
    Merge {
        /// The shard file (or the merged file) involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A file is not a usable features artifact.
    #[error("{}: {reason}", path.display())]
    Features {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A stop was requested (Ctrl-C); nothing was left half-written.
    #[error("interrupted while writing {}; nothing was written there", path.display())]
    Interrupted {
        /// The file that was being written.
        path: PathBuf,
    },

    /// The Ctrl-C handler could not be installed.
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
}

impl ExtractError {
    pub(crate) fn tensor(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| Self::Tensor { context, source }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn features(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Features {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = ExtractError> = std::result::Result<T, E>;
