//! The interface every network implements, and the output conventions.

use candle_core::{D, Result, Tensor};

use crate::error::ModelError;
use crate::layers::Mode;

/// A classifier network: maps a batch to logits `[N, units]`.
///
/// With [`Network::output_units`] = 1 the single logit is the log-odds of the second class
/// (Keras' `binary` class mode, sigmoid); with more units each is one class's logit (Keras'
/// `categorical`, softmax). The training engine runs [`Network::forward_t`] in
/// [`Mode::Train`]; inference runs it in [`Mode::Eval`].
pub trait Network {
    /// The forward pass, returning logits `[N, units]`.
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> Result<Tensor>;

    /// The number of output units.
    fn output_units(&self) -> usize;

    /// The forward pass in evaluation mode (dropout off).
    fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_t(x, &mut Mode::Eval)
    }

    /// Class probabilities `[N, classes]` in evaluation mode: for one unit `[1 - p, p]` with
    /// `p = sigmoid(logit)`, otherwise the softmax of the logits.
    fn predict_proba(&self, x: &Tensor) -> Result<Tensor> {
        probabilities(&self.forward_eval(x)?)
    }
}

impl<T: Network + ?Sized> Network for Box<T> {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> Result<Tensor> {
        (**self).forward_t(x, mode)
    }

    fn output_units(&self) -> usize {
        (**self).output_units()
    }
}

/// The number of output units for `classes` classes: 1 (sigmoid) for two, one per class
/// (softmax) for three or more.
pub fn units_for_classes(classes: usize) -> std::result::Result<usize, ModelError> {
    match classes {
        0 | 1 => Err(ModelError::InvalidConfig(format!(
            "a classifier needs at least two classes, got {classes}"
        ))),
        2 => Ok(1),
        n => Ok(n),
    }
}

/// Class probabilities `[N, classes]` from logits `[N, units]` (see
/// [`Network::predict_proba`]).
pub fn probabilities(logits: &Tensor) -> Result<Tensor> {
    match logits.dims() {
        [_, 1] => {
            let p = candle_nn::ops::sigmoid(logits)?;
            Tensor::cat(&[&p.affine(-1.0, 1.0)?, &p], 1)
        }
        [_, _] => candle_nn::ops::softmax(logits, D::Minus1),
        dims => candle_core::bail!("expected logits [N, units], got {dims:?}"),
    }
}
