//! `classify predict`: the class of each image, with its probability.

use std::fmt::Write as _;
use std::path::PathBuf;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::classifier::Classifier;
use crate::error::Result;

/// How to predict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictOptions {
    /// Images decoded and classified together (decoding runs in parallel within a batch).
    pub batch_size: usize,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self { batch_size: 32 }
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
    /// The temperature the logits were divided by (`None`: uncalibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
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

    /// The report as CSV: `path,class,probability`, one `p_<class>` column per class, then
    /// `error` (empty when the image was classified); one row per image.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("path,class,probability");
        for c in &self.classes {
            let _ = write!(s, ",{}", csv_field(&format!("p_{c}")));
        }
        s.push_str(",error\n");
        for p in &self.predictions {
            let _ = write!(s, "{}", csv_field(&p.image.display().to_string()));
            let _ = write!(s, ",{}", csv_field(p.class.as_deref().unwrap_or("")));
            match p.probability {
                Some(v) => {
                    let _ = write!(s, ",{v}");
                }
                None => s.push(','),
            }
            for i in 0..self.classes.len() {
                match p.probabilities.as_ref().and_then(|r| r.get(i)) {
                    Some(v) => {
                        let _ = write!(s, ",{v}");
                    }
                    None => s.push(','),
                }
            }
            let _ = writeln!(s, ",{}", csv_field(p.error.as_deref().unwrap_or("")));
        }
        s
    }
}

/// `value` as one CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// The image files under `inputs`: a file is taken as given, a folder is walked recursively
/// for files with an image extension, skipping hidden entries, in sorted order so runs are
/// repeatable ([`imagedata::folder::image_files`]). Returns the files and the number of other
/// files skipped in folders. A path that is not a folder is taken as a file even when it does
/// not exist (its prediction then says so); a folder that cannot be listed is an error.
pub fn expand_inputs(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, usize)> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for input in inputs {
        if input.is_dir() {
            let (found, others) = imagedata::folder::image_files(input)?;
            files.extend(found);
            skipped += others;
        } else {
            files.push(input.clone());
        }
    }
    Ok((files, skipped))
}

/// Classifies `images` with `classifier`, batch by batch (decoding in parallel within a
/// batch).
///
/// An image that cannot be read or decoded gets an entry with its error and the others are
/// still classified; `on_prediction` is called with each entry as soon as its batch is done,
/// in the order given. Errors of the model itself (a failed forward pass) end the run.
pub fn predict(
    classifier: &Classifier,
    images: &[PathBuf],
    options: &PredictOptions,
    on_prediction: &mut dyn FnMut(&Prediction),
) -> Result<PredictReport> {
    let classes = classifier.classes();
    let mut predictions = Vec::with_capacity(images.len());
    for chunk in images.chunks(options.batch_size.max(1)) {
        let decoded: Vec<_> = chunk.par_iter().map(|path| classifier.open(path)).collect();
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
        let mut rows = classifier.predict_prepared(&ok)?.into_iter();
        for (path, error) in chunk.iter().zip(errors) {
            let scores = if error.is_none() { rows.next() } else { None };
            let prediction = match (error, scores) {
                (None, Some(scores)) => Prediction {
                    image: path.clone(),
                    class: Some(scores.class),
                    probability: Some(scores.probability),
                    probabilities: Some(scores.probabilities),
                    error: None,
                },
                (error, _) => Prediction {
                    image: path.clone(),
                    class: None,
                    probability: None,
                    probabilities: None,
                    error: Some(error.unwrap_or_else(|| "no prediction".into())),
                },
            };
            on_prediction(&prediction);
            predictions.push(prediction);
        }
    }
    Ok(PredictReport {
        model: classifier.model().path.clone(),
        classes: classes.to_vec(),
        tta: classifier.tta(),
        temperature: classifier.model().applied_temperature(),
        predictions,
    })
}
