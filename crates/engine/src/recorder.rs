//! The epoch recorder: what a run writes into its output folder (the checkpoint every epoch,
//! `history.csv`, `history.json`, `curves.png`), and where a resumed run picks up from.

use std::path::{Path, PathBuf};

use crate::checkpoint::{self, RunIdentity, RunState};
use crate::error::{EngineError, Result};
use crate::optim::Optimizer;
use crate::params::Params;
use crate::progress::{Verbosity, note};

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
    /// under the parameters' own names, with the run's weights metadata and `engine.best_*`
    /// keys in the metadata.
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

/// Writes a run's files, when it has an output folder.
pub(crate) struct Recorder {
    paths: Option<OutputPaths>,
    identity: RunIdentity,
    verbosity: Verbosity,
    /// The checkpoint now on disk that belongs to this run.
    last_checkpoint: Option<PathBuf>,
}

/// Removes `path` if it exists.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::output(path, format!("cannot remove: {e}"))),
    }
}

impl Recorder {
    /// A recorder writing into `out_dir` (nothing when `None`), with the run's `identity`.
    pub(crate) fn new(out_dir: Option<&Path>, identity: RunIdentity, verbosity: Verbosity) -> Self {
        Self {
            paths: out_dir.map(OutputPaths::new),
            identity,
            verbosity,
            last_checkpoint: None,
        }
    }

    /// The files written, when there is an output folder.
    pub(crate) fn paths(&self) -> Option<&OutputPaths> {
        self.paths.as_ref()
    }

    /// The checkpoint a failure leaves in place.
    pub(crate) fn last_checkpoint(&self) -> Option<PathBuf> {
        self.last_checkpoint.clone()
    }

    /// A fresh run: removes an earlier run's checkpoint and best weights from the folder.
    pub(crate) fn start_fresh(&self, seed: u64) -> Result<RunState> {
        if let Some(p) = &self.paths {
            remove_stale(&p.checkpoint)?;
            remove_stale(&p.best_weights)?;
        }
        Ok(RunState::fresh(seed))
    }

    /// A resumed run: the folder's checkpoint, checked against this run (its identity, the
    /// batches per epoch now, the epochs asked for), loaded into `params` and `optimizer`.
    pub(crate) fn resume(
        &mut self,
        params: &Params,
        optimizer: &mut Optimizer,
        num_batches: usize,
        epochs: usize,
    ) -> Result<RunState> {
        let p = self.paths.as_ref().ok_or_else(|| {
            EngineError::config("resume", "resuming needs the output folder of the run")
        })?;
        if !p.checkpoint.exists() {
            return Err(EngineError::NoCheckpoint {
                path: p.checkpoint.clone(),
            });
        }
        let state = checkpoint::load(&p.checkpoint, params, optimizer, &self.identity)?;
        if let Some(partial) = &state.partial
            && partial.batches_done > num_batches
        {
            return Err(EngineError::checkpoint(
                &p.checkpoint,
                format!(
                    "it stopped after batch {} of epoch {}, but an epoch now has {num_batches} \
                     batches",
                    partial.batches_done, partial.epoch
                ),
            ));
        }
        let reached = state.partial.map_or(state.epochs_done, |p| p.epoch);
        if reached > epochs {
            return Err(EngineError::checkpoint(
                &p.checkpoint,
                format!("it has reached epoch {reached}, beyond the {epochs} asked for"),
            ));
        }
        let done = state.partial.map_or(state.epochs_done, |p| p.epoch - 1);
        note(
            self.verbosity,
            &format!(
                "Resuming from {} ({done} epochs done{})",
                p.checkpoint.display(),
                state
                    .partial
                    .map(|p| format!(", {} batches into epoch {}", p.batches_done, p.epoch))
                    .unwrap_or_default()
            ),
        );
        self.last_checkpoint = Some(p.checkpoint.clone());
        Ok(state)
    }

    /// Saves the checkpoint of `state`.
    pub(crate) fn checkpoint(
        &mut self,
        params: &Params,
        optimizer: &Optimizer,
        state: &RunState,
    ) -> Result<()> {
        if let Some(p) = &self.paths {
            checkpoint::save(&p.checkpoint, params, optimizer, state, &self.identity)?;
            self.last_checkpoint = Some(p.checkpoint.clone());
        }
        Ok(())
    }

    /// After an epoch: the checkpoint, `history.csv`, `history.json` and `curves.png`.
    pub(crate) fn end_epoch(
        &mut self,
        params: &Params,
        optimizer: &Optimizer,
        state: &RunState,
    ) -> Result<()> {
        self.checkpoint(params, optimizer, state)?;
        if let Some(p) = &self.paths {
            state.history.write(&p.history_csv, &p.history_json)?;
            crate::plot::write_curves(&state.history, &p.curves)?;
        }
        Ok(())
    }

    /// `; checkpoint saved to <path> (resume to continue)` when there is a checkpoint.
    pub(crate) fn resume_hint(&self) -> String {
        self.paths
            .as_ref()
            .map(|p| {
                format!(
                    "; checkpoint saved to {} (resume to continue)",
                    p.checkpoint.display()
                )
            })
            .unwrap_or_default()
    }
}
