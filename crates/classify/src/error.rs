//! The crate's error type: every message names the file or folder involved.

use std::path::PathBuf;

/// Everything that can go wrong loading a model artifact, evaluating it or predicting with it.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    /// The model path does not exist.
    #[error("{}: no such file or folder{hint}", path.display())]
    NoModel {
        /// The path looked for.
        path: PathBuf,
        /// How to make one, when the path looks like a stage's output.
        hint: String,
    },

    /// The file is a safetensors file but not a model artifact.
    #[error("{}: not a model artifact: {reason}", path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
        /// What it is instead, and what to pass.
        reason: String,
    },

    /// The data folder's classes differ from the model's.
    #[error("{}: {reason}", path.display())]
    ClassMismatch {
        /// The data folder.
        path: PathBuf,
        /// Both class lists.
        reason: String,
    },

    /// An image or a class folder could not be read (to classify or to digest it).
    #[error(transparent)]
    Data(Box<imagedata::DataError>),

    /// The model could not be rebuilt (spec, weights, backbone).
    #[error(transparent)]
    Model(Box<models::ModelError>),

    /// Evaluation failed.
    #[error(transparent)]
    Engine(Box<engine::EngineError>),

    /// The artifact could not be read.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// A stage's shared file could not be read or computed.
    #[error(transparent)]
    Stage(Box<stage::StageError>),

    /// The model cannot say where it looked (Grad-CAM needs a pretrained backbone's last
    /// feature map).
    #[error("{}: cannot explain this model's predictions: {reason}", path.display())]
    NotExplainable {
        /// The model file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// An output file cannot be written as asked (such as an explanation to a file that is
    /// not an image).
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),

    /// Cached features that matched the model and the folder could not be read.
    #[error(transparent)]
    Features(Box<features::FeaturesError>),
}

impl From<features::FeaturesError> for ClassifyError {
    fn from(e: features::FeaturesError) -> Self {
        Self::Features(Box::new(e))
    }
}

impl From<imagedata::DataError> for ClassifyError {
    fn from(e: imagedata::DataError) -> Self {
        Self::Data(Box::new(e))
    }
}

impl From<models::ModelError> for ClassifyError {
    fn from(e: models::ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

impl From<engine::EngineError> for ClassifyError {
    fn from(e: engine::EngineError) -> Self {
        Self::Engine(Box::new(e))
    }
}

/// The crate's result type.
pub type Result<T, E = ClassifyError> = std::result::Result<T, E>;

impl From<stage::StageError> for ClassifyError {
    fn from(e: stage::StageError) -> Self {
        Self::Stage(Box::new(e))
    }
}
