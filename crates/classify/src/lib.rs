//! Evaluating and using any model artifact the project makes.
//!
//! A model artifact records everything needed to use it: the model spec (architecture,
//! classes, input size, preprocessing; [`models::ModelSpec`]) and the resize filter
//! ([`engine::INTERPOLATION_KEY`]). [`load_model`] rebuilds the network from it (the small
//! convnet, or a pretrained backbone with its top model or fine-tuned tail, whose pretrained
//! weights are resolved and checked against the digest the artifact records);
//! [`evaluate`] scores it on a labelled folder (accuracy, loss, confusion matrix,
//! per-class precision, recall and F1), and [`evaluate_cached`] does so unless the report it
//! stored for the same model file, images and options is there to read back; [`predict`] classifies
//! single images. Both can average each image's probabilities with its mirror's (test-time
//! augmentation).

pub mod cache;
pub mod error;
pub mod eval;
pub mod model;
pub mod predict;

pub use cache::{Cached, evaluate_cached};
pub use error::{ClassifyError, Result};
pub use eval::{EvalOptions, check_classes, evaluate};
pub use model::{LoadedModel, load_model, model_file, probabilities};
pub use pipeline::layout::MODEL_FILE;
pub use predict::{PredictOptions, PredictReport, Prediction, predict};
pub use stage::{ClassScores, EvalProvenance, EvalReport, Mistake, class_scores};

/// Writes `text` to `path` atomically (for `--json`).
pub fn write_output(path: &std::path::Path, text: &str) -> Result<()> {
    artifact::atomic_write(path, text.as_bytes())?;
    Ok(())
}
