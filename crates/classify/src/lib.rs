//! Evaluating and using any model artifact the project makes.
//!
//! A model artifact records everything needed to use it: the model spec (architecture,
//! classes, input size, preprocessing; [`models::ModelSpec`]) and the resize filter
//! ([`engine::INTERPOLATION_KEY`]). [`load_model`] rebuilds the network from it (the small
//! convnet, or the VGG16 conv base with its top model or fine-tuned block 5, whose pretrained
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

pub use cache::{Cached, EvalProvenance, evaluate_cached};
pub use error::{ClassifyError, Result};
pub use eval::{
    ClassScores, EvalOptions, EvalReport, Mistake, check_classes, class_scores, evaluate,
};
pub use model::{LoadedModel, MODEL_FILE, load_model, model_file, probabilities};
pub use predict::{PredictOptions, PredictReport, Prediction, predict};

/// Writes `text` to `path` atomically (for `--json`).
pub fn write_output(path: &std::path::Path, text: &str) -> Result<()> {
    artifact::atomic_write(path, text.as_bytes())?;
    Ok(())
}
