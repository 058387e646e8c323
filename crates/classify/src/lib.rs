//! Evaluating and using any model artifact the project makes.
//!
//! A model artifact records everything needed to use it: the model spec (architecture,
//! classes, input size, preprocessing; [`models::ModelSpec`]) and the resize filter
//! ([`engine::INTERPOLATION_KEY`]). [`Classifier`] is the library API: [`Classifier::load`]
//! opens a stage's folder (the small convnet, or a pretrained backbone with its top model or
//! fine-tuned tail, whose pretrained weights are resolved and checked against the digest the
//! artifact records), and [`Classifier::predict`] / [`Classifier::predict_batch`] classify
//! images, with typed [`Scores`] and a typed [`ClassifyError`]:
//!
//! ```
//! # fn main() -> Result<(), classify::ClassifyError> {
//! # let dir = tempfile::tempdir().unwrap();
//! # testkit::fixtures::write_brightness_model(dir.path());
//! # let model_dir = dir.path();
//! let classifier = classify::Classifier::load(model_dir)?;
//! let photo = image::RgbImage::from_pixel(40, 40, image::Rgb([20, 20, 20]));
//! let scores = classifier.predict(&photo)?;
//! println!("{} ({:.3})", scores.class, scores.probability);
//! assert_eq!(scores.class, "dark");
//! # Ok(())
//! # }
//! ```
//!
//! [`evaluate`] scores a model on a labelled folder (accuracy, loss, confusion matrix,
//! per-class precision, recall and F1), reading the backbone's outputs from the features a
//! stage cached for the same photos when they match the model ([`reuse`]), and
//! [`evaluate_cached`] does so unless the report it stored for the same model file, images,
//! options and features is there to read back; [`predict`]
//! classifies files and folders; [`calibrate_cached`] fits the model's temperature on the
//! validation split (stored beside it and applied from then on); [`serve`] puts the model
//! behind HTTP with a page for people. Evaluation and prediction can average each image's
//! probabilities with its mirror's (test-time augmentation). [`Classifier::explain`] says
//! where a model on a pretrained backbone looked (Grad-CAM, drawn over the photo:
//! [`Explanation`]); [`evaluate`] records it for each mistake.

pub mod cache;
pub mod calibrate;
pub mod classifier;
pub mod error;
pub mod eval;
pub mod explain;
pub mod model;
pub mod predict;
pub mod reuse;
pub mod serve;

pub use cache::{Cached, evaluate_cached};
pub use calibrate::{CalibrateOutcome, calibrate, calibrate_cached};
pub use classifier::{CalibrationInfo, Classifier, ClassifierOptions, ModelInfo, Scores};
pub use error::{ClassifyError, Result};
pub use eval::{EvalOptions, check_classes, evaluate};
pub use explain::{Explanation, explain_format};
pub use model::{AppliedCalibration, LoadedModel, Tempered, load_model, model_file, probabilities};
pub use pipeline::layout::MODEL_FILE;
pub use predict::{PredictOptions, PredictReport, Prediction, expand_inputs, predict};
pub use reuse::{FeatureLookup, FeaturePlan};
pub use serve::ServeOptions;
pub use stage::{
    Calibration, ClassScores, EvalProvenance, EvalReport, FeatureSource, Mistake, class_scores,
};

/// Writes `text` to `path` atomically (for `--json`).
pub fn write_output(path: &std::path::Path, text: &str) -> Result<()> {
    artifact::atomic_write(path, text.as_bytes())?;
    Ok(())
}
