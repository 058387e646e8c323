//! The schemas of the files one stage writes and others read: `classify evaluate --json`
//! results ([`EvalReport`]) and the top model's k-fold results ([`KFoldReport`]). The training
//! stages' `metrics.json` is [`crate::Metrics`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use artifact::Provenance;
use imagedata::ImageFolder;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Precision, recall and F1 of one class (or their average over classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// The class (or `macro avg`, `weighted avg`).
    pub class: String,
    /// Of the images predicted as the class, the fraction that are (0 when none is).
    pub precision: f64,
    /// Of the images of the class, the fraction predicted as it (0 when there are none).
    pub recall: f64,
    /// The harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Images of the class.
    pub support: usize,
}

/// One misclassified image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mistake {
    /// The image file.
    pub image: PathBuf,
    /// Its class (folder).
    pub actual: String,
    /// The predicted class.
    pub predicted: String,
    /// The predicted class's probability.
    pub probability: f32,
    /// Where the model looked: the Grad-CAM of the predicted class at the resolution of the
    /// network's last feature map (`classify evaluate` records it when the model can be
    /// explained: a top or fine-tuned model on VGG16 or EfficientNet-Lite0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cam: Option<models::GradCam>,
}

/// The result of [`evaluate`], as printed and as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The model artifact.
    pub model: PathBuf,
    /// Its architecture.
    pub architecture: String,
    /// The data folder.
    pub data: PathBuf,
    /// Class names, in label order (rows and columns of the confusion matrix).
    pub classes: Vec<String>,
    /// Whether test-time augmentation (mirror averaging) was used.
    pub tta: bool,
    /// The temperature the logits were divided by (`None`: uncalibrated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Images evaluated.
    pub samples: usize,
    /// Correctly classified images.
    pub correct: usize,
    /// `correct / samples`.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion_matrix[true][predicted]` counts.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Scores of each class, in class order.
    pub per_class: Vec<ClassScores>,
    /// The unweighted mean of the per-class scores.
    pub macro_avg: ClassScores,
    /// The mean of the per-class scores weighted by support.
    pub weighted_avg: ClassScores,
    /// Every misclassified image, in folder order.
    pub mistakes: Vec<Mistake>,
    /// What the evaluation was computed from (recorded by [`crate::evaluate_cached`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<EvalProvenance>,
    /// Where the backbone's outputs came from: run over the images, or read from the features
    /// a stage cached for the same images (`None`: a report written before evaluations said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureSource>,
}

/// Where an evaluation's backbone outputs came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum FeatureSource {
    /// The images were run through the whole network.
    Computed {
        /// Why cached features were not used although some were found (test-time
        /// augmentation, a file that does not match), when that is worth saying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The backbone's outputs (the top model's input, or the frozen part's for a fine-tuned
    /// model) were read from a features file made from the same images with the same weights
    /// and preprocessing; only the rest of the network ran.
    Cached {
        /// The features file.
        path: PathBuf,
        /// The stage that cached it (`extract`, `finetune`).
        made_by: String,
        /// Its digest (`features::features_digest`: it changes whenever the file is rewritten).
        digest: String,
    },
}

impl FeatureSource {
    /// One line for people: `features from <path> (cached by extract)`, or that the network
    /// ran over the images.
    pub fn describe(&self) -> String {
        match self {
            Self::Cached { path, made_by, .. } => {
                format!("features from {} (cached by {made_by})", path.display())
            }
            Self::Computed { .. } => "features computed: the network ran over the images".into(),
        }
    }

    /// The cached file's digest (`None` when computed).
    pub fn digest(&self) -> Option<&str> {
        match self {
            Self::Cached { digest, .. } => Some(digest),
            Self::Computed { .. } => None,
        }
    }
}

/// Per-class precision, recall, F1 and support from a confusion matrix `m[true][predicted]`,
/// with their macro (unweighted) and support-weighted averages.
pub fn class_scores(
    classes: &[String],
    m: &[Vec<usize>],
) -> (Vec<ClassScores>, ClassScores, ClassScores) {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class: Vec<ClassScores> = classes
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let hits = m.get(c).and_then(|r| r.get(c)).copied().unwrap_or(0);
            let predicted: usize = m.iter().filter_map(|r| r.get(c)).sum();
            let support: usize = m.get(c).map_or(0, |r| r.iter().sum());
            let precision = ratio(hits, predicted);
            let recall = ratio(hits, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                class: name.clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let total: usize = per_class.iter().map(|s| s.support).sum();
    let n = per_class.len().max(1) as f64;
    let average = |name: &str, weight: &dyn Fn(&ClassScores) -> f64| {
        let mean = |f: fn(&ClassScores) -> f64| per_class.iter().map(|s| f(s) * weight(s)).sum();
        ClassScores {
            class: name.into(),
            precision: mean(|s| s.precision),
            recall: mean(|s| s.recall),
            f1: mean(|s| s.f1),
            support: total,
        }
    };
    let macro_avg = average("macro avg", &|_| 1.0 / n);
    let weighted_avg = average("weighted avg", &|s| {
        if total == 0 {
            0.0
        } else {
            s.support as f64 / total as f64
        }
    });
    (per_class, macro_avg, weighted_avg)
}

impl EvalReport {
    /// The report as text: accuracy, loss, the confusion matrix with class names, and a
    /// per-class table of precision, recall, F1 and support with the two averages.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "accuracy: {:.4} ({}/{} images){}",
            self.accuracy,
            self.correct,
            self.samples,
            if self.tta {
                ", with test-time augmentation (mirror averaging)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "loss: {:.4}", self.loss);
        let label_width = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(0);
        let cell = self
            .classes
            .iter()
            .map(|c| c.chars().count())
            .chain(
                self.confusion_matrix
                    .iter()
                    .flatten()
                    .map(|v| v.to_string().len()),
            )
            .max()
            .unwrap_or(1)
            .max(6);
        let _ = writeln!(s, "\nconfusion matrix (rows: actual, columns: predicted):");
        let _ = write!(s, "{:label_width$}", "");
        for c in &self.classes {
            let _ = write!(s, "  {c:>cell$}");
        }
        s.push('\n');
        for (c, row) in self.classes.iter().zip(&self.confusion_matrix) {
            let _ = write!(s, "{c:<label_width$}");
            for v in row {
                let _ = write!(s, "  {v:>cell$}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\n{:<label_width$}  {:>9}  {:>9}  {:>9}  {:>7}",
            "", "precision", "recall", "f1", "support"
        );
        let line = |s: &mut String, r: &ClassScores| {
            let _ = writeln!(
                s,
                "{:<label_width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}",
                r.class, r.precision, r.recall, r.f1, r.support
            );
        };
        for r in &self.per_class {
            line(&mut s, r);
        }
        s.push('\n');
        line(&mut s, &self.macro_avg);
        line(&mut s, &self.weighted_avg);
        s
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// What an evaluation was computed from: a stored report whose provenance equals the current
/// one would come out the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalProvenance {
    /// sha256 of the model artifact file (which records the VGG16 weights' digest, when it
    /// uses them).
    pub model_sha256: String,
    /// Content digest of the data folder: its classes and every image's relative path, size
    /// and sha256, as the stages digest their splits ([`ImageFolder::content_digest`]).
    pub data_digest: String,
    /// Whether test-time augmentation (mirror averaging) was used.
    pub tta: bool,
    /// The sha256 of the calibration file whose temperature the probabilities (and the
    /// loss) were computed with; `None`: uncalibrated.
    #[serde(default)]
    pub calibration: Option<String>,
    /// The version of `classify` that evaluated.
    pub version: String,
    /// What the report holds: 2 since each mistake records its Grad-CAM; files written
    /// before say nothing and read as 1, and are evaluated again.
    #[serde(default = "legacy_eval_format")]
    pub format: u32,
    /// The digest of the cached features the evaluation read instead of running the backbone
    /// ([`FeatureSource::Cached`]); `None`: the network ran over the images.
    ///
    /// The model and data digests alone do not determine the features: they match the model's
    /// backbone, weights, input size, resize filter and preprocessing and the folder's images,
    /// but they may have been made by another build, on another instruction set or with
    /// another batch size (the last bits differ), and `extract --force` rewrites them. So a
    /// report read from features stays up to date only while the same file is there, and one
    /// computed from the images is replaced once matching features are found (or the other
    /// way round): a stored report is always what the evaluation would give now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<String>,
}

/// The [`EvalProvenance::format`] this version writes.
const EVAL_FORMAT: u32 = 2;

/// The format of an evaluation file that records none.
fn legacy_eval_format() -> u32 {
    1
}

impl EvalProvenance {
    /// The provenance of evaluating the artifact file whose sha256 is `model_sha256` on the
    /// labelled folder `data`, with or without test-time augmentation, with the calibration
    /// file whose sha256 is `calibration` (or none).
    pub fn compute(
        model_sha256: String,
        data: &Path,
        tta: bool,
        calibration: Option<String>,
    ) -> Result<Self> {
        Ok(Self {
            model_sha256,
            data_digest: ImageFolder::scan(data)?.content_digest()?,
            tta,
            calibration,
            version: env!("CARGO_PKG_VERSION").into(),
            format: EVAL_FORMAT,
            features: None,
        })
    }

    /// Explains the first difference from `stored`, or `None` when they match.
    pub fn difference(&self, stored: &EvalProvenance) -> Option<String> {
        if self.model_sha256 != stored.model_sha256 {
            Some("the model file changed".into())
        } else if self.data_digest != stored.data_digest {
            Some("the images changed".into())
        } else if self.tta != stored.tta {
            Some(format!(
                "it was evaluated {} test-time augmentation",
                if stored.tta { "with" } else { "without" }
            ))
        } else if self.calibration != stored.calibration {
            Some(match (&stored.calibration, &self.calibration) {
                (None, _) => "it was evaluated uncalibrated; the model is calibrated now".into(),
                (_, None) => "it was evaluated with a calibration the model no longer has".into(),
                _ => "the model's calibration changed".into(),
            })
        } else if self.features != stored.features {
            Some(match (&stored.features, &self.features) {
                (None, _) => {
                    "it was computed from the images; cached features match them now".into()
                }
                (_, None) => "it was read from cached features, which are not used now".into(),
                _ => "the cached features it was read from changed".into(),
            })
        } else if self.format != stored.format {
            Some(format!(
                "it holds evaluation format {}, this version writes {} (mistakes record where \
                 the model looked)",
                stored.format, self.format
            ))
        } else if self.version != stored.version {
            Some(format!(
                "it was evaluated by version {}, this is {}",
                stored.version, self.version
            ))
        } else {
            None
        }
    }
}

/// One fold's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldResult {
    /// The fold (1-based).
    pub fold: usize,
    /// Samples trained on.
    pub train_samples: usize,
    /// Samples held out.
    pub validation_samples: usize,
    /// Held-out accuracy after the last epoch.
    pub acc: f64,
    /// Held-out loss after the last epoch.
    pub loss: f64,
    /// The best held-out accuracy of any epoch (optimistic: chosen on the held-out fold).
    pub best_acc: f64,
    /// The epoch of `best_acc`.
    pub best_epoch: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Seconds of training.
    pub seconds: f64,
}

/// The stored form of a provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProvenance {
    /// The stage.
    pub stage: String,
    /// The settings digest.
    pub config_digest: String,
    /// Input digests by name.
    pub inputs: BTreeMap<String, String>,
}

impl From<&Provenance> for StoredProvenance {
    fn from(p: &Provenance) -> Self {
        Self {
            stage: p.stage.clone(),
            config_digest: p.config_digest.clone(),
            inputs: p.inputs.clone(),
        }
    }
}

/// `top/kfold.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KFoldReport {
    /// The number of folds.
    pub k: usize,
    /// The seed of the fold assignment and of training.
    pub seed: u64,
    /// Images pooled (training + validation).
    pub samples: usize,
    /// Class names.
    pub classes: Vec<String>,
    /// Every fold.
    pub folds: Vec<FoldResult>,
    /// Mean held-out accuracy.
    pub mean_acc: f64,
    /// Sample standard deviation (n − 1) of the held-out accuracies.
    pub std_acc: f64,
    /// What the figures were computed from.
    pub provenance: StoredProvenance,
}
