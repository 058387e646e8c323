//! The crate's error type: every message names the file or folder involved.

use std::path::PathBuf;

/// The hint appended to messages about missing or outdated features.
pub const EXTRACT_HINT: &str = "run `just extract-bottlenecks` first";

/// Everything that can go wrong extracting, reading, loading or merging features.
#[derive(Debug, thiserror::Error)]
pub enum FeaturesError {
    /// An image or a class folder could not be read.
    #[error(transparent)]
    Data(#[from] imagedata::DataError),

    /// The backbone's weights could not be found or loaded.
    #[error(transparent)]
    Model(Box<models::ModelError>),

    /// An artifact could not be read or written.
    #[error(transparent)]
    Artifact(Box<artifact::ArtifactError>),

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

    /// The settings cannot be used (an image size too small for the backbone, a part it does
    /// not have).
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

    /// A features file does not exist.
    #[error("{}: no such file; {EXTRACT_HINT}", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },

    /// A features file cannot be used as it is (not a features file, wrong split, shapes
    /// that contradict its metadata).
    #[error("{}: {reason}; {EXTRACT_HINT}", path.display())]
    Unusable {
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
    Engine(Box<engine::EngineError>),
}

impl FeaturesError {
    /// Wraps a tensor error with what was being done.
    pub fn tensor(context: impl Into<String>) -> impl FnOnce(candle_core::Error) -> Self {
        let context = context.into();
        move |source| Self::Tensor { context, source }
    }

    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    /// A features file that is unusable, and why.
    pub fn features(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Features {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = FeaturesError> = std::result::Result<T, E>;

/// Boxed: these errors are large, and every `Result` of this crate carries them.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for FeaturesError {
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
