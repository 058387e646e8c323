//! The training loop: epochs of [`EpochRun`](crate::epoch), validation, then the parts with one
//! job each: keep-best ([`KeepBest`]), early stopping, and the recorder of history, curves and
//! checkpoints ([`Recorder`]).

use std::path::PathBuf;
use std::time::Instant;

use artifact::Metadata;
use models::Network;
use pipeline::{EarlyStopping, Metric, OptimizerConfig, Schedule};

use crate::checkpoint::{BestRecord, PartialEpoch, RunIdentity, RunInputs, RunState};
use crate::data::BatchSource;
use crate::early_stopping;
use crate::epoch::{EpochEnd, EpochRun};
use crate::error::{EngineError, Result};
use crate::evaluate::run_eval;
use crate::history::{EpochRecord, History};
use crate::interrupt::Interrupt;
use crate::keep_best::KeepBest;
use crate::loss::Task;
use crate::optim::Optimizer;
use crate::params::Params;
use crate::progress::{EpochProgress, Verbosity, note};
use crate::recorder::{OutputPaths, Recorder};

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
    /// Save the weights of the best epoch by this metric to [`OutputPaths::best_weights`].
    pub keep_best: Option<Metric>,
    /// When the run finishes, load the best epoch's saved weights back into the parameters
    /// (with `keep_best` and an output folder).
    pub restore_best: bool,
    /// Stop when a metric stops improving.
    pub early_stopping: Option<EarlyStopping>,
    /// Console output.
    pub verbosity: Verbosity,
    /// A stop request checked after every batch (for example [`Interrupt::ctrl_c`]).
    pub interrupt: Option<Interrupt>,
    /// Metadata added to the best-weights file (architecture, classes, preprocessing), so that
    /// it is a complete model artifact.
    pub weights_metadata: Metadata,
    /// What the run is made from; a checkpoint is resumed only by a run made from the same.
    pub run_inputs: RunInputs,
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
            restore_best: false,
            early_stopping: None,
            verbosity: Verbosity::Bar,
            interrupt: None,
            weights_metadata: Metadata::new(),
            run_inputs: RunInputs::default(),
        }
    }

    /// A training section's schedule, seeded with `seed`: its epochs and optimizer, keeping
    /// (and restoring) the best epoch by its monitor and stopping early as it asks.
    pub fn from_schedule(schedule: &Schedule, seed: u64) -> Self {
        let mut config = Self::new(schedule.epochs, seed, schedule.optimizer.clone());
        config.keep_best = Some(schedule.monitor);
        config.restore_best = true;
        config.early_stopping = schedule.early_stopping();
        config
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
    /// The epoch whose weights the parameters hold at the end: the best one when
    /// [`FitConfig::restore_best`] loaded it back, else the last one run (0 when none ran).
    pub weights_epoch: usize,
    /// The files written, when an output folder was given.
    pub paths: Option<OutputPaths>,
}

/// Checks the configuration and the data before anything runs; returns the task.
fn check(
    network: &dyn Network,
    params: &Params,
    train: &dyn BatchSource,
    validation: Option<&dyn BatchSource>,
    config: &FitConfig,
) -> Result<Task> {
    if config.epochs == 0 {
        return Err(EngineError::config("epochs", "must be at least 1"));
    }
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
    if train.num_samples() == 0 || train.num_batches() == 0 {
        return Err(EngineError::Data {
            what: "training data".into(),
            reason: "no samples".into(),
        });
    }
    if validation.is_some_and(|v| v.num_samples() == 0) {
        return Err(EngineError::Data {
            what: "validation data".into(),
            reason: "no samples".into(),
        });
    }
    Task::from_units(network.output_units())
}

/// Trains the trainable parameters of `params` (the variables `network` computes with) on
/// `train`, validating on `validation` after every epoch.
///
/// Every epoch: batches from `train.epoch(e)`, forward in training mode with the dropout
/// generator, loss, backward, one optimizer step per batch; then validation (timed), the
/// summary line, keep-best, early stopping, and (with an output folder) the checkpoint,
/// `history.csv`, `history.json` and `curves.png`. After the call the variables hold the
/// last epoch's weights, or the best epoch's with [`FitConfig::restore_best`].
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
    let task = check(network, params, train, validation.as_deref(), config)?;
    let rule = config.optimizer.resolve()?;
    let mut optimizer = Optimizer::new(rule, params)?;
    let identity = RunIdentity {
        seed: config.seed,
        optimizer: rule.to_string(),
        samples_per_epoch: train.num_samples(),
        run: config.run_inputs.clone(),
    };
    let mut recorder = Recorder::new(config.out_dir.as_deref(), identity, config.verbosity);
    let mut state = start_state(config, &mut recorder, params, &mut optimizer, train)?;
    let keep_best = config.keep_best.map(|metric| {
        KeepBest::new(
            metric,
            recorder.paths().map(|p| p.best_weights.clone()),
            config.weights_metadata.clone(),
            config.verbosity,
        )
    });
    let restore = keep_best.as_ref().filter(|_| config.restore_best);
    let finish = |status, state: RunState, recorder: &Recorder| {
        outcome(status, state, recorder, restore, params)
    };
    if let Some(epoch) = state.stopped_early {
        return finish(FitStatus::EarlyStopped { epoch }, state, &recorder);
    }

    let (trainable, frozen) = params.counts();
    tracing::info!(
        "training {trainable} parameters ({frozen} frozen) with {rule} on {} samples",
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
        let mut epoch_run = EpochRun {
            network,
            params,
            optimizer: &mut optimizer,
            task,
            interrupt: &interrupt,
            last_checkpoint: recorder.last_checkpoint(),
        };
        let end = epoch_run.train(train, &mut run, &mut state.dropout_rng, &progress)?;
        if let EpochEnd::Interrupted { batch } = end {
            run.seconds += started.elapsed().as_secs_f64();
            state.partial = Some(run);
            recorder.checkpoint(params, &optimizer, &state)?;
            if recorder.paths().is_some() {
                note(
                    config.verbosity,
                    &format!(
                        "Interrupted after batch {batch} of epoch {epoch}{}",
                        recorder.resume_hint()
                    ),
                );
            }
            return finish(FitStatus::Interrupted { epoch, batch }, state, &recorder);
        }

        progress.validating();
        let record = validate_epoch(network, validation.as_deref_mut(), task, &run, started, lr)?;
        progress.finish(&record);
        state.history.epochs.push(record.clone());
        state.epochs_done = epoch;

        if let Some(k) = &keep_best {
            k.observe(&mut state.best, &record, params)?;
        }
        let stop = config
            .early_stopping
            .is_some_and(|rule| early_stopping::observe(&rule, &mut state.early_stopping, &record));
        if stop {
            state.stopped_early = Some(epoch);
        }
        recorder.end_epoch(params, &optimizer, &state)?;

        if stop {
            note(config.verbosity, &format!("Epoch {epoch}: early stopping"));
            return finish(FitStatus::EarlyStopped { epoch }, state, &recorder);
        }
        if interrupt.is_triggered() && epoch < config.epochs {
            note(
                config.verbosity,
                &format!("Interrupted after epoch {epoch}{}", recorder.resume_hint()),
            );
            let status = FitStatus::Interrupted {
                epoch,
                batch: num_batches,
            };
            return finish(status, state, &recorder);
        }
    }
    finish(FitStatus::Completed, state, &recorder)
}

/// What `fit` returns: with the best epoch's weights put back in `params` when `restore` is
/// given and the run was not interrupted.
fn outcome(
    status: FitStatus,
    state: RunState,
    recorder: &Recorder,
    restore: Option<&KeepBest>,
    params: &Params,
) -> Result<FitOutcome> {
    let restored = match restore {
        Some(k) if !matches!(status, FitStatus::Interrupted { .. }) => {
            k.restore(state.best, params)?
        }
        _ => None,
    };
    Ok(FitOutcome {
        status,
        weights_epoch: restored.unwrap_or(state.epochs_done),
        history: state.history,
        best: state.best,
        paths: recorder.paths().cloned(),
    })
}

/// The run's state at the start: from the checkpoint when resuming (its keep-best and
/// early-stopping records kept only when they watch what this run watches), else fresh.
fn start_state(
    config: &FitConfig,
    recorder: &mut Recorder,
    params: &Params,
    optimizer: &mut Optimizer,
    train: &dyn BatchSource,
) -> Result<RunState> {
    if !config.resume {
        return recorder.start_fresh(config.seed);
    }
    let mut state = recorder.resume(params, optimizer, train.num_batches(), config.epochs)?;
    state.best = state.best.filter(|b| Some(b.metric) == config.keep_best);
    state.early_stopping = state
        .early_stopping
        .filter(|s| Some(s.monitor) == config.early_stopping.map(|e| e.monitor));
    Ok(state)
}

/// Validates after an epoch's training (when there is validation data) and makes the epoch's
/// record, with the training and validation times.
fn validate_epoch<'a>(
    network: &dyn Network,
    validation: Option<&mut (dyn BatchSource + 'a)>,
    task: Task,
    run: &PartialEpoch,
    started: Instant,
    lr: f64,
) -> Result<EpochRecord> {
    let validated = Instant::now();
    let val = match validation {
        Some(v) => Some(run_eval(network, v, task, false, "validation data")?),
        None => None,
    };
    Ok(EpochRecord {
        epoch: run.epoch,
        loss: run.loss_sum / run.count as f64,
        acc: run.correct as f64 / run.count as f64,
        val_loss: val.as_ref().map(|e| e.loss),
        val_acc: val.as_ref().map(|e| e.acc),
        seconds: run.seconds + started.elapsed().as_secs_f64(),
        val_seconds: val.is_some().then(|| validated.elapsed().as_secs_f64()),
        lr,
    })
}
