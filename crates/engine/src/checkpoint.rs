//! Training checkpoints: every parameter, the optimizer state and the loop's own state (epoch,
//! position within an interrupted epoch, RNG state, history, keep-best and early-stopping
//! state), as one safetensors artifact.
//!
//! Tensors are stored as `param/{name}` and `optimizer/{name}/{slot}`; the rest is JSON in the
//! metadata key `engine.state`, next to `engine.format`.

use crate::error::{EngineError, Result};
use crate::history::History;
use crate::optim::Optimizer;
use crate::params::Params;
use artifact::Metadata;
use pipeline::Metric;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The value of the `engine.format` metadata key.
pub(crate) const FORMAT: &str = "littledata-checkpoint/1";
const FORMAT_KEY: &str = "engine.format";
const STATE_KEY: &str = "engine.state";

/// The best value of the keep-best metric so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestRecord {
    /// The watched metric.
    pub metric: Metric,
    /// Its best value.
    pub value: f64,
    /// The epoch (1-based) that reached it.
    pub epoch: usize,
}

/// Early stopping's running state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct EarlyStoppingState {
    pub monitor: Metric,
    pub best: Option<f64>,
    pub wait: usize,
}

/// The running sums of an epoch in progress.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct PartialEpoch {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Batches finished.
    pub batches_done: usize,
    /// Sum over samples of the loss.
    pub loss_sum: f64,
    /// Correctly classified samples.
    pub correct: u64,
    /// Samples seen.
    pub count: u64,
    /// Seconds spent on the epoch before the checkpoint.
    pub seconds: f64,
}

impl PartialEpoch {
    pub(crate) fn new(epoch: usize) -> Self {
        Self {
            epoch,
            batches_done: 0,
            loss_sum: 0.0,
            correct: 0,
            count: 0,
            seconds: 0.0,
        }
    }
}

/// Everything about a run that is not a parameter or optimizer tensor.
#[derive(Debug, Clone)]
pub(crate) struct RunState {
    pub epochs_done: usize,
    pub partial: Option<PartialEpoch>,
    pub history: History,
    pub best: Option<BestRecord>,
    pub early_stopping: Option<EarlyStoppingState>,
    pub stopped_early: Option<usize>,
    pub dropout_rng: ChaCha8Rng,
}

impl RunState {
    /// The state of a run that has not started.
    pub(crate) fn fresh(seed: u64) -> Self {
        Self {
            epochs_done: 0,
            partial: None,
            history: History::default(),
            best: None,
            early_stopping: None,
            stopped_early: None,
            dropout_rng: imagedata::rng::stream(seed, imagedata::rng::names::DROPOUT),
        }
    }
}

/// A ChaCha8 generator's exact position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RngState {
    /// The 256-bit key, hex.
    key: String,
    /// The stream number.
    stream: u64,
    /// The word position (a u128, in decimal).
    word_pos: String,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            key: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Option<ChaCha8Rng> {
        if self.key.len() != 64 || !self.key.is_ascii() {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = u8::from_str_radix(&self.key[2 * i..2 * i + 2], 16).ok()?;
        }
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// How far the run saved in a checkpoint got: `(epochs finished, whether an epoch was cut
/// short)`. `None` when there is no checkpoint at `path` or it cannot be read as one (resuming
/// from it then says why).
pub fn checkpoint_progress(path: &Path) -> Option<(usize, bool)> {
    let meta = artifact::read_metadata(path).ok()?;
    let state: StoredState = serde_json::from_str(meta.get(STATE_KEY)?).ok()?;
    Some((state.epochs_done, state.partial.is_some()))
}

/// The JSON stored under `engine.state`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredState {
    seed: u64,
    optimizer: String,
    iterations: u64,
    trainable: Vec<String>,
    samples_per_epoch: usize,
    epochs_done: usize,
    partial: Option<PartialEpoch>,
    dropout_rng: RngState,
    best: Option<BestRecord>,
    early_stopping: Option<EarlyStoppingState>,
    stopped_early: Option<usize>,
    history: History,
    #[serde(default)]
    run: RunInputs,
}

/// What a run was made from besides the training loop's own settings: the stage's settings
/// (less those a resumed run may change, such as the number of epochs) and the digests of its
/// inputs (data, weights, upstream models), compared when resuming.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInputs {
    /// The settings that fix the run, as a JSON object.
    pub settings: serde_json::Value,
    /// Input name → digest.
    pub inputs: BTreeMap<String, String>,
}

/// Which settings differ between `then` and `now` (`` `mode` was "live", now "view_cache" ``,
/// up to three keys), or `None` when they are the same.
fn settings_change(then: &serde_json::Value, now: &serde_json::Value) -> Option<String> {
    if then == now {
        return None;
    }
    let (Some(a), Some(b)) = (then.as_object(), now.as_object()) else {
        return Some("its settings changed".into());
    };
    let null = serde_json::Value::Null;
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let changed: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "`{k}` was {}, now {}",
                a.get(k).unwrap_or(&null),
                b.get(k).unwrap_or(&null)
            )
        })
        .collect();
    let shown = changed
        .iter()
        .take(3)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    Some(if changed.len() > 3 {
        format!("settings changed: {shown}; and {} more", changed.len() - 3)
    } else {
        format!("settings changed: {shown}")
    })
}

/// What must match for a checkpoint to be resumed.
#[derive(Debug, Clone)]
pub(crate) struct RunIdentity {
    pub seed: u64,
    pub optimizer: String,
    pub samples_per_epoch: usize,
    pub run: RunInputs,
}

/// Writes a checkpoint atomically.
pub(crate) fn save(
    path: &Path,
    params: &Params,
    optimizer: &Optimizer,
    state: &RunState,
    identity: &RunIdentity,
) -> Result<()> {
    let stored = StoredState {
        seed: identity.seed,
        optimizer: identity.optimizer.clone(),
        iterations: optimizer.iterations(),
        trainable: params.trainable().map(|p| p.name.clone()).collect(),
        samples_per_epoch: identity.samples_per_epoch,
        epochs_done: state.epochs_done,
        partial: state.partial,
        dropout_rng: RngState::of(&state.dropout_rng),
        best: state.best,
        early_stopping: state.early_stopping,
        stopped_early: state.stopped_early,
        history: state.history.clone(),
        run: identity.run.clone(),
    };
    let json = serde_json::to_string(&stored)
        .map_err(|e| EngineError::checkpoint(path, format!("cannot encode the state: {e}")))?;
    let mut meta = Metadata::new();
    meta.insert(FORMAT_KEY.into(), FORMAT.into());
    meta.insert(STATE_KEY.into(), json);
    let mut tensors: Vec<(String, candle_core::Tensor)> = params
        .tensors()
        .into_iter()
        .map(|(n, t)| (format!("param/{n}"), t))
        .collect();
    tensors.extend(optimizer.state_tensors());
    artifact::save(path, tensors.iter().map(|(n, t)| (n.as_str(), t)), &meta)?;
    Ok(())
}

/// Loads a checkpoint into `params` and `optimizer` and returns the run's state, after checking
/// that it belongs to a run like this one (same seed, optimizer, trainable parameters, data
/// size). Nothing is changed when a check fails.
pub(crate) fn load(
    path: &Path,
    params: &Params,
    optimizer: &mut Optimizer,
    identity: &RunIdentity,
) -> Result<RunState> {
    let (tensors, meta) = artifact::load(path, &params.device()).map_err(|e| match e {
        artifact::ArtifactError::Damaged { reason, .. } => EngineError::checkpoint(
            path,
            format!("damaged ({reason}); run without --resume to start the run over"),
        ),
        other => other.into(),
    })?;
    let stored = read_stored(path, &meta)?;
    check_identity(path, &stored, identity, params)?;
    let dropout_rng = stored.dropout_rng.restore().ok_or_else(|| {
        EngineError::checkpoint(path, "the saved random-generator state is malformed")
    })?;
    if stored.history.epochs.len() != stored.epochs_done {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "it records {} epochs done but holds a history of {}",
                stored.epochs_done,
                stored.history.epochs.len()
            ),
        ));
    }
    for p in params.iter() {
        if !tensors.contains_key(&format!("param/{}", p.name)) {
            return Err(EngineError::checkpoint(
                path,
                format!("parameter `{}` is missing", p.name),
            ));
        }
    }
    optimizer.load_state(stored.iterations, &tensors, path)?;
    params.assign(&tensors, path, "param/")?;
    Ok(RunState {
        epochs_done: stored.epochs_done,
        partial: stored.partial,
        history: stored.history,
        best: stored.best,
        early_stopping: stored.early_stopping,
        stopped_early: stored.stopped_early,
        dropout_rng,
    })
}

/// The run state a checkpoint's metadata holds, after checking its format.
fn read_stored(path: &Path, meta: &Metadata) -> Result<StoredState> {
    match meta.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(EngineError::checkpoint(
                path,
                format!("unsupported checkpoint format \"{other}\" (expected \"{FORMAT}\")"),
            ));
        }
        None => {
            return Err(EngineError::checkpoint(
                path,
                "not a training checkpoint (no `engine.format` metadata)",
            ));
        }
    }
    let raw = meta
        .get(STATE_KEY)
        .ok_or_else(|| EngineError::checkpoint(path, "the `engine.state` metadata is missing"))?;
    serde_json::from_str(raw).map_err(|e| {
        EngineError::checkpoint(path, format!("the `engine.state` metadata is invalid: {e}"))
    })
}

/// Why a checkpoint does not belong to a run like this one (same seed, optimizer, settings,
/// inputs, data size, trainable parameters), or `Ok` when it does.
fn check_identity(
    path: &Path,
    stored: &StoredState,
    identity: &RunIdentity,
    params: &Params,
) -> Result<()> {
    if stored.seed != identity.seed {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "it was trained with seed {}, this run uses seed {}",
                stored.seed, identity.seed
            ),
        ));
    }
    if stored.optimizer != identity.optimizer {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "it was trained with {}, this run uses {}",
                stored.optimizer, identity.optimizer
            ),
        ));
    }
    if let Some(changed) = settings_change(&stored.run.settings, &identity.run.settings) {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "{changed} since it was written (only the number of epochs, early stopping and \
                 the monitored metric may change)"
            ),
        ));
    }
    if let Some(name) = identity
        .run
        .inputs
        .iter()
        .chain(&stored.run.inputs)
        .map(|(name, _)| name)
        .find(|name| stored.run.inputs.get(*name) != identity.run.inputs.get(*name))
    {
        return Err(EngineError::checkpoint(
            path,
            format!("{} since it was written", input_changed(name)),
        ));
    }
    if stored.samples_per_epoch != identity.samples_per_epoch {
        return Err(EngineError::checkpoint(
            path,
            format!(
                "it was trained on {} samples per epoch, the training data now has {}",
                stored.samples_per_epoch, identity.samples_per_epoch
            ),
        ));
    }
    let trainable: Vec<String> = params.trainable().map(|p| p.name.clone()).collect();
    if stored.trainable != trainable {
        let differs = stored
            .trainable
            .iter()
            .find(|n| !trainable.contains(n))
            .map(|n| format!("`{n}` was trained then and is frozen or absent now"))
            .or_else(|| {
                trainable
                    .iter()
                    .find(|n| !stored.trainable.contains(n))
                    .map(|n| format!("`{n}` is trained now and was frozen or absent then"))
            })
            .unwrap_or_else(|| "the trainable parameters differ".into());
        return Err(EngineError::checkpoint(path, differs));
    }
    Ok(())
}

/// What a changed run input means, in words, for the resume refusal.
fn input_changed(name: &str) -> String {
    match name {
        "train_data" => "the training images changed (it was trained on other images)".into(),
        "validation_data" => {
            "the validation images changed (it was validated on other images)".into()
        }
        "train_features" | "validation_features" => format!(
            "the {} features changed (re-extracted, or extracted from other images)",
            name.trim_end_matches("_features")
        ),
        "weights" => "the backbone weights changed".into(),
        "top_model" => "the top model it started from changed".into(),
        other => format!("its input `{other}` changed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn rng_state_roundtrips_mid_block() {
        let mut rng = imagedata::rng::stream(5, "dropout");
        for _ in 0..13 {
            rng.next_u32();
        }
        let state = RngState::of(&rng);
        let json = serde_json::to_string(&state).unwrap();
        let mut back = serde_json::from_str::<RngState>(&json)
            .unwrap()
            .restore()
            .unwrap();
        for _ in 0..100 {
            assert_eq!(rng.next_u64(), back.next_u64());
        }
        let bad = RngState {
            key: "zz".into(),
            ..state
        };
        assert!(bad.restore().is_none());
    }
}
