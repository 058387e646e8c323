//! The per-epoch training history, written as CSV and JSON.

use crate::error::{EngineError, Result};
use pipeline::Metric;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// The epoch, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's samples.
    pub loss: f64,
    /// Training accuracy over the epoch's samples.
    pub acc: f64,
    /// Validation loss after the epoch (absent without validation data).
    pub val_loss: Option<f64>,
    /// Validation accuracy after the epoch (absent without validation data).
    pub val_acc: Option<f64>,
    /// Wall-clock seconds the epoch took, validation included.
    pub seconds: f64,
    /// Of those, the seconds validation took (absent without validation data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_seconds: Option<f64>,
    /// The learning rate used.
    pub lr: f64,
}

impl EpochRecord {
    /// The value of `metric` in this epoch (absent for a validation metric without validation
    /// data).
    pub fn metric(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Loss => Some(self.loss),
            Metric::Acc => Some(self.acc),
            Metric::ValLoss => self.val_loss,
            Metric::ValAcc => self.val_acc,
        }
    }

    /// The Keras-style summary: `loss: 0.5123 - acc: 0.7410 - val_loss: 0.4800 - val_acc: 0.7790`.
    pub fn metrics_line(&self) -> String {
        let mut s = format!("loss: {:.4} - acc: {:.4}", self.loss, self.acc);
        if let Some(v) = self.val_loss {
            let _ = write!(s, " - val_loss: {v:.4}");
        }
        if let Some(v) = self.val_acc {
            let _ = write!(s, " - val_acc: {v:.4}");
        }
        s
    }
}

/// Every epoch's figures, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// The epochs.
    pub epochs: Vec<EpochRecord>,
}

/// The CSV header.
const CSV_HEADER: &str = "epoch,loss,acc,val_loss,val_acc,seconds,val_seconds,lr";

impl History {
    /// The history as CSV (`epoch,loss,acc,val_loss,val_acc,seconds,val_seconds,lr`; missing validation
    /// figures are empty cells). Numbers are written in full precision.
    pub fn to_csv(&self) -> String {
        let mut s = String::from(CSV_HEADER);
        s.push('\n');
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        for r in &self.epochs {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{}",
                r.epoch,
                r.loss,
                r.acc,
                opt(r.val_loss),
                opt(r.val_acc),
                r.seconds,
                opt(r.val_seconds),
                r.lr
            );
        }
        s
    }

    /// The history as pretty-printed JSON (`{"epochs": [{"epoch": 1, "loss": ...}, ...]}`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{\"epochs\": []}".into())
    }

    /// Reads a history from its JSON form.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| EngineError::Data {
            what: "history".into(),
            reason: e.to_string(),
        })
    }

    /// Writes the CSV to `csv` and the JSON to `json`, each atomically.
    pub fn write(&self, csv: &Path, json: &Path) -> Result<()> {
        artifact::atomic_write(csv, self.to_csv().as_bytes())?;
        let mut j = self.to_json();
        j.push('\n');
        artifact::atomic_write(json, j.as_bytes())?;
        Ok(())
    }

    /// The last epoch's record.
    pub fn last(&self) -> Option<&EpochRecord> {
        self.epochs.last()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, val: bool) -> EpochRecord {
        EpochRecord {
            epoch,
            loss: 0.5 / epoch as f64,
            acc: 0.7,
            val_loss: val.then_some(0.25),
            val_acc: val.then_some(0.875),
            seconds: 1.5,
            val_seconds: None,
            lr: 1e-3,
        }
    }

    #[test]
    fn csv_and_json_forms() {
        let h = History {
            epochs: vec![record(1, true), record(2, false)],
        };
        assert_eq!(
            h.to_csv(),
            "epoch,loss,acc,val_loss,val_acc,seconds,val_seconds,lr\n\
             1,0.5,0.7,0.25,0.875,1.5,,0.001\n\
             2,0.25,0.7,,,1.5,,0.001\n"
        );
        assert_eq!(History::from_json(&h.to_json()).unwrap(), h);
        assert_eq!(
            record(1, true).metrics_line(),
            "loss: 0.5000 - acc: 0.7000 - val_loss: 0.2500 - val_acc: 0.8750"
        );
        assert_eq!(
            record(1, false).metrics_line(),
            "loss: 0.5000 - acc: 0.7000"
        );
    }
}
