//! One training epoch: batches from the source, forward in training mode, loss, backward, one
//! optimizer step per batch, with the running figures and the stop request checked after every
//! batch.

use std::path::PathBuf;

use models::{Mode, Network};
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::PartialEpoch;
use crate::data::BatchSource;
use crate::error::{EngineError, Result};
use crate::evaluate::check_labels;
use crate::interrupt::Interrupt;
use crate::loss::Task;
use crate::optim::Optimizer;
use crate::params::Params;
use crate::progress::EpochProgress;

/// How an epoch's batches ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpochEnd {
    /// Every batch ran.
    Done,
    /// A stop was requested after this batch (1-based).
    Interrupted {
        /// The last batch finished.
        batch: usize,
    },
}

/// What one epoch trains with.
pub(crate) struct EpochRun<'a> {
    pub network: &'a dyn Network,
    pub params: &'a Params,
    pub optimizer: &'a mut Optimizer,
    pub task: Task,
    pub interrupt: &'a Interrupt,
    /// The checkpoint a non-finite loss leaves in place, named in the error.
    pub last_checkpoint: Option<PathBuf>,
}

impl EpochRun<'_> {
    /// Trains on the batches of `train`'s epoch `run.epoch` from batch `run.batches_done` on,
    /// adding each batch's figures to `run`; dropout masks come from `dropout`.
    pub(crate) fn train(
        &mut self,
        train: &mut dyn BatchSource,
        run: &mut PartialEpoch,
        dropout: &mut ChaCha8Rng,
        progress: &EpochProgress,
    ) -> Result<EpochEnd> {
        for batch in train.epoch_from(run.epoch - 1, run.batches_done)? {
            let batch = batch?;
            check_labels(self.task, &batch.labels, "training data")?;
            let batch_no = run.batches_done + 1;
            let logits = self
                .network
                .forward_t(&batch.x, &mut Mode::Train { rng: dropout })?;
            let loss = self.task.loss(&logits, &batch.labels)?;
            let loss_value = loss.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                progress.abandon();
                return Err(EngineError::NonFiniteLoss {
                    epoch: run.epoch,
                    batch: batch_no,
                    value: loss_value,
                    checkpoint: self.last_checkpoint.clone(),
                });
            }
            let correct = self.task.correct(&logits, &batch.labels)?;
            let grads = loss.backward()?;
            self.optimizer.step(self.params, &grads)?;
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
            if self.interrupt.is_triggered() {
                progress.abandon();
                return Ok(EpochEnd::Interrupted { batch: batch_no });
            }
        }
        if run.count == 0 {
            progress.abandon();
            return Err(EngineError::Data {
                what: "training data".into(),
                reason: format!("epoch {} produced no batches", run.epoch),
            });
        }
        Ok(EpochEnd::Done)
    }
}
