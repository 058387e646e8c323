//! Scoring a network on a batch source, for validation during training and for evaluation of a
//! trained model.

use candle_core::Tensor;
use models::{Mode, Network};

use crate::data::BatchSource;
use crate::error::{EngineError, Result};
use crate::loss::Task;

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

/// The index of the largest value of `row` and that value (the first on ties; `(0, -inf)`
/// when no value exceeds negative infinity, as for an empty row or one of NaNs).
pub fn max_entry<T: Copy + Into<f64>>(row: &[T]) -> (usize, f64) {
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
            let v = v.into();
            if v > bv { (i, v) } else { (bi, bv) }
        })
}

/// The index of the largest value of `row` (the first on ties; 0 for an empty row).
pub fn argmax<T: Copy + Into<f64>>(row: &[T]) -> usize {
    max_entry(row).0
}

/// Runs `network` in evaluation mode over one pass of `source` (its epoch 0) and returns the
/// loss, the accuracy and every sample's prediction and probabilities.
pub fn evaluate(network: &dyn Network, source: &mut dyn BatchSource) -> Result<Evaluation> {
    let task = Task::from_units(network.output_units())?;
    run_eval(network, source, task, true, "evaluation data")
}

/// Checks that every label names a class of `task`; returns the labels.
pub(crate) fn check_labels(task: Task, labels: &Tensor, what: &str) -> Result<Vec<u32>> {
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

/// One evaluation pass; with `collect`, every sample's prediction and probabilities too.
pub(crate) fn run_eval(
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
