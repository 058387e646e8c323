//! What the training stages (`train-small`, `train-top`, `finetune`) share around [`fit`]: the
//! options every one takes, the freshness check that makes a rerun with nothing changed a
//! no-op, the fit settings of a pipeline section, keep-best reload, and the files of the output
//! folder (`metrics.json`, then `model.safetensors`, whose provenance marks the folder
//! complete).

use std::path::{Path, PathBuf};

use artifact::{Freshness, Metadata, Provenance};
use candle_core::Device;
use imagedata::Interpolation;
use models::{ModelSpec, Network};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::checkpoint::BestRecord;
use crate::config::{EarlyStopping, Metric, OptimizerConfig};
use crate::data::BatchSource;
use crate::error::{EngineError, Result};
use crate::flow_source::INTERPOLATION_KEY;
use crate::history::{EpochRecord, History};
use crate::interrupt::Interrupt;
use crate::params::Params;
use crate::progress::Verbosity;
use crate::train::{Evaluation, FitConfig, FitStatus, fit};

/// The keys of a training section (`[small_cnn]`, `[top]`, `[finetune]`) that drive [`fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Training epochs.
    pub epochs: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The metric that picks the best epoch (keep-best and early stopping).
    pub monitor: Metric,
    /// Stop after this many epochs without improvement of `monitor` (`None`: never).
    pub early_stopping_patience: Option<usize>,
}

impl Schedule {
    /// Early stopping on `monitor` after `early_stopping_patience` epochs without any
    /// improvement.
    pub fn early_stopping(&self) -> Option<EarlyStopping> {
        self.early_stopping_patience.map(|patience| EarlyStopping {
            monitor: self.monitor,
            patience,
            min_delta: 0.0,
        })
    }

    /// A [`FitConfig`] of these epochs and optimizer, seeded with `seed`, keeping the best
    /// epoch by `monitor` and stopping early as asked; it writes nothing and shows a progress
    /// bar until the caller says otherwise.
    pub fn fit_config(&self, seed: u64) -> FitConfig {
        let mut config = FitConfig::new(self.epochs, seed, self.optimizer.clone());
        config.keep_best = Some(self.monitor);
        config.early_stopping = self.early_stopping();
        config
    }
}

/// How to run a training stage, besides its pipeline file and its own flags.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Train even when the model is up to date.
    pub force: bool,
    /// Continue an interrupted (or shorter) run from `checkpoints/last.safetensors`.
    pub resume: bool,
    /// Where to train.
    pub device: Device,
    /// Console output of the training loop and the stage's notes.
    pub verbosity: Verbosity,
    /// A stop request checked after every batch.
    pub interrupt: Option<Interrupt>,
}

impl StageOptions {
    /// Defaults on `device`: no force, no resume, a progress bar, no stop request.
    pub fn new(device: Device) -> Self {
        Self {
            force: false,
            resume: false,
            device,
            verbosity: Verbosity::Bar,
            interrupt: None,
        }
    }

    /// `schedule`'s [`FitConfig`] for a run writing into `dir` (resuming when asked), with
    /// these options' console output and stop request; `weights_metadata` describes the model
    /// in its best-weights file.
    pub fn fit_config(
        &self,
        schedule: &Schedule,
        seed: u64,
        dir: &Path,
        weights_metadata: Metadata,
    ) -> FitConfig {
        let mut config = schedule.fit_config(seed);
        config.out_dir = Some(dir.to_path_buf());
        config.resume = self.resume;
        config.verbosity = self.verbosity;
        config.interrupt = self.interrupt.clone();
        config.weights_metadata = weights_metadata;
        config
    }

    /// Prints `text` unless the options ask for quiet.
    pub fn note(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            println!("{text}");
        }
    }
}

/// The metadata describing an image or feature model beside its weights: the model spec and,
/// for models that take images, the resize filter ([`INTERPOLATION_KEY`]).
pub fn spec_metadata(spec: &ModelSpec, interpolation: Option<Interpolation>) -> Metadata {
    let mut meta = Metadata::new();
    spec.insert_into(&mut meta);
    if let Some(interpolation) = interpolation {
        meta.insert(
            INTERPOLATION_KEY.into(),
            serde_json::to_string(&interpolation).unwrap_or_default(),
        );
    }
    meta
}

/// Why a stage must train `model`: `None` when its provenance matches `provenance` and `force`
/// is not set; otherwise `--force`, `no model yet`, or what changed.
pub fn retrain_reason(
    model: &Path,
    provenance: &Provenance,
    force: bool,
) -> Result<Option<String>> {
    Ok(match artifact::check_fresh(model, provenance)? {
        Freshness::UpToDate if !force => None,
        Freshness::UpToDate => Some("--force".into()),
        Freshness::Missing => Some("no model yet".into()),
        Freshness::Stale(why) => Some(why),
    })
}

/// Reads the JSON file at `path`; `None` when it is missing or does not parse as a `T`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `value` to `path` as pretty-printed JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let json = serde_json::to_string_pretty(value).map_err(|e| EngineError::output(path, e))?;
    artifact::atomic_write(path, json.as_bytes())?;
    Ok(())
}

/// A training stage's output folder and its result files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageDir {
    /// The folder (the engine's history, curves and checkpoints go there too).
    pub dir: PathBuf,
    /// `model.safetensors`: the saved weights, spec and provenance.
    pub model: PathBuf,
    /// `metrics.json`: the stage's figures.
    pub metrics: PathBuf,
}

impl StageDir {
    /// The result files of the output folder `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            model: dir.join("model.safetensors"),
            metrics: dir.join("metrics.json"),
            dir,
        }
    }

    /// The metrics an earlier run wrote (`None` when missing or unreadable).
    pub fn read_metrics<M: DeserializeOwned>(&self) -> Option<M> {
        read_json(&self.metrics)
    }

    /// Writes `metrics` to `metrics.json`, then `params` with `metadata` to
    /// `model.safetensors`: the model goes last, as its provenance marks the folder complete.
    pub fn save<M: Serialize>(
        &self,
        metrics: &M,
        params: &Params,
        metadata: &Metadata,
    ) -> Result<()> {
        write_json(&self.metrics, metrics)?;
        params.save(&self.model, metadata)
    }
}

/// What a training stage did; `M` is its `metrics.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome<M> {
    /// The model was up to date; its metrics, when `metrics.json` could be read.
    UpToDate(Option<M>),
    /// A model was trained.
    Trained(M),
    /// A stop was requested during training; a checkpoint to resume from was saved, no model
    /// was written.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

/// What a stage binary prints after training into `dir`: that it wrote `model.safetensors` and
/// `metrics.json` there, with their paths.
pub fn written_message(dir: &Path) -> String {
    let out = StageDir::new(dir.to_path_buf());
    format!(
        "wrote {} and {}",
        out.model.display(),
        out.metrics.display()
    )
}

/// What a stage binary prints after a stop request.
pub fn interrupted_message(epoch: usize, batch: usize) -> String {
    format!("interrupted in epoch {epoch} after batch {batch}; continue with --resume")
}

/// How a stage's training run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StageFit {
    /// Every epoch ran, or early stopping ended the run.
    Finished(Fitted),
    /// A stop was requested; the run saved a checkpoint to resume from.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

/// A finished run, its parameters holding the weights to save: the best epoch's when
/// keep-best saved them, else the last epoch's.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// `completed` or `early_stopped`.
    pub status: &'static str,
    /// Every epoch's figures (those before a resume included).
    pub history: History,
    /// The last epoch's figures.
    pub final_epoch: EpochRecord,
    /// The best epoch by the keep-best metric.
    pub best: Option<BestRecord>,
    /// The epoch whose weights the parameters hold.
    pub saved_epoch: usize,
}

impl Fitted {
    /// The summary of the run, with `evaluation` the saved weights' validation scores.
    pub fn summary(&self, evaluation: &Evaluation) -> FitSummary {
        FitSummary {
            final_epoch: self.final_epoch.clone(),
            best: self.best,
            saved_epoch: self.saved_epoch,
            saved_val_loss: evaluation.loss,
            saved_val_acc: evaluation.acc,
            confusion_matrix: evaluation.confusion_matrix(),
        }
    }
}

/// Runs [`fit`] with `config` (which must name an output folder for keep-best to save into),
/// validating on `validation` every epoch, and when the run finishes loads the best epoch's
/// weights back into `params`.
pub fn fit_keep_best(
    network: &dyn Network,
    params: &Params,
    train: &mut dyn BatchSource,
    validation: &mut dyn BatchSource,
    config: &FitConfig,
) -> Result<StageFit> {
    let outcome = fit(network, params, train, Some(validation), config)?;
    let status = match outcome.status {
        FitStatus::Interrupted { epoch, batch } => {
            return Ok(StageFit::Interrupted { epoch, batch });
        }
        FitStatus::Completed => "completed",
        FitStatus::EarlyStopped { .. } => "early_stopped",
    };
    let final_epoch = outcome
        .history
        .last()
        .cloned()
        .ok_or_else(|| EngineError::Data {
            what: "training".into(),
            reason: "no epoch ran".into(),
        })?;
    let saved_epoch = match (&outcome.best, &outcome.paths) {
        (Some(best), Some(paths)) if paths.best_weights.exists() => {
            params.load(&paths.best_weights)?;
            best.epoch
        }
        _ => final_epoch.epoch,
    };
    Ok(StageFit::Finished(Fitted {
        status,
        history: outcome.history,
        final_epoch,
        best: outcome.best,
        saved_epoch,
    }))
}

/// What every stage's `metrics.json` says about the run and the saved model (flattened into
/// it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    /// The last epoch's figures.
    pub final_epoch: EpochRecord,
    /// The best epoch by the monitored metric.
    pub best: Option<BestRecord>,
    /// The epoch whose weights `model.safetensors` holds (the best one).
    pub saved_epoch: usize,
    /// Validation loss of the saved model.
    pub saved_val_loss: f64,
    /// Validation accuracy of the saved model.
    pub saved_val_acc: f64,
    /// The saved model's validation confusion matrix, `[true][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
}

impl FitSummary {
    /// `final epoch 3: loss: … - acc: … - val_loss: … - val_acc: …`.
    pub fn final_line(&self) -> String {
        format!(
            "final epoch {}: {}",
            self.final_epoch.epoch,
            self.final_epoch.metrics_line()
        )
    }

    /// `saved the weights of epoch 2 (best val_acc): val_acc 0.7500, val_loss 0.6805 on 12
    /// validation images; confusion matrix [[6, 0], [3, 3]]`.
    pub fn saved_line(&self, validation_samples: usize) -> String {
        format!(
            "saved the weights of epoch {} ({}): val_acc {:.4}, val_loss {:.4} on {} validation \
             images; confusion matrix {:?}",
            self.saved_epoch,
            self.best
                .map(|b| format!("best {}", b.metric))
                .unwrap_or_else(|| "last epoch".into()),
            self.saved_val_acc,
            self.saved_val_loss,
            validation_samples,
            self.confusion_matrix
        )
    }

    /// The saved model's metadata: `metadata` (its spec), `provenance`, and the saved epoch
    /// and its validation accuracy and loss as `<prefix>.epoch`, `<prefix>.val_acc` and
    /// `<prefix>.val_loss`.
    pub fn model_metadata(
        &self,
        mut metadata: Metadata,
        provenance: &Provenance,
        prefix: &str,
    ) -> Metadata {
        metadata.extend(provenance.to_metadata());
        metadata.insert(format!("{prefix}.epoch"), self.saved_epoch.to_string());
        metadata.insert(format!("{prefix}.val_acc"), self.saved_val_acc.to_string());
        metadata.insert(
            format!("{prefix}.val_loss"),
            self.saved_val_loss.to_string(),
        );
        metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Metrics {
        classes: Vec<String>,
        status: String,
        #[serde(flatten)]
        summary: FitSummary,
        seconds: f64,
    }

    fn summary() -> FitSummary {
        FitSummary {
            final_epoch: EpochRecord {
                epoch: 3,
                loss: 0.25,
                acc: 0.875,
                val_loss: Some(0.5),
                val_acc: Some(0.75),
                seconds: 1.5,
                lr: 1e-3,
            },
            best: Some(BestRecord {
                metric: Metric::ValAcc,
                value: 0.8,
                epoch: 2,
            }),
            saved_epoch: 2,
            saved_val_loss: 0.45,
            saved_val_acc: 0.8,
            confusion_matrix: vec![vec![3, 1], vec![0, 4]],
        }
    }

    #[test]
    fn a_flattened_summary_keeps_the_keys_in_place_and_reads_back() {
        let m = Metrics {
            classes: vec!["cats".into(), "dogs".into()],
            status: "completed".into(),
            summary: summary(),
            seconds: 2.0,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.json");
        write_json(&path, &m).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  \""))
            .map(|l| l.trim().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "classes",
                "status",
                "final_epoch",
                "best",
                "saved_epoch",
                "saved_val_loss",
                "saved_val_acc",
                "confusion_matrix",
                "seconds"
            ]
        );
        assert!(text.contains("\"metric\": \"val_acc\""), "{text}");
        assert_eq!(read_json::<Metrics>(&path), Some(m));
        assert_eq!(read_json::<Metrics>(&dir.path().join("missing.json")), None);
    }

    #[test]
    fn summary_lines_and_model_metadata() {
        let s = summary();
        assert_eq!(
            s.saved_line(8),
            "saved the weights of epoch 2 (best val_acc): val_acc 0.8000, val_loss 0.4500 on 8 \
             validation images; confusion matrix [[3, 1], [0, 4]]"
        );
        assert!(s.final_line().starts_with("final epoch 3: loss: 0.2500"));
        let meta = s.model_metadata(
            Metadata::from([("a".to_string(), "b".to_string())]),
            &Provenance::new("stage", "digest"),
            "top",
        );
        assert_eq!(meta["a"], "b");
        assert_eq!(meta["top.epoch"], "2");
        assert_eq!(meta["top.val_acc"], "0.8");
        assert_eq!(meta["top.val_loss"], "0.45");
        assert_eq!(meta[artifact::fresh::KEY_STAGE], "stage");
    }

    #[test]
    fn a_schedule_keeps_the_best_and_stops_early_on_its_monitor() {
        let schedule = Schedule {
            epochs: 5,
            optimizer: OptimizerConfig::rmsprop(),
            monitor: Metric::ValLoss,
            early_stopping_patience: Some(2),
        };
        let options = StageOptions::new(Device::Cpu);
        let config = options.fit_config(&schedule, 9, Path::new("out"), Metadata::new());
        assert_eq!((config.epochs, config.seed), (5, 9));
        assert_eq!(config.keep_best, Some(Metric::ValLoss));
        assert_eq!(
            config.early_stopping,
            Some(EarlyStopping {
                monitor: Metric::ValLoss,
                patience: 2,
                min_delta: 0.0
            })
        );
        assert_eq!(config.out_dir.as_deref(), Some(Path::new("out")));
        assert!(!config.resume);
    }

    #[test]
    fn retraining_is_asked_for_missing_forced_and_changed_models() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.safetensors");
        let provenance = Provenance::new("stage", "digest").input("data", "d1");
        assert_eq!(
            retrain_reason(&model, &provenance, false)
                .unwrap()
                .as_deref(),
            Some("no model yet")
        );
        let t = candle_core::Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        artifact::save(&model, [("x", &t)], &provenance.to_metadata()).unwrap();
        assert_eq!(retrain_reason(&model, &provenance, false).unwrap(), None);
        assert_eq!(
            retrain_reason(&model, &provenance, true)
                .unwrap()
                .as_deref(),
            Some("--force")
        );
        let changed = provenance.clone().input("data", "d2");
        assert_eq!(
            retrain_reason(&model, &changed, false).unwrap().as_deref(),
            Some("input `data` changed")
        );
    }
}
