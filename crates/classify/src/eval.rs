//! `classify evaluate`: accuracy, loss, confusion matrix and per-class precision, recall and
//! F1 of a model on a labelled folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use engine::{BatchIter, BatchSource, Evaluation, FlowSource};
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::cache::EvalProvenance;
use crate::error::{ClassifyError, Result};
use crate::model::LoadedModel;

/// The smallest probability the test-time-augmented loss takes the logarithm of (Keras'
/// `epsilon`), so that a confidently wrong prediction gives a large, finite loss.
const PROBABILITY_FLOOR: f64 = 1e-7;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images per forward batch.
    pub batch_size: usize,
    /// Average each image's probabilities with its left-right mirror's.
    pub tta: bool,
    /// Progress bars on stderr (when it is a terminal).
    pub progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            tta: false,
            progress: true,
        }
    }
}

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

/// Checks that the class subfolders of `data` are the model's classes.
pub fn check_classes(data: &Path, model: &LoadedModel) -> Result<()> {
    let found = imagedata::folder::list_class_dirs(data)?;
    let expected = &model.spec.classes;
    if &found == expected {
        return Ok(());
    }
    let missing: Vec<&String> = expected.iter().filter(|c| !found.contains(c)).collect();
    let extra: Vec<&String> = found.iter().filter(|c| !expected.contains(c)).collect();
    let mut detail = Vec::new();
    if !missing.is_empty() {
        detail.push(format!("no folder for {missing:?}"));
    }
    if !extra.is_empty() {
        detail.push(format!("folders the model does not know: {extra:?}"));
    }
    Err(ClassifyError::ClassMismatch {
        path: data.to_path_buf(),
        reason: format!(
            "its classes {found:?} differ from the model's {expected:?} ({}): {}",
            model.path.display(),
            detail.join("; ")
        ),
    })
}

/// A batch source that advances a progress bar by each batch's size.
struct Counted<'a> {
    inner: &'a mut FlowSource,
    bar: &'a ProgressBar,
}

impl BatchSource for Counted<'_> {
    fn num_samples(&self) -> usize {
        self.inner.num_samples()
    }

    fn num_batches(&self) -> usize {
        self.inner.num_batches()
    }

    fn epoch(&mut self, epoch: usize) -> engine::Result<BatchIter<'_>> {
        let bar = self.bar;
        Ok(Box::new(self.inner.epoch(epoch)?.inspect(move |b| {
            if let Ok(b) = b {
                bar.inc(b.len() as u64);
            }
        })))
    }
}

fn bar(show: bool, len: usize, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos:>6}/{len:6} images  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64).with_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}

/// The loss, accuracy and predictions with test-time augmentation: each image's probabilities
/// are the mean of its own and its mirror's; the loss is the cross-entropy of those means.
fn evaluate_tta(model: &LoadedModel, source: &mut dyn BatchSource) -> Result<Evaluation> {
    let classes = model.spec.classes.len();
    let mut out = Evaluation {
        loss: 0.0,
        acc: 0.0,
        classes,
        labels: Vec::new(),
        predicted: Vec::new(),
        probabilities: Vec::new(),
    };
    let mut loss_sum = 0.0f64;
    for batch in source.epoch(0)? {
        let batch = batch?;
        let labels = batch.labels.to_vec1::<u32>()?;
        let rows = model.probabilities(&batch.x, true)?.to_vec2::<f32>()?;
        for (row, &label) in rows.iter().zip(&labels) {
            let p = row.get(label as usize).copied().unwrap_or(0.0);
            loss_sum -= f64::from(p).max(PROBABILITY_FLOOR).ln();
            out.predicted.push(argmax(row) as u32);
        }
        out.labels.extend(labels);
        out.probabilities.extend(rows);
    }
    let n = out.labels.len();
    if n == 0 {
        return Err(engine::EngineError::Data {
            what: "evaluation data".into(),
            reason: "no samples".into(),
        }
        .into());
    }
    let correct = out
        .labels
        .iter()
        .zip(&out.predicted)
        .filter(|(a, b)| a == b)
        .count();
    out.loss = loss_sum / n as f64;
    out.acc = correct as f64 / n as f64;
    Ok(out)
}

/// The index of the largest value (the first on ties).
pub(crate) fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv { (i, v) } else { (bi, bv) }
        })
        .0
}

/// Evaluates `model` on the labelled folder `data` (one subfolder per class, the model's
/// classes exactly), resizing and preprocessing the images as the artifact records.
///
/// An image that cannot be decoded is an error naming it: scores over a silently smaller set
/// would not be comparable.
pub fn evaluate(model: &LoadedModel, data: &Path, options: &EvalOptions) -> Result<EvalReport> {
    check_classes(data, model)?;
    let spec = &model.spec;
    let generator = ImageDataGenerator::preprocessing_only(spec.preprocessing);
    let directory = DirectoryOptions {
        target_size: model.target_size(),
        interpolation: model.interpolation,
        class_mode: ClassMode::Categorical,
        classes: Some(spec.classes.clone()),
        ..DirectoryOptions::default()
    };
    let flow_options = FlowOptions {
        batch_size: options.batch_size.max(1),
        shuffle: false,
        device: model.device.clone(),
        ..FlowOptions::default()
    };
    let loading = bar(options.progress, 0, "loading");
    let on_progress = |p: Progress| {
        loading.set_length(p.total as u64);
        loading.set_position(p.done as u64);
    };
    let loaded = generator.flow_from_directory(data, &directory, flow_options, Some(&on_progress));
    loading.finish_and_clear();
    let (flow, _) = loaded?;
    let mut source = FlowSource::new(flow)?;
    let paths = source.flow().image_set().paths().to_vec();
    let running = bar(options.progress, source.num_samples(), "classifying");
    let evaluation = {
        let mut counted = Counted {
            inner: &mut source,
            bar: &running,
        };
        if options.tta {
            evaluate_tta(model, &mut counted)
        } else {
            engine::evaluate(&model.model, &mut counted).map_err(ClassifyError::from)
        }
    };
    running.finish_and_clear();
    let evaluation = evaluation?;
    Ok(report(model, data, options.tta, &evaluation, &paths))
}

/// The report of an evaluation over the images `paths` (in the evaluation's order).
fn report(
    model: &LoadedModel,
    data: &Path,
    tta: bool,
    e: &Evaluation,
    paths: &[PathBuf],
) -> EvalReport {
    let classes = model.spec.classes.clone();
    let confusion_matrix = e.confusion_matrix();
    let (per_class, macro_avg, weighted_avg) = class_scores(&classes, &confusion_matrix);
    let name = |i: u32| classes.get(i as usize).cloned().unwrap_or_default();
    let mistakes = e
        .labels
        .iter()
        .zip(&e.predicted)
        .enumerate()
        .filter(|(_, (t, p))| t != p)
        .map(|(i, (&t, &p))| Mistake {
            image: paths.get(i).cloned().unwrap_or_default(),
            actual: name(t),
            predicted: name(p),
            probability: e
                .probabilities
                .get(i)
                .and_then(|r| r.get(p as usize))
                .copied()
                .unwrap_or(0.0),
        })
        .collect();
    let correct = e.labels.len()
        - e.labels
            .iter()
            .zip(&e.predicted)
            .filter(|(t, p)| t != p)
            .count();
    EvalReport {
        model: model.path.clone(),
        architecture: model.spec.architecture.name().into(),
        data: data.to_path_buf(),
        classes,
        tta,
        samples: e.labels.len(),
        correct,
        accuracy: e.acc,
        loss: e.loss,
        confusion_matrix,
        per_class,
        macro_avg,
        weighted_avg,
        mistakes,
        provenance: None,
    }
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
