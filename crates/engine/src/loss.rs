//! Losses and accuracy computed from logits.

use crate::error::{EngineError, Result};
use candle_core::{D, DType, Tensor};

/// What a network's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Two classes, one sigmoid unit (Keras' `binary` class mode): the logit is the log-odds of
    /// class 1. Loss: binary cross-entropy.
    Binary,
    /// Three or more classes, one softmax unit each (Keras' `categorical`). Loss: categorical
    /// cross-entropy on class indices.
    Categorical {
        /// The number of classes (= output units).
        classes: usize,
    },
}

impl Task {
    /// The task of a network with `units` outputs: 1 is binary, 2 or more categorical.
    pub fn from_units(units: usize) -> Result<Self> {
        match units {
            0 => Err(EngineError::config(
                "output_units",
                "a network needs at least one output unit",
            )),
            1 => Ok(Self::Binary),
            n => Ok(Self::Categorical { classes: n }),
        }
    }

    /// The number of classes.
    pub fn classes(self) -> usize {
        match self {
            Self::Binary => 2,
            Self::Categorical { classes } => classes,
        }
    }

    /// The number of output units.
    pub fn units(self) -> usize {
        match self {
            Self::Binary => 1,
            Self::Categorical { classes } => classes,
        }
    }

    /// The mean loss over the batch, from logits `[N, units]` and class indices `[N]` (u32).
    ///
    /// Binary: `max(z, 0) - z·y + log(1 + exp(-|z|))`, the stable form of
    /// `-(y·log σ(z) + (1-y)·log(1-σ(z)))`. Categorical: `-log_softmax(z)[y]`, with the
    /// log-sum-exp taken after subtracting the row maximum.
    pub fn loss(self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        self.check(logits, labels)?;
        match self {
            Self::Binary => {
                let z = logits.flatten_all()?;
                let y = labels.to_dtype(z.dtype())?;
                let per_sample = ((z.relu()? - (&z * &y)?)?
                    + z.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
                Ok(per_sample.mean_all()?)
            }
            Self::Categorical { .. } => {
                let log_p = candle_nn::ops::log_softmax(logits, D::Minus1)?;
                let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?;
                Ok(picked.mean_all()?.neg()?)
            }
        }
    }

    /// The predicted class of each sample (`[N]`, u32): binary `z > 0` (probability above 0.5,
    /// Keras' threshold), categorical the arg-max.
    pub fn predict(self, logits: &Tensor) -> Result<Tensor> {
        match self {
            Self::Binary => Ok(logits.flatten_all()?.gt(0.0)?.to_dtype(DType::U32)?),
            Self::Categorical { .. } => Ok(logits.argmax(D::Minus1)?.to_dtype(DType::U32)?),
        }
    }

    /// The number of correctly classified samples in the batch.
    pub fn correct(self, logits: &Tensor, labels: &Tensor) -> Result<usize> {
        let hits = self
            .predict(logits)?
            .eq(labels)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()?;
        Ok(hits as usize)
    }

    /// Checks the shapes of logits and labels.
    fn check(self, logits: &Tensor, labels: &Tensor) -> Result<()> {
        let n = labels.dims1().map_err(|_| {
            EngineError::config(
                "labels",
                format!("expected class indices [N], got shape {:?}", labels.dims()),
            )
        })?;
        if logits.dims() != [n, self.units()] {
            return Err(EngineError::config(
                "output_units",
                format!(
                    "the network returned logits of shape {:?} for {n} labels, expected [{n}, {}]",
                    logits.dims(),
                    self.units()
                ),
            ));
        }
        if labels.dtype() != DType::U32 {
            return Err(EngineError::config(
                "labels",
                format!("expected u32 class indices, got {:?}", labels.dtype()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32], shape: (usize, usize)) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    fn labels(v: &[u32]) -> Tensor {
        Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()
    }

    fn scalar(x: Tensor) -> f64 {
        f64::from(x.to_scalar::<f32>().unwrap())
    }

    #[test]
    fn binary_cross_entropy_matches_definition_and_is_stable() {
        let z = [2.0f32, -1.0, 0.5, 0.0];
        let y = [1u32, 0, 0, 1];
        let expected: f64 = z
            .iter()
            .zip(y)
            .map(|(&z, y)| {
                let p = 1.0 / (1.0 + (-f64::from(z)).exp());
                if y == 1 { -p.ln() } else { -(1.0 - p).ln() }
            })
            .sum::<f64>()
            / 4.0;
        let l = scalar(Task::Binary.loss(&t(&z, (4, 1)), &labels(&y)).unwrap());
        assert!((l - expected).abs() < 1e-6, "{l} vs {expected}");
        // Huge logits give finite losses: ~0 when right, ~|z| when wrong.
        let l = scalar(
            Task::Binary
                .loss(&t(&[1000.0, -1000.0], (2, 1)), &labels(&[1, 1]))
                .unwrap(),
        );
        assert!((l - 500.0).abs() < 1e-3, "{l}");
        assert_eq!(
            Task::Binary.correct(&t(&z, (4, 1)), &labels(&y)).unwrap(),
            2
        );
    }

    #[test]
    fn categorical_cross_entropy_matches_definition_and_is_stable() {
        let z = [1.0f32, 2.0, 3.0, 0.0, 0.0, 5.0];
        let y = [0u32, 2];
        let row = |r: &[f32], k: usize| {
            let s: f64 = r.iter().map(|&v| f64::from(v).exp()).sum();
            -(f64::from(r[k]).exp() / s).ln()
        };
        let expected = (row(&z[..3], 0) + row(&z[3..], 2)) / 2.0;
        let task = Task::from_units(3).unwrap();
        let l = scalar(task.loss(&t(&z, (2, 3)), &labels(&y)).unwrap());
        assert!((l - expected).abs() < 1e-6, "{l} vs {expected}");
        let l = scalar(
            task.loss(&t(&[1000.0, 0.0, -1000.0], (1, 3)), &labels(&[1]))
                .unwrap(),
        );
        assert!((l - 1000.0).abs() < 1e-3, "{l}");
        assert_eq!(task.correct(&t(&z, (2, 3)), &labels(&y)).unwrap(), 1);
    }

    #[test]
    fn shape_mismatches_are_errors() {
        let e = Task::Binary
            .loss(&t(&[0.0; 6], (2, 3)), &labels(&[0, 1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[2, 1]"), "{e}");
        assert!(Task::from_units(0).is_err());
        assert_eq!(Task::from_units(1).unwrap(), Task::Binary);
    }
}
