//! Reading what the stages left in the artifacts folder: each method's model metadata,
//! history, metrics and evaluations, the bottleneck features' metadata, the k-fold results
//! and the audit of the photos.
//!
//! A file that is absent is a stage not run yet (noted, not an error); a file that is present
//! but unreadable is an error naming it. A calibration fitted for another model file is kept
//! as [`CalibrationState::Stale`] (reported with the command that fits this one), not used.

use std::path::{Path, PathBuf};

use artifact::{Metadata, Provenance};
use engine::History;
use features::{FeatureFile, FeatureMeta, feature_path};
use models::ModelSpec;
use pipeline::{Layout, layout};
use serde::de::DeserializeOwned;
use stage::calibration::Lookup;
use stage::{Calibration, EvalReport, KFoldReport, Metrics};

use crate::error::{ReportError, Result};
use crate::method::Method;

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

/// A line about how a stage trained, from the details its `metrics.json` records (the
/// fine-tuning mode and views, augmented features), when it recorded any worth a line.
pub fn detail(m: &Metrics) -> Option<String> {
    let get = |k: &str| m.details.get(k);
    match (
        get("mode").and_then(|v| v.as_str()),
        get("views").and_then(|v| v.as_u64()),
    ) {
        (Some(mode), Some(views)) => Some(format!(
            "{mode} mode: {views} cached augmented views per image through the frozen part"
        )),
        (Some(mode), None) => Some(format!("{mode} mode: fresh augmentation every batch")),
        _ => get("use_augmented")
            .and_then(|v| v.as_bool())
            .filter(|&a| a)
            .map(|_| "trained on cached augmented views of the features".to_string()),
    }
}

/// A method's calibration (`calibration.safetensors` beside its model, written by
/// `classify calibrate`).
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrationState {
    /// No calibration file.
    Missing,
    /// A calibration fitted for another model file (an earlier model): left out.
    Stale {
        /// The calibration file.
        path: PathBuf,
        /// sha256 of the model file it was fitted for.
        fitted_for: String,
        /// sha256 of the model file there now.
        model_sha256: String,
    },
    /// The calibration of this model.
    Fitted {
        /// The calibration file, with its provenance.
        artifact: ArtifactInfo,
        /// What it fitted and measured.
        calibration: Box<Calibration>,
    },
}

impl CalibrationState {
    /// The calibration, when it was fitted for this model.
    pub fn fitted(&self) -> Option<&Calibration> {
        match self {
            CalibrationState::Fitted { calibration, .. } => Some(calibration),
            _ => None,
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
    pub metrics: Option<Metrics>,
    /// `evaluation/validation.json`, when present and not older than the model.
    pub validation: Option<Evaluation>,
    /// `evaluation/test.json`, when present and not older than the model.
    pub test: Option<Evaluation>,
    /// `calibration.safetensors`: absent, stale or this model's.
    pub calibration: CalibrationState,
    /// What is missing or out of date, in sentences.
    pub notes: Vec<String>,
}

impl MethodRun {
    /// Seconds of training: the epochs' times from the history (so a resumed run counts
    /// every epoch), else the stage's own figure.
    pub fn training_seconds(&self) -> Option<f64> {
        match (&self.history, &self.metrics) {
            (Some(h), _) if !h.epochs.is_empty() => Some(h.epochs.iter().map(|r| r.seconds).sum()),
            (_, Some(m)) => Some(m.seconds),
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
    /// `audit/audit.json`, when the photos were audited.
    pub audit: Option<crate::audit::AuditInfo>,
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

/// Reads everything the report uses from `artifacts` (`audit/audit.json` with
/// [`crate::audit::read`]).
pub fn gather(artifacts: &Path) -> Result<Gathered> {
    let methods = Method::ALL
        .iter()
        .map(|&m| gather_method(m, artifacts))
        .collect::<Result<Vec<_>>>()?;
    let layout = Layout::new(artifacts);
    let bottleneck = layout.bottleneck();
    let mut features = Vec::new();
    for file in FeatureFile::ALL {
        let path = feature_path(&bottleneck, file, None);
        if !path.exists() {
            continue;
        }
        let (meta, raw) = FeatureMeta::read(&path)?;
        features.push(FeaturesInfo {
            artifact: ArtifactInfo::from_metadata(&path, &raw),
            meta,
        });
    }
    let kfold_path = layout.kfold();
    let kfold = read_json::<KFoldReport>(&kfold_path, "k-fold results")?.map(|k| (kfold_path, k));
    Ok(Gathered {
        artifacts: artifacts.to_path_buf(),
        methods,
        features,
        kfold,
        audit: crate::audit::read(artifacts)?,
    })
}

fn gather_method(method: Method, artifacts: &Path) -> Result<MethodState> {
    let layout = Layout::new(artifacts);
    let dir = method.dir(&layout);
    let model_path = dir.join(layout::MODEL_FILE);
    if !model_path.exists() {
        let started = dir.join("checkpoints").join("last.safetensors").exists();
        let reason = if started {
            format!(
                "a run started but did not finish (no `model.safetensors` yet): `{} --resume` \
                 continues it",
                method.recipe()
            )
        } else if method == Method::Top && !layout.bottleneck().exists() {
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
    let metrics_path = dir.join(layout::METRICS_FILE);
    let metrics = read_json::<Metrics>(&metrics_path, "training metrics")?;
    if metrics.is_none() {
        notes.push(format!(
            "`metrics.json` is missing; `{} --force` writes it again",
            method.recipe()
        ));
    }
    let model_time = modified(&model_path)?;
    let mut model_sha256: Option<String> = None;
    let mut evaluation = |name: &str| -> Result<Option<Evaluation>> {
        let path = Layout::evaluation(&dir, name);
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
                crate::text::code(&path.display().to_string())
            ));
            return Ok(None);
        }
        Ok(Some(Evaluation { path, report }))
    };
    let validation = evaluation("validation")?;
    let test = evaluation("test")?;
    let calibration = read_calibration(&model_path, &mut model_sha256)?;
    Ok(MethodState::Trained(Box::new(MethodRun {
        method,
        model: ArtifactInfo::from_metadata(&model_path, &meta),
        dir,
        spec,
        history,
        metrics,
        validation,
        test,
        calibration,
        notes,
    })))
}

/// The calibration beside the model file `model_path`; `model_sha256` is the model file's
/// digest when already computed (it is computed here when a calibration needs it).
fn read_calibration(
    model_path: &Path,
    model_sha256: &mut Option<String>,
) -> Result<CalibrationState> {
    let path = stage::calibration_file(model_path);
    if !path.exists() {
        return Ok(CalibrationState::Missing);
    }
    let sha = match model_sha256 {
        Some(sha) => sha.clone(),
        None => {
            let sha = artifact::sha256_file(model_path)?;
            *model_sha256 = Some(sha.clone());
            sha
        }
    };
    let found = Calibration::lookup(model_path, &sha).map_err(|e| ReportError::Calibration {
        path: path.clone(),
        source: Box::new(e),
    })?;
    Ok(match found {
        Lookup::Missing => CalibrationState::Missing,
        Lookup::Stale { path, fitted_for } => CalibrationState::Stale {
            path,
            fitted_for,
            model_sha256: sha,
        },
        Lookup::Fitted {
            path,
            calibration,
            metadata,
        } => CalibrationState::Fitted {
            artifact: ArtifactInfo::from_metadata(&path, &metadata),
            calibration,
        },
    })
}

fn modified(path: &Path) -> Result<std::time::SystemTime> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| ReportError::io(path, e))
}
