//! Keep-best: the best epoch by a metric, its weights saved as a complete model artifact, and
//! loaded back when the run ends.

use std::path::PathBuf;

use artifact::Metadata;
use pipeline::Metric;

use crate::checkpoint::BestRecord;
use crate::error::Result;
use crate::history::EpochRecord;
use crate::params::Params;
use crate::progress::{Verbosity, note};

/// Watches one metric and saves the weights of every epoch that improves it.
pub(crate) struct KeepBest {
    metric: Metric,
    /// Where the weights go (`None`: the best epoch is tracked, nothing is written).
    path: Option<PathBuf>,
    metadata: Metadata,
    verbosity: Verbosity,
}

impl KeepBest {
    /// Keep-best on `metric`, saving into `path` with `metadata` (the model's description).
    pub(crate) fn new(
        metric: Metric,
        path: Option<PathBuf>,
        metadata: Metadata,
        verbosity: Verbosity,
    ) -> Self {
        Self {
            metric,
            path,
            metadata,
            verbosity,
        }
    }

    /// Updates `best` with `record` and, when it improves, saves the weights.
    pub(crate) fn observe(
        &self,
        best: &mut Option<BestRecord>,
        record: &EpochRecord,
        params: &Params,
    ) -> Result<()> {
        let Some(value) = record.metric(self.metric) else {
            return Ok(());
        };
        if !self.metric.improves(value, best.map(|b| b.value), 0.0) {
            return Ok(());
        }
        if let Some(path) = &self.path {
            let mut meta = self.metadata.clone();
            meta.insert("engine.best_metric".into(), self.metric.name().into());
            meta.insert("engine.best_value".into(), value.to_string());
            meta.insert("engine.best_epoch".into(), record.epoch.to_string());
            params.save(path, &meta)?;
            let before = best
                .map(|b| format!("improved from {:.4} to {value:.4}", b.value))
                .unwrap_or_else(|| format!("is {value:.4}"));
            note(
                self.verbosity,
                &format!(
                    "Epoch {}: {} {before}, saving the weights to {}",
                    record.epoch,
                    self.metric,
                    path.display()
                ),
            );
        }
        *best = Some(BestRecord {
            metric: self.metric,
            value,
            epoch: record.epoch,
        });
        Ok(())
    }

    /// Loads the best epoch's saved weights into `params`; returns that epoch, or `None` when
    /// nothing was saved (the parameters keep the last epoch's weights).
    pub(crate) fn restore(
        &self,
        best: Option<BestRecord>,
        params: &Params,
    ) -> Result<Option<usize>> {
        match (best, &self.path) {
            (Some(best), Some(path)) if path.exists() => {
                params.load(path)?;
                Ok(Some(best.epoch))
            }
            _ => Ok(None),
        }
    }
}
