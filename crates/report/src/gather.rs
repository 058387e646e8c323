//! Reading what the stages left in the artifacts folder: each method's model metadata,
//! history, metrics and evaluations, the bottleneck features' metadata and the k-fold results.
//!
//! A file that is absent is a stage not run yet (noted, not an error); a file that is present
//! but unreadable is an error naming it.

use std::path::{Path, PathBuf};

use artifact::{Metadata, Provenance};
use classify::EvalReport;
use engine::{EpochRecord, History};
use extract::{FeatureFile, FeatureMeta};
use models::ModelSpec;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use train_top::KFoldReport;

use crate::error::{ReportError, Result};
use crate::method::Method;

/// The folder, under a method's output folder, where `classify evaluate --json` results live.
pub const EVALUATION_DIR: &str = "evaluation";

/// What an artifact records about its making.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactInfo {
    /// The artifact file.
    pub path: PathBuf,
    /// Stage, settings digest and input digests (absent from foreign files).
    pub provenance: Option<Provenance>,
    /// When it was made (RFC 3339), when recorded.
    pub created: Option<String>,
}

impl ArtifactInfo {
    fn from_metadata(path: &Path, meta: &Metadata) -> Self {
        Self {
            path: path.to_path_buf(),
            provenance: Provenance::from_metadata(meta),
            created: meta.get(artifact::fresh::KEY_CREATED).cloned(),
        }
    }
}

/// One evaluation file (`classify evaluate --json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The file.
    pub path: PathBuf,
    /// Its contents.
    pub report: EvalReport,
}

/// The figures of a stage's own `metrics.json`, in one form for the three stages.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMetrics {
    /// Class names in label order.
    pub classes: Vec<String>,
    /// The device trained on, when the stage records it.
    pub device: Option<String>,
    /// `completed` or `early_stopped`.
    pub status: String,
    /// Epochs run.
    pub epochs: usize,
    /// The epoch whose weights the model holds (the best one by the monitored metric).
    pub saved_epoch: usize,
    /// Validation accuracy of the saved model.
    pub val_acc: f64,
    /// Validation loss of the saved model.
    pub val_loss: f64,
    /// The saved model's validation confusion matrix, `[actual][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Training images (or views) per epoch.
    pub train_samples: usize,
    /// Validation images.
    pub validation_samples: usize,
    /// Seconds of training as the stage measured them.
    pub seconds: Option<f64>,
    /// Stage-specific detail worth a line (the fine-tuning mode, augmented views).
    pub detail: Option<String>,
}

/// The keys of the three stages' `metrics.json` the report uses (each stage writes more;
/// see `train_small::Metrics`, `train_top::MetricsFile`, `finetune::MetricsFile`). Read by
/// key, so a stage that gains a key (or records one the others do) needs no change here.
#[derive(Debug, Deserialize)]
struct MetricsJson {
    classes: Vec<String>,
    #[serde(default)]
    device: Option<String>,
    status: String,
    #[serde(default)]
    epochs: Option<usize>,
    final_epoch: EpochRecord,
    saved_epoch: usize,
    saved_val_acc: f64,
    saved_val_loss: f64,
    confusion_matrix: Vec<Vec<usize>>,
    train_samples: usize,
    validation_samples: usize,
    /// `train-small`, `train-top`: seconds of the invocation.
    #[serde(default)]
    seconds: Option<f64>,
    /// `finetune`: seconds in the training loop.
    #[serde(default)]
    training_seconds: Option<f64>,
    /// `train-top`: trained on cached augmented views.
    #[serde(default)]
    use_augmented: bool,
    /// `finetune`: `view_cache` or `live`.
    #[serde(default)]
    mode: Option<String>,
    /// `finetune`: cached views per image.
    #[serde(default)]
    views: Option<usize>,
}

impl From<MetricsJson> for StageMetrics {
    fn from(m: MetricsJson) -> Self {
        let detail = match (&m.mode, m.views) {
            (Some(mode), Some(views)) => Some(format!(
                "{mode} mode: {views} cached augmented views per image through the frozen \
                 blocks 1–4"
            )),
            (Some(mode), None) => Some(format!("{mode} mode: fresh augmentation every batch")),
            _ => m
                .use_augmented
                .then(|| "trained on cached augmented views of the features".to_string()),
        };
        Self {
            classes: m.classes,
            device: m.device,
            status: m.status,
            epochs: m.epochs.unwrap_or(m.final_epoch.epoch),
            saved_epoch: m.saved_epoch,
            val_acc: m.saved_val_acc,
            val_loss: m.saved_val_loss,
            confusion_matrix: m.confusion_matrix,
            train_samples: m.train_samples,
            validation_samples: m.validation_samples,
            seconds: m.training_seconds.or(m.seconds),
            detail,
        }
    }
}

/// A method whose model exists.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRun {
    /// The method.
    pub method: Method,
    /// Its output folder.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub model: ArtifactInfo,
    /// The model spec (architecture, classes, image size, preprocessing).
    pub spec: ModelSpec,
    /// `history.json`, when present.
    pub history: Option<History>,
    /// `metrics.json`, when present.
    pub metrics: Option<StageMetrics>,
    /// `evaluation/validation.json`, when present and not older than the model.
    pub validation: Option<Evaluation>,
    /// `evaluation/test.json`, when present and not older than the model.
    pub test: Option<Evaluation>,
    /// What is missing or out of date, in sentences.
    pub notes: Vec<String>,
}

impl MethodRun {
    /// Seconds of training: the epochs' times from the history (so a resumed run counts
    /// every epoch), else the stage's own figure.
    pub fn training_seconds(&self) -> Option<f64> {
        match (&self.history, &self.metrics) {
            (Some(h), _) if !h.epochs.is_empty() => Some(h.epochs.iter().map(|r| r.seconds).sum()),
            (_, Some(m)) => m.seconds,
            _ => None,
        }
    }

    /// The epochs run: the history's length, else the stage's own figure.
    pub fn epochs(&self) -> Option<usize> {
        match (&self.history, &self.metrics) {
            (Some(h), _) if !h.epochs.is_empty() => Some(h.epochs.len()),
            (_, Some(m)) => Some(m.epochs),
            _ => None,
        }
    }
}

/// One of the three methods: trained, or what is missing.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodState {
    /// The model exists.
    Trained(Box<MethodRun>),
    /// No model yet.
    Missing {
        /// The method.
        method: Method,
        /// Whether a run started (a checkpoint exists) but did not finish.
        started: bool,
        /// Why, and what to run.
        reason: String,
    },
}

impl MethodState {
    /// The method.
    pub fn method(&self) -> Method {
        match self {
            MethodState::Trained(run) => run.method,
            MethodState::Missing { method, .. } => *method,
        }
    }

    /// The run, when the model exists.
    pub fn run(&self) -> Option<&MethodRun> {
        match self {
            MethodState::Trained(run) => Some(run),
            MethodState::Missing { .. } => None,
        }
    }
}

/// A bottleneck features file's description and provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturesInfo {
    /// Its provenance and creation time.
    pub artifact: ArtifactInfo,
    /// Its description (split, classes, settings, weights and data digests).
    pub meta: FeatureMeta,
}

/// Everything the report reads from one artifacts folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathered {
    /// The artifacts folder.
    pub artifacts: PathBuf,
    /// The three methods, in order.
    pub methods: Vec<MethodState>,
    /// The bottleneck features files present (train, validation, augmented train).
    pub features: Vec<FeaturesInfo>,
    /// `top/kfold.json`, when k-fold cross-validation was run.
    pub kfold: Option<(PathBuf, KFoldReport)>,
}

impl Gathered {
    /// The methods whose model exists.
    pub fn runs(&self) -> impl Iterator<Item = &MethodRun> {
        self.methods.iter().filter_map(MethodState::run)
    }
}

/// Reads a JSON file; `Ok(None)` when it does not exist, an error naming it when it cannot be
/// read or parsed.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::io(path, e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ReportError::Json {
            path: path.to_path_buf(),
            what,
            source,
        })
}

/// Reads everything the report uses from `artifacts`.
pub fn gather(artifacts: &Path) -> Result<Gathered> {
    let methods = Method::ALL
        .iter()
        .map(|&m| gather_method(m, artifacts))
        .collect::<Result<Vec<_>>>()?;
    let bottleneck = extract::bottleneck_dir(artifacts);
    let mut features = Vec::new();
    for file in FeatureFile::ALL {
        let path = extract::feature_path(&bottleneck, file, None);
        if !path.exists() {
            continue;
        }
        let (meta, raw) = FeatureMeta::read(&path)?;
        features.push(FeaturesInfo {
            artifact: ArtifactInfo::from_metadata(&path, &raw),
            meta,
        });
    }
    let kfold_path = train_top::kfold_path(artifacts);
    let kfold = read_json::<KFoldReport>(&kfold_path, "k-fold results")?.map(|k| (kfold_path, k));
    Ok(Gathered {
        artifacts: artifacts.to_path_buf(),
        methods,
        features,
        kfold,
    })
}

fn gather_method(method: Method, artifacts: &Path) -> Result<MethodState> {
    let dir = method.dir(artifacts);
    let model_path = dir.join(classify::MODEL_FILE);
    if !model_path.exists() {
        let started = dir.join("checkpoints").join("last.safetensors").exists();
        let reason = if started {
            format!(
                "a run started but did not finish (no `model.safetensors` yet): `{} --resume` \
                 continues it",
                method.recipe()
            )
        } else if method == Method::Top && !extract::bottleneck_dir(artifacts).exists() {
            "not run yet: run `just extract-bottlenecks`, then `just train-top`".to_string()
        } else {
            format!("not run yet: run `{}`", method.recipe())
        };
        return Ok(MethodState::Missing {
            method,
            started,
            reason,
        });
    }
    let meta = artifact::read_metadata(&model_path)?;
    let spec = ModelSpec::from_metadata(&meta, &model_path).map_err(|e| ReportError::Spec {
        path: model_path.clone(),
        source: Box::new(e),
    })?;
    let mut notes = Vec::new();
    let history = read_json::<History>(&dir.join("history.json"), "training history")?;
    if history.is_none() {
        notes.push("`history.json` is missing, so there are no training curves".to_string());
    }
    let metrics_path = dir.join("metrics.json");
    let metrics =
        read_json::<MetricsJson>(&metrics_path, "training metrics")?.map(StageMetrics::from);
    if metrics.is_none() {
        notes.push(format!(
            "`metrics.json` is missing; `{} --force` writes it again",
            method.recipe()
        ));
    }
    let model_time = modified(&model_path)?;
    let mut model_sha256: Option<String> = None;
    let mut evaluation = |name: &str| -> Result<Option<Evaluation>> {
        let path = dir.join(EVALUATION_DIR).join(format!("{name}.json"));
        let Some(report) = read_json::<EvalReport>(&path, "evaluation results")? else {
            return Ok(None);
        };
        // An evaluation that records the model's digest is current when the digest matches;
        // one that does not is current when it is newer than the model.
        let current = match &report.provenance {
            Some(p) => {
                if model_sha256.is_none() {
                    model_sha256 = Some(artifact::sha256_file(&model_path)?);
                }
                model_sha256.as_deref() == Some(p.model_sha256.as_str())
            }
            None => modified(&path)? >= model_time,
        };
        if !current {
            notes.push(format!(
                "{} is the evaluation of an earlier model and was left out; `just evaluate` \
                 evaluates this one",
                crate::markdown::code(&path.display().to_string())
            ));
            return Ok(None);
        }
        Ok(Some(Evaluation { path, report }))
    };
    let validation = evaluation("validation")?;
    let test = evaluation("test")?;
    Ok(MethodState::Trained(Box::new(MethodRun {
        method,
        model: ArtifactInfo::from_metadata(&model_path, &meta),
        dir,
        spec,
        history,
        metrics,
        validation,
        test,
        notes,
    })))
}

fn modified(path: &Path) -> Result<std::time::SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| ReportError::io(path, e))
}
