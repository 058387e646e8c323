//! The error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while building, loading or describing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A weights file is not a readable safetensors file.
    #[error("{} is not a safetensors file: {reason}", path.display())]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A tensor the model needs is absent from a weights file.
    #[error(
        "{} lacks tensor `{name}`{}",
        path.display(),
        if *also_missing > 0 { format!(" (and {also_missing} more the model needs)") } else { String::new() }
    )]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The first missing tensor.
        name: String,
        /// How many other needed tensors are missing too.
        also_missing: usize,
    },

    /// A tensor in a weights file has another shape than the model expects.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape found in the file.
        found: Vec<usize>,
    },

    /// A tensor in a weights file has an element type the model cannot use.
    #[error("{}: tensor `{name}` has dtype {dtype}, expected a float type (F32, F16 or BF16)", path.display())]
    UnsupportedDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The dtype found.
        dtype: String,
    },

    /// No weights file of a backbone could be found by any source.
    #[error(
        "no {backbone} weights found; tried, in order:{}",
        format_attempts(attempts)
    )]
    WeightsNotFound {
        /// The backbone.
        backbone: String,
        /// Each source tried, with why it gave no file.
        attempts: Vec<WeightsAttempt>,
    },

    /// A backbone's weights file differs from the one a model was built with.
    #[error(
        "the weights {} have sha256 {found}, but the model was built with weights of sha256 {expected}; pass the same weights file (--weights or the backbone's environment variable, such as LITTLEDATA_VGG16_WEIGHTS)",
        path.display()
    )]
    WeightsDigestMismatch {
        /// The weights file offered.
        path: PathBuf,
        /// The digest the model records.
        expected: String,
        /// The digest of the file offered.
        found: String,
    },

    /// A model needs its pretrained backbone, but none was given.
    #[error(
        "a `{architecture}` model needs the `{backbone}` backbone weights, but none were given"
    )]
    BackboneRequired {
        /// The architecture.
        architecture: String,
        /// The backbone it was built on.
        backbone: String,
    },

    /// A model spec is inconsistent or describes something the crate cannot build.
    #[error("invalid model spec: {0}")]
    InvalidSpec(String),

    /// A model spec could not be parsed from JSON.
    #[error("cannot parse the model spec: {0}")]
    SpecJson(#[from] serde_json::Error),

    /// A network configuration is unusable (for example an input too small for its pools).
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),

    /// Grad-CAM cannot be computed for this model or class (a backbone without a feature map,
    /// a model without a backbone, a class out of range).
    #[error("Grad-CAM: {0}")]
    GradCam(String),

    /// An artifact could not be read, or a digest computed.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),

    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// One source tried while resolving VGG16 weights, and why it gave no file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsAttempt {
    /// The source, in words (for example `--weights`, `LITTLEDATA_VGG16_WEIGHTS`).
    pub source: String,
    /// Why it gave no usable file.
    pub reason: String,
}

fn format_attempts(attempts: &[WeightsAttempt]) -> String {
    attempts
        .iter()
        .map(|a| format!("\n  - {}: {}", a.source, a.reason))
        .collect()
}

/// The crate's result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
