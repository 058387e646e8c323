//! `classify predict`: the class of each image, with its probability.

use std::fmt::Write as _;
use std::path::PathBuf;

use imagedata::{Limits, load_resized};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::eval::argmax;
use crate::model::LoadedModel;

/// How to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictOptions {
    /// Images decoded and classified together (decoding runs in parallel within a batch).
    pub batch_size: usize,
    /// Average each image's probabilities with its left-right mirror's.
    pub tta: bool,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            tta: false,
        }
    }
}

/// The prediction for one image, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// The image file, as given.
    pub image: PathBuf,
    /// The predicted class (absent when the image could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Its probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f32>,
    /// Every class's probability, in class order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<f32>>,
    /// Why the image could not be classified (it names the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Prediction {
    /// Whether the image was classified.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The line printed for the image: `path: class (0.9731)`, or `path: error: reason`.
    pub fn line(&self) -> String {
        match (&self.class, self.probability, &self.error) {
            (Some(class), Some(p), _) => format!("{}: {class} ({p:.4})", self.image.display()),
            (_, _, Some(e)) => {
                let path = self.image.display().to_string();
                let reason = e
                    .strip_prefix(&path)
                    .and_then(|r| r.strip_prefix(": "))
                    .unwrap_or(e);
                format!("{path}: error: {reason}")
            }
            _ => format!("{}: no prediction", self.image.display()),
        }
    }
}

/// The result of [`predict`], as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictReport {
    /// The model artifact.
    pub model: PathBuf,
    /// Class names, in the order of each prediction's `probabilities`.
    pub classes: Vec<String>,
    /// Whether test-time augmentation (mirror averaging) was used.
    pub tta: bool,
    /// One entry per image, in the order given.
    pub predictions: Vec<Prediction>,
}

impl PredictReport {
    /// The number of images that could not be classified.
    pub fn failures(&self) -> usize {
        self.predictions.iter().filter(|p| !p.is_ok()).count()
    }

    /// One line per image.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for p in &self.predictions {
            let _ = writeln!(s, "{}", p.line());
        }
        s
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Classifies `images`, resized and preprocessed as the artifact records, batch by batch.
///
/// An image that cannot be read or decoded gets an entry with its error and the others are
/// still classified; `on_prediction` is called with each entry as soon as its batch is done,
/// in the order given. Errors of the model itself (a failed forward pass) end the run.
pub fn predict(
    model: &LoadedModel,
    images: &[PathBuf],
    options: &PredictOptions,
    on_prediction: &mut dyn FnMut(&Prediction),
) -> Result<PredictReport> {
    let size = model.target_size();
    let limits = Limits::default();
    let classes = &model.spec.classes;
    let mut predictions = Vec::with_capacity(images.len());
    for chunk in images.chunks(options.batch_size.max(1)) {
        let decoded: Vec<_> = chunk
            .par_iter()
            .map(|path| load_resized(path, size, model.interpolation, &limits))
            .collect();
        let mut ok = Vec::with_capacity(chunk.len());
        let errors: Vec<Option<String>> = decoded
            .into_iter()
            .map(|r| match r {
                Ok(img) => {
                    ok.push(img);
                    None
                }
                Err(e) => Some(e.to_string()),
            })
            .collect();
        let mut rows = if ok.is_empty() {
            Vec::new()
        } else {
            let x = imagedata::images_to_tensor(&ok, &model.spec.preprocessing, &model.device)?;
            model.probabilities(&x, options.tta)?.to_vec2::<f32>()?
        }
        .into_iter();
        for (path, error) in chunk.iter().zip(errors) {
            let prediction = match error {
                None => {
                    let row = rows.next().unwrap_or_default();
                    let best = argmax(&row);
                    Prediction {
                        image: path.clone(),
                        class: classes.get(best).cloned(),
                        probability: row.get(best).copied(),
                        probabilities: Some(row),
                        error: None,
                    }
                }
                Some(e) => Prediction {
                    image: path.clone(),
                    class: None,
                    probability: None,
                    probabilities: None,
                    error: Some(e),
                },
            };
            on_prediction(&prediction);
            predictions.push(prediction);
        }
    }
    Ok(PredictReport {
        model: model.path.clone(),
        classes: classes.clone(),
        tta: options.tta,
        predictions,
    })
}
