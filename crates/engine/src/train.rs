//! The training loop, and evaluation.

use crate::checkpoint::{
    self, BestRecord, EarlyStoppingState, PartialEpoch, RunIdentity, RunState,
};
use crate::config::{EarlyStopping, Metric, OptimizerConfig};
use crate::data::BatchSource;
use crate::error::{EngineError, Result};
use crate::history::{EpochRecord, History};
use crate::interrupt::Interrupt;
use crate::loss::Task;
use crate::optim::Optimizer;
use crate::params::Params;
use crate::progress::{EpochProgress, Verbosity, note};
use artifact::Metadata;
use candle_core::Tensor;
use models::{Mode, Network};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where a run writes its files inside its output folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputPaths {
    /// The output folder.
    pub dir: PathBuf,
    /// `history.csv`.
    pub history_csv: PathBuf,
    /// `history.json`.
    pub history_json: PathBuf,
    /// `curves.png`.
    pub curves: PathBuf,
    /// `checkpoints/last.safetensors`: the latest checkpoint, written every epoch.
    pub checkpoint: PathBuf,
    /// `checkpoints/best.safetensors`: the weights of the best epoch by the keep-best metric,
    /// under the parameters' own names, with [`FitConfig::weights_metadata`] and
    /// `engine.best_*` keys in the metadata.
    pub best_weights: PathBuf,
}

impl OutputPaths {
    /// The files of a run writing into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            history_csv: dir.join("history.csv"),
            history_json: dir.join("history.json"),
            curves: dir.join("curves.png"),
            checkpoint: dir.join("checkpoints").join("last.safetensors"),
            best_weights: dir.join("checkpoints").join("best.safetensors"),
            dir,
        }
    }
}

/// How to train.
#[derive(Debug, Clone)]
pub struct FitConfig {
    /// The number of epochs to reach (a resumed run continues up to this many).
    pub epochs: usize,
    /// The run's seed; dropout masks come from `imagedata::rng::stream(seed, "dropout")`.
    pub seed: u64,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The output folder for history, curves and checkpoints ([`OutputPaths`]); `None` writes
    /// nothing.
    pub out_dir: Option<PathBuf>,
    /// Continue from the folder's checkpoint instead of starting afresh (a fresh run removes a
    /// previous run's checkpoint and best weights from the folder first).
    pub resume: bool,
    /// Save the weights of the best epoch by this metric to
    /// [`OutputPaths::best_weights`].
    pub keep_best: Option<Metric>,
    /// Stop when a metric stops improving.
    pub early_stopping: Option<EarlyStopping>,
    /// Console output.
    pub verbosity: Verbosity,
    /// A stop request checked after every batch (for example [`Interrupt::ctrl_c`]).
    pub interrupt: Option<Interrupt>,
    /// Metadata added to the best-weights file (architecture, classes, preprocessing), so that
    /// it is a complete model artifact.
    pub weights_metadata: Metadata,
}

impl FitConfig {
    /// `epochs` epochs with `optimizer`, seeded with `seed`, writing nothing, with a progress
    /// bar.
    pub fn new(epochs: usize, seed: u64, optimizer: OptimizerConfig) -> Self {
        Self {
            epochs,
            seed,
            optimizer,
            out_dir: None,
            resume: false,
            keep_best: None,
            early_stopping: None,
            verbosity: Verbosity::Bar,
            interrupt: None,
            weights_metadata: Metadata::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FitStatus {
    /// Every epoch ran.
    Completed,
    /// Early stopping ended the run after this epoch.
    EarlyStopped {
        /// The last epoch run (1-based).
        epoch: usize,
    },
    /// A stop was requested; the run stopped after batch `batch` of epoch `epoch` (both 1-based;
    /// `batch` is the epoch's last batch when it stopped at the end of the epoch) and saved a
    /// checkpoint to resume from.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

/// The result of [`fit`].
#[derive(Debug, Clone)]
pub struct FitOutcome {
    /// How the run ended.
    pub status: FitStatus,
    /// Every finished epoch's figures (those before a resume included).
    pub history: History,
    /// The best epoch by the keep-best metric, when one is set.
    pub best: Option<BestRecord>,
    /// The files written, when an output folder was given.
    pub paths: Option<OutputPaths>,
}

/// The result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean loss over the samples.
    pub loss: f64,
    /// Accuracy over the samples.
    pub acc: f64,
    /// The number of classes.
    pub classes: usize,
    /// Each sample's true class, in the source's order.
    pub labels: Vec<u32>,
    /// Each sample's predicted class.
    pub predicted: Vec<u32>,
    /// Each sample's class probabilities (`classes` values; for a binary network `[1 - p, p]`).
    pub probabilities: Vec<Vec<f32>>,
}

impl Evaluation {
    /// The confusion matrix: `m[true][predicted]` counts.
    pub fn confusion_matrix(&self) -> Vec<Vec<usize>> {
        let mut m = vec![vec![0usize; self.classes]; self.classes];
        for (&t, &p) in self.labels.iter().zip(&self.predicted) {
            if let Some(cell) = m
                .get_mut(t as usize)
                .and_then(|row| row.get_mut(p as usize))
            {
                *cell += 1;
            }
        }
        m
    }
}

/// Runs `network` in evaluation mode over one pass of `source` (its epoch 0) and returns the
/// loss, the accuracy and every sample's prediction and probabilities.
pub fn evaluate(network: &dyn Network, source: &mut dyn BatchSource) -> Result<Evaluation> {
    let task = Task::from_units(network.output_units())?;
    run_eval(network, source, task, true, "evaluation data")
}

/// Checks that every label names a class of `task`.
fn check_labels(task: Task, labels: &Tensor, what: &str) -> Result<Vec<u32>> {
    let values = labels.to_vec1::<u32>()?;
    if let Some(&bad) = values.iter().find(|&&l| l as usize >= task.classes()) {
        return Err(EngineError::Data {
            what: what.into(),
            reason: format!(
                "label {bad} is out of range for a network with {} classes",
                task.classes()
            ),
        });
    }
    Ok(values)
}

fn run_eval(
    network: &dyn Network,
    source: &mut dyn BatchSource,
    task: Task,
    collect: bool,
    what: &str,
) -> Result<Evaluation> {
    let mut loss_sum = 0.0f64;
    let mut correct = 0u64;
    let mut count = 0u64;
    let mut out = Evaluation {
        loss: 0.0,
        acc: 0.0,
        classes: task.classes(),
        labels: Vec::new(),
        predicted: Vec::new(),
        probabilities: Vec::new(),
    };
    for batch in source.epoch(0)? {
        let batch = batch?;
        let labels = check_labels(task, &batch.labels, what)?;
        let logits = network.forward_t(&batch.x, &mut Mode::Eval)?.detach();
        let loss = task.loss(&logits, &batch.labels)?.to_scalar::<f32>()?;
        let n = labels.len() as u64;
        loss_sum += f64::from(loss) * n as f64;
        correct += task.correct(&logits, &batch.labels)? as u64;
        count += n;
        if collect {
            out.labels.extend(labels);
            out.predicted
                .extend(task.predict(&logits)?.to_vec1::<u32>()?);
            out.probabilities
                .extend(models::probabilities(&logits)?.to_vec2::<f32>()?);
        }
    }
    if count == 0 {
        return Err(EngineError::Data {
            what: what.into(),
            reason: "no samples".into(),
        });
    }
    out.loss = loss_sum / count as f64;
    out.acc = correct as f64 / count as f64;
    Ok(out)
}

/// Removes `path` if it exists.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::output(path, format!("cannot remove: {e}"))),
    }
}

/// Trains the trainable parameters of `params` (the variables `network` computes with) on
/// `train`, validating on `validation` after every epoch.
///
/// Every epoch: batches from `train.epoch(e)`, forward in [`Mode::Train`] with the dropout
/// generator, loss, backward, one optimizer step per batch; then validation in [`Mode::Eval`],
/// the summary line, keep-best, early stopping, and (with an output folder) the checkpoint,
/// `history.csv`, `history.json` and `curves.png`. After the call the variables hold the
/// last epoch's weights; the best epoch's are in [`OutputPaths::best_weights`].
///
/// A stop request ends the run after the current batch with a checkpoint from which
/// `resume` continues exactly; a NaN or infinite loss ends it with
/// [`EngineError::NonFiniteLoss`] before the weights are touched, keeping the last good
/// checkpoint.
pub fn fit(
    network: &dyn Network,
    params: &Params,
    train: &mut dyn BatchSource,
    mut validation: Option<&mut dyn BatchSource>,
    config: &FitConfig,
) -> Result<FitOutcome> {
    if config.epochs == 0 {
        return Err(EngineError::config("epochs", "must be at least 1"));
    }
    let rule = config.optimizer.resolve()?;
    if let Some(es) = &config.early_stopping {
        es.validate()?;
    }
    let watched = config
        .keep_best
        .iter()
        .chain(config.early_stopping.iter().map(|e| &e.monitor));
    for m in watched {
        if m.needs_validation() && validation.is_none() {
            return Err(EngineError::config(
                "monitor",
                format!("`{m}` needs validation data, and there is none"),
            ));
        }
    }
    if params.trainable().next().is_none() {
        return Err(EngineError::config(
            "parameters",
            "no parameter is trainable",
        ));
    }
    let task = Task::from_units(network.output_units())?;
    if train.num_samples() == 0 || train.num_batches() == 0 {
        return Err(EngineError::Data {
            what: "training data".into(),
            reason: "no samples".into(),
        });
    }
    if let Some(v) = &validation
        && v.num_samples() == 0
    {
        return Err(EngineError::Data {
            what: "validation data".into(),
            reason: "no samples".into(),
        });
    }

    let paths = config.out_dir.as_ref().map(OutputPaths::new);
    let mut optimizer = Optimizer::new(rule, params)?;
    let rule_text = rule.to_string();
    let identity = RunIdentity {
        seed: config.seed,
        optimizer: &rule_text,
        samples_per_epoch: train.num_samples(),
    };
    let mut state = RunState::fresh(config.seed);
    let mut last_checkpoint: Option<PathBuf> = None;
    if config.resume {
        let p = paths.as_ref().ok_or_else(|| {
            EngineError::config("resume", "resuming needs the output folder of the run")
        })?;
        if !p.checkpoint.exists() {
            return Err(EngineError::NoCheckpoint {
                path: p.checkpoint.clone(),
            });
        }
        state = checkpoint::load(&p.checkpoint, params, &mut optimizer, &identity)?;
        last_checkpoint = Some(p.checkpoint.clone());
        if let Some(partial) = &state.partial
            && partial.batches_done > train.num_batches()
        {
            return Err(EngineError::checkpoint(
                &p.checkpoint,
                format!(
                    "it stopped after batch {} of epoch {}, but an epoch now has {} batches",
                    partial.batches_done,
                    partial.epoch,
                    train.num_batches()
                ),
            ));
        }
        let reached = state.partial.map_or(state.epochs_done, |p| p.epoch);
        if reached > config.epochs {
            return Err(EngineError::checkpoint(
                &p.checkpoint,
                format!(
                    "it has reached epoch {reached}, beyond the {} asked for",
                    config.epochs
                ),
            ));
        }
        if state
            .best
            .is_some_and(|b| Some(b.metric) != config.keep_best)
        {
            state.best = None;
        }
        if state
            .early_stopping
            .is_some_and(|s| Some(s.monitor) != config.early_stopping.map(|e| e.monitor))
        {
            state.early_stopping = None;
        }
        let done = state.partial.map_or(state.epochs_done, |p| p.epoch - 1);
        note(
            config.verbosity,
            &format!(
                "Resuming from {} ({done} epochs done{})",
                p.checkpoint.display(),
                state
                    .partial
                    .map(|p| format!(", {} batches into epoch {}", p.batches_done, p.epoch))
                    .unwrap_or_default()
            ),
        );
        if let Some(epoch) = state.stopped_early {
            return Ok(FitOutcome {
                status: FitStatus::EarlyStopped { epoch },
                history: state.history,
                best: state.best,
                paths,
            });
        }
    } else if let Some(p) = &paths {
        remove_stale(&p.checkpoint)?;
        remove_stale(&p.best_weights)?;
    }

    let (trainable, frozen) = params.counts();
    tracing::info!(
        "training {trainable} parameters ({frozen} frozen) with {rule_text} on {} samples",
        train.num_samples()
    );
    let interrupt = config.interrupt.clone().unwrap_or_default();
    let lr = optimizer.learning_rate();
    let num_batches = train.num_batches();
    let first_epoch = state.partial.map_or(state.epochs_done + 1, |p| p.epoch);

    for epoch in first_epoch..=config.epochs {
        let started = Instant::now();
        let mut run = state
            .partial
            .take()
            .filter(|p| p.epoch == epoch)
            .unwrap_or_else(|| PartialEpoch::new(epoch));
        let progress = EpochProgress::start(
            config.verbosity,
            epoch,
            config.epochs,
            num_batches,
            run.batches_done,
        );
        for batch in train.epoch_from(epoch - 1, run.batches_done)? {
            let batch = batch?;
            check_labels(task, &batch.labels, "training data")?;
            let batch_no = run.batches_done + 1;
            let logits = network.forward_t(
                &batch.x,
                &mut Mode::Train {
                    rng: &mut state.dropout_rng,
                },
            )?;
            let loss = task.loss(&logits, &batch.labels)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                progress.abandon();
                return Err(EngineError::NonFiniteLoss {
                    epoch,
                    batch: batch_no,
                    value: loss_value,
                    checkpoint: last_checkpoint,
                });
            }
            let correct = task.correct(&logits, &batch.labels)?;
            let grads = loss.backward()?;
            optimizer.step(params, &grads)?;
            let n = batch.len() as u64;
            run.loss_sum += f64::from(loss_value) * n as f64;
            run.correct += correct as u64;
            run.count += n;
            run.batches_done = batch_no;
            progress.update(
                batch_no,
                run.loss_sum / run.count as f64,
                run.correct as f64 / run.count as f64,
            );
            if interrupt.is_triggered() {
                progress.abandon();
                run.seconds += started.elapsed().as_secs_f64();
                state.partial = Some(run);
                if let Some(p) = &paths {
                    checkpoint::save(&p.checkpoint, params, &optimizer, &state, &identity)?;
                    note(
                        config.verbosity,
                        &format!(
                            "Interrupted after batch {batch_no} of epoch {epoch}; checkpoint \
                             saved to {} (resume to continue)",
                            p.checkpoint.display()
                        ),
                    );
                }
                return Ok(FitOutcome {
                    status: FitStatus::Interrupted {
                        epoch,
                        batch: batch_no,
                    },
                    history: state.history,
                    best: state.best,
                    paths,
                });
            }
        }
        if run.count == 0 {
            progress.abandon();
            return Err(EngineError::Data {
                what: "training data".into(),
                reason: format!("epoch {epoch} produced no batches"),
            });
        }

        progress.validating();
        let (val_loss, val_acc) = match validation.as_deref_mut() {
            Some(v) => {
                let e = run_eval(network, v, task, false, "validation data")?;
                (Some(e.loss), Some(e.acc))
            }
            None => (None, None),
        };
        let record = EpochRecord {
            epoch,
            loss: run.loss_sum / run.count as f64,
            acc: run.correct as f64 / run.count as f64,
            val_loss,
            val_acc,
            seconds: run.seconds + started.elapsed().as_secs_f64(),
            lr,
        };
        progress.finish(&record);
        state.history.epochs.push(record.clone());
        state.epochs_done = epoch;

        if let Some(metric) = config.keep_best
            && let Some(value) = metric.value(&record)
            && metric.improves(value, state.best.map(|b| b.value), 0.0)
        {
            if let Some(p) = &paths {
                let mut meta = config.weights_metadata.clone();
                meta.insert("engine.best_metric".into(), metric.name().into());
                meta.insert("engine.best_value".into(), value.to_string());
                meta.insert("engine.best_epoch".into(), epoch.to_string());
                params.save(&p.best_weights, &meta)?;
                let before = state
                    .best
                    .map(|b| format!("improved from {:.4} to {value:.4}", b.value))
                    .unwrap_or_else(|| format!("is {value:.4}"));
                note(
                    config.verbosity,
                    &format!(
                        "Epoch {epoch}: {metric} {before}, saving the weights to {}",
                        p.best_weights.display()
                    ),
                );
            }
            state.best = Some(BestRecord {
                metric,
                value,
                epoch,
            });
        }

        let mut stop = false;
        if let Some(es) = config.early_stopping {
            let s = state.early_stopping.get_or_insert(EarlyStoppingState {
                monitor: es.monitor,
                best: None,
                wait: 0,
            });
            match es.monitor.value(&record) {
                Some(v) if es.monitor.improves(v, s.best, es.min_delta) => {
                    s.best = Some(v);
                    s.wait = 0;
                }
                _ => {
                    s.wait += 1;
                    stop = s.wait >= es.patience.max(1);
                }
            }
        }
        if stop {
            state.stopped_early = Some(epoch);
        }

        if let Some(p) = &paths {
            checkpoint::save(&p.checkpoint, params, &optimizer, &state, &identity)?;
            last_checkpoint = Some(p.checkpoint.clone());
            state.history.write(&p.history_csv, &p.history_json)?;
            crate::plot::write_curves(&state.history, &p.curves)?;
        }

        if stop {
            note(config.verbosity, &format!("Epoch {epoch}: early stopping"));
            return Ok(FitOutcome {
                status: FitStatus::EarlyStopped { epoch },
                history: state.history,
                best: state.best,
                paths,
            });
        }
        if interrupt.is_triggered() && epoch < config.epochs {
            let saved = paths
                .as_ref()
                .map(|p| {
                    format!(
                        "; checkpoint saved to {} (resume to continue)",
                        p.checkpoint.display()
                    )
                })
                .unwrap_or_default();
            note(
                config.verbosity,
                &format!("Interrupted after epoch {epoch}{saved}"),
            );
            return Ok(FitOutcome {
                status: FitStatus::Interrupted {
                    epoch,
                    batch: num_batches,
                },
                history: state.history,
                best: state.best,
                paths,
            });
        }
    }
    Ok(FitOutcome {
        status: FitStatus::Completed,
        history: state.history,
        best: state.best,
        paths,
    })
}
