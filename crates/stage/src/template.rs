//! The one stage template the three training stages (`train-small`, `train-top`, `finetune`)
//! fill in: scan → provenance and freshness → build → fit → keep-best → evaluate → metrics →
//! save.
//!
//! A stage implements [`Trainer`]: [`Trainer::plan`] says what the model is made from (its
//! spec, settings, schedule and input digests) without reading anything heavy, and
//! [`Trainer::build`] makes the network, its parameters and the training and validation
//! sources. [`run`] does the rest the same way for every stage: the freshness check that makes
//! a rerun with nothing changed a no-op, the resume identity, the training loop with keep-best,
//! the evaluation of the saved weights, `metrics.json`, then `model.safetensors`, whose
//! provenance marks the folder complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::{Freshness, Metadata, Provenance};
use candle_core::Device;
use engine::{
    BatchSource, FitConfig, FitStatus, INTERPOLATION_KEY, Interrupt, Params, RunInputs, Verbosity,
};
use imagedata::{ClassMode, Interpolation};
use models::{ModelSpec, Network};
use pipeline::{Layout, Pipeline, Schedule, layout};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Result, StageError};
use crate::metrics::{Metrics, Timing, summarize};

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

    /// Prints `text` unless the options ask for quiet.
    pub fn note(&self, text: &str) {
        if self.verbosity != Verbosity::Quiet {
            println!("{text}");
        }
    }

    /// Whether progress bars and notes are shown.
    pub fn progress(&self) -> bool {
        self.verbosity != Verbosity::Quiet
    }
}

/// What a model is made from, known before anything heavy is read.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The model the stage trains.
    pub spec: ModelSpec,
    /// `binary` or `categorical` (see [`crate::class_mode`]).
    pub class_mode: ClassMode,
    /// The resize filter of the images the model sees (recorded in the model's metadata).
    pub interpolation: Interpolation,
    /// Epochs, optimizer, monitor and early stopping.
    pub schedule: Schedule,
    /// Samples per batch.
    pub batch_size: usize,
    /// Every other setting that determines the model (without the schedule's keys: the
    /// template adds those).
    pub settings: serde_json::Value,
    /// The digests of what the model is made from (data, features, weights, upstream
    /// models), by name.
    pub inputs: Vec<(String, String)>,
}

impl Plan {
    /// The model's provenance under `stage` with `seed`: the settings with the whole schedule,
    /// and the inputs.
    pub fn provenance(&self, stage: &str, seed: u64) -> Provenance {
        let digest = artifact::sha256_json(&serde_json::json!({
            "seed": seed,
            "settings": self.settings,
            "epochs": self.schedule.epochs,
            "optimizer": self.schedule.optimizer,
            "monitor": self.schedule.monitor,
            "early_stopping_patience": self.schedule.early_stopping_patience,
        }));
        self.inputs
            .iter()
            .fold(Provenance::new(stage, digest), |p, (name, digest)| {
                p.input(name, digest)
            })
    }

    /// What a checkpoint must have been made from to be resumed: the provenance less the
    /// keys a resumed run may change (epochs, early stopping, monitor).
    pub fn run_inputs(&self, seed: u64) -> RunInputs {
        let mut settings = match &self.settings {
            serde_json::Value::Object(map) => map.clone(),
            other => serde_json::Map::from_iter([("settings".to_string(), other.clone())]),
        };
        settings.insert("seed".into(), seed.into());
        settings.insert(
            "optimizer".into(),
            serde_json::to_value(&self.schedule.optimizer).unwrap_or_default(),
        );
        RunInputs {
            settings: serde_json::Value::Object(settings),
            inputs: self.inputs.iter().cloned().collect(),
        }
    }
}

/// The network a stage trains, with what it trains on.
pub struct Built {
    /// The network, on what the sources yield.
    pub network: Box<dyn Network>,
    /// Its parameters (the trainable ones are trained and saved).
    pub params: Params,
    /// The training batches.
    pub train: Box<dyn BatchSource>,
    /// The validation batches.
    pub validation: Box<dyn BatchSource>,
    /// What the stage adds to `metrics.json` of its own.
    pub details: BTreeMap<String, serde_json::Value>,
}

/// A training stage: what varies between `train-small`, `train-top` and `finetune`.
pub trait Trainer {
    /// The stage name recorded in the model's provenance.
    const STAGE: &'static str;
    /// The prefix of the saved epoch's metadata keys (`<KEY>.epoch`, `<KEY>.val_acc`).
    const KEY: &'static str;

    /// The stage's output folder in `layout`.
    fn dir(layout: &Layout) -> PathBuf;

    /// Scans the inputs: what the model is made from.
    fn plan(&mut self, pipeline: &Pipeline, options: &StageOptions) -> Result<Plan>;

    /// Builds the network, its parameters and the sources (`reason`: why it trains).
    fn build(
        &mut self,
        pipeline: &Pipeline,
        plan: &Plan,
        options: &StageOptions,
        reason: &str,
    ) -> Result<Built>;
}

/// What a training stage did.
#[derive(Debug, Clone, PartialEq)]
pub enum StageOutcome {
    /// The model was up to date; its metrics, when `metrics.json` could be read.
    UpToDate(Option<Metrics>),
    /// A model was trained.
    Trained(Metrics),
    /// A stop was requested during training; a checkpoint to resume from was saved, no model
    /// was written.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

/// A training stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct StageReport {
    /// The output folder.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub model: PathBuf,
    /// Why the model was (re)trained (`no model yet`, what changed, `--force`); `None` when
    /// it was up to date.
    pub reason: Option<String>,
    /// What happened.
    pub outcome: StageOutcome,
}

impl StageReport {
    /// Prints what happened: the saved model's figures and `up to date`; or the interruption
    /// and how to continue; or the last epoch, the saved epoch, the epoch times and what was
    /// written.
    pub fn print(&self) {
        let saved = |m: &Metrics| {
            println!(
                "{} (rows: true {}, columns: predicted)",
                m.summary.saved_line(m.validation_samples),
                m.classes.join(", ")
            );
        };
        match &self.outcome {
            StageOutcome::UpToDate(metrics) => {
                if let Some(m) = metrics {
                    saved(m);
                }
                println!("{}: up to date", self.model.display());
            }
            StageOutcome::Interrupted { epoch, batch } => {
                println!("{}", interrupted_message(*epoch, *batch));
            }
            StageOutcome::Trained(m) => {
                println!("{}", m.summary.final_line());
                saved(m);
                if let Some(t) = &m.timing {
                    println!(
                        "{} epochs: {:.1} s per epoch ({:.1} s training, {:.1} s validation), \
                         {:.1} training samples/s, {:.1} validation samples/s, on {}",
                        t.epochs,
                        t.seconds_per_epoch,
                        t.train_seconds_per_epoch,
                        t.validation_seconds_per_epoch,
                        t.train_samples_per_second,
                        t.validation_samples_per_second,
                        m.device
                    );
                }
                println!(
                    "prepared in {:.1} s; total {:.1} s; {}",
                    m.prepare_seconds,
                    m.seconds,
                    written_message(&self.dir)
                );
            }
        }
    }

    /// The metrics of the model, trained now or up to date.
    pub fn metrics(&self) -> Option<&Metrics> {
        match &self.outcome {
            StageOutcome::Trained(m) | StageOutcome::UpToDate(Some(m)) => Some(m),
            _ => None,
        }
    }
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
            model: dir.join(layout::MODEL_FILE),
            metrics: dir.join(layout::METRICS_FILE),
            dir,
        }
    }

    /// The metrics an earlier run wrote (`None` when missing or unreadable).
    pub fn read_metrics(&self) -> Option<Metrics> {
        read_json(&self.metrics)
    }
}

/// The metadata describing a model beside its weights: its spec and the resize filter of its
/// images ([`INTERPOLATION_KEY`]).
pub fn spec_metadata(spec: &ModelSpec, interpolation: Interpolation) -> Metadata {
    let mut meta = Metadata::new();
    spec.insert_into(&mut meta);
    meta.insert(
        INTERPOLATION_KEY.into(),
        serde_json::to_string(&interpolation).unwrap_or_default(),
    );
    meta
}

/// Whether `out`'s checkpoint holds a run that did not reach the end the saved model's
/// `metrics` record (an epoch cut short, or another number of epochs).
fn unfinished(out: &StageDir, metrics: Option<&Metrics>) -> bool {
    match engine::checkpoint_progress(&engine::OutputPaths::new(&out.dir).checkpoint) {
        Some((_, true)) => true,
        Some((epochs, false)) => metrics.is_none_or(|m| m.epochs != epochs),
        None => false,
    }
}

/// Why a stage must redo `artifact`: `None` when its provenance matches `provenance` and
/// `force` is not set; otherwise `--force`, `no model yet`, or what changed (a damaged file
/// counts as changed).
pub fn redo_reason(
    artifact: &Path,
    provenance: &Provenance,
    force: bool,
) -> Result<Option<String>> {
    Ok(match artifact::check_fresh(artifact, provenance)? {
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
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| StageError::Settings(format!("{}: cannot encode: {e}", path.display())))?;
    artifact::atomic_write(path, json.as_bytes())?;
    Ok(())
}

/// What a stage binary prints after training into `dir`.
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

/// Runs a training stage: unless its model is up to date with what [`Trainer::plan`] says it
/// is made from (or `options.force`), builds it, trains it with keep-best on the plan's
/// monitor, evaluates the saved weights on the validation data, and writes `metrics.json` and
/// `model.safetensors`.
pub fn run<T: Trainer>(
    trainer: &mut T,
    pipeline: &Pipeline,
    options: &StageOptions,
) -> Result<StageReport> {
    let started = Instant::now();
    let out = StageDir::new(T::dir(&pipeline.layout()));
    for dir in [
        out.dir.clone(),
        out.dir.join("checkpoints"),
        out.dir.join(pipeline::layout::EVALUATION_DIR),
    ] {
        artifact::remove_stale_temps(&dir, None)?;
    }
    let plan = trainer.plan(pipeline, options)?;
    let seed = pipeline.data.seed;
    let provenance = plan.provenance(T::STAGE, seed);
    let report = |reason, outcome| StageReport {
        dir: out.dir.clone(),
        model: out.model.clone(),
        reason,
        outcome,
    };
    // An up-to-date model stays as it is, even with --resume, unless the checkpoint holds a
    // later run that stopped before its end (a forced rerun that was interrupted).
    let reason = match redo_reason(&out.model, &provenance, options.force)? {
        Some(reason) => reason,
        None => match (options.resume, out.read_metrics()) {
            (true, metrics) if unfinished(&out, metrics.as_ref()) => {
                "--resume: continuing the interrupted run".into()
            }
            (_, metrics) => return Ok(report(None, StageOutcome::UpToDate(metrics))),
        },
    };
    let mut built = trainer.build(pipeline, &plan, options, &reason)?;
    let prepare_seconds = started.elapsed().as_secs_f64();

    let spec_meta = spec_metadata(&plan.spec, plan.interpolation);
    let mut config = FitConfig::from_schedule(&plan.schedule, seed);
    config.out_dir = Some(out.dir.clone());
    config.resume = options.resume;
    config.verbosity = options.verbosity;
    config.interrupt = options.interrupt.clone();
    config.weights_metadata = spec_meta.clone();
    config.run_inputs = plan.run_inputs(seed);
    let epochs_before = if options.resume {
        read_json::<engine::History>(&out.dir.join("history.json")).map_or(0, |h| h.epochs.len())
    } else {
        0
    };
    let outcome = engine::fit(
        built.network.as_ref(),
        &built.params,
        built.train.as_mut(),
        Some(built.validation.as_mut()),
        &config,
    )?;
    let status = match outcome.status {
        FitStatus::Interrupted { epoch, batch } => {
            return Ok(report(
                Some(reason),
                StageOutcome::Interrupted { epoch, batch },
            ));
        }
        FitStatus::Completed => "completed",
        FitStatus::EarlyStopped { .. } => "early_stopped",
    };
    let evaluation = engine::evaluate(built.network.as_ref(), built.validation.as_mut())?;
    let summary = summarize(
        &outcome.history,
        outcome.best,
        outcome.weights_epoch,
        &evaluation,
    )
    .ok_or_else(|| StageError::Settings("training ran no epoch".into()))?;
    let train_samples = built.train.num_samples();
    let validation_samples = built.validation.num_samples();
    let ran = outcome.history.epochs.len().saturating_sub(epochs_before);
    let metrics = Metrics {
        stage: T::STAGE.into(),
        backbone: plan.spec.backbone_name().map(str::to_string),
        classes: plan.spec.classes.clone(),
        class_mode: plan.class_mode,
        train_samples,
        validation_samples,
        batch_size: plan.batch_size,
        device: crate::describe_device(&options.device),
        status: status.into(),
        epochs: outcome.history.epochs.len(),
        timing: Timing::of(&outcome.history, ran, train_samples, validation_samples),
        summary,
        prepare_seconds,
        seconds: started.elapsed().as_secs_f64(),
        details: std::mem::take(&mut built.details),
    };
    let meta = metrics
        .summary
        .model_metadata(spec_meta, &provenance, T::KEY);
    write_json(&out.metrics, &metrics)?;
    built.params.save(&out.model, &meta)?;
    Ok(report(Some(reason), StageOutcome::Trained(metrics)))
}
