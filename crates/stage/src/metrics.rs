//! `metrics.json`: one schema for the three training stages, written by the template and read
//! by the report as it is written.

use std::collections::BTreeMap;

use artifact::{Metadata, Provenance};
use engine::{BestRecord, EpochRecord, Evaluation, History};
use imagedata::ClassMode;
use serde::{Deserialize, Serialize};

/// What a training stage's `metrics.json` says about its run and its saved model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The stage that wrote it (`train-small`, `train-top`, `finetune`).
    pub stage: String,
    /// The pretrained backbone the model builds on (absent for the small convnet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<String>,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// `binary` (one sigmoid unit) or `categorical` (softmax).
    pub class_mode: ClassMode,
    /// Training samples per epoch (images, or cached views).
    pub train_samples: usize,
    /// Validation samples.
    pub validation_samples: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The device trained on.
    pub device: String,
    /// `completed` or `early_stopped`.
    pub status: String,
    /// Epochs in the history (those before a resume included).
    pub epochs: usize,
    /// The last and best epochs, and the saved model's validation figures.
    #[serde(flatten)]
    pub summary: FitSummary,
    /// Epoch times and throughput of the epochs this invocation ran (`None` when it ran none).
    pub timing: Option<Timing>,
    /// Seconds this invocation spent before training: reading and decoding data, building
    /// caches.
    pub prepare_seconds: f64,
    /// Wall-clock seconds of this invocation, preparation included.
    pub seconds: f64,
    /// What the stage adds of its own (the fine-tuning mode and views, augmented features,
    /// cache times), as `key: value`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, serde_json::Value>,
}

/// The best and last epochs and the saved model's validation figures.
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

    /// The saved model's metadata: `metadata` (its description), `provenance`, and the saved
    /// epoch and its validation accuracy and loss as `<prefix>.epoch`, `<prefix>.val_acc` and
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

/// How long the epochs of one invocation took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The epochs timed (those run by this invocation; a resumed partial epoch counts with the
    /// time spent on it before the interruption).
    pub epochs: usize,
    /// Mean wall-clock seconds per epoch, training and validation.
    pub seconds_per_epoch: f64,
    /// Mean seconds per epoch spent training (augmentation, forward, backward, update).
    pub train_seconds_per_epoch: f64,
    /// Mean seconds per epoch spent validating.
    pub validation_seconds_per_epoch: f64,
    /// Training samples per second (`train_samples / train_seconds_per_epoch`).
    pub train_samples_per_second: f64,
    /// Validation samples per second.
    pub validation_samples_per_second: f64,
}

impl Timing {
    /// The timing of the last `epochs` records of `history` (the epochs one invocation ran),
    /// from each record's total and validation seconds; `None` when there are none.
    pub fn of(
        history: &History,
        epochs: usize,
        train_samples: usize,
        validation_samples: usize,
    ) -> Option<Self> {
        let n = epochs.min(history.epochs.len());
        if n == 0 {
            return None;
        }
        let ran = &history.epochs[history.epochs.len() - n..];
        let per_epoch = ran.iter().map(|r| r.seconds).sum::<f64>() / n as f64;
        let validation = ran.iter().filter_map(|r| r.val_seconds).sum::<f64>() / n as f64;
        let training = (per_epoch - validation).max(f64::MIN_POSITIVE);
        Some(Self {
            epochs: n,
            seconds_per_epoch: per_epoch,
            train_seconds_per_epoch: training,
            validation_seconds_per_epoch: validation,
            train_samples_per_second: train_samples as f64 / training,
            validation_samples_per_second: if validation > 0.0 {
                validation_samples as f64 / validation
            } else {
                0.0
            },
        })
    }
}

/// The summary of a finished run whose saved weights (those of `saved_epoch`) score
/// `evaluation` on the validation data.
pub fn summarize(
    history: &History,
    best: Option<BestRecord>,
    saved_epoch: usize,
    evaluation: &Evaluation,
) -> Option<FitSummary> {
    Some(FitSummary {
        final_epoch: history.last()?.clone(),
        best,
        saved_epoch,
        saved_val_loss: evaluation.loss,
        saved_val_acc: evaluation.acc,
        confusion_matrix: evaluation.confusion_matrix(),
    })
}
