//! RMSprop, SGD (momentum, Nesterov) and Adam with Keras' update rules, on candle tensors.
//!
//! The rules are those of Keras 3 (`keras/src/optimizers/*.py`), with `g` the gradient, `w` the
//! weight and `lr` the learning rate:
//!
//! - SGD: without momentum `w -= lr·g`; with momentum `m = momentum·m - lr·g`, then `w += m`,
//!   or with Nesterov `w += momentum·m - lr·g`.
//! - RMSprop: `v = rho·v + (1-rho)·g²`; centered: `a = rho·a + (1-rho)·g` and the denominator
//!   uses `v - a²`; `inc = lr·g / sqrt(v + epsilon)`; with momentum `m = momentum·m + inc`,
//!   `w -= m`, otherwise `w -= inc`.
//! - Adam (step `t` from 1): `m += (g - m)·(1-beta_1)`, `v += (g² - v)·(1-beta_2)`,
//!   `alpha = lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)`, `w -= alpha·m / (sqrt(v) + epsilon)`.
//!
//! State slots (`momentum`, `velocity`, `average_gradient`, Keras' names) start at zero and
//! exist only for trainable parameters.

use crate::config::OptimizerRule;
use crate::error::{EngineError, Result};
use crate::params::Params;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use std::collections::BTreeMap;
use std::path::Path;

/// An optimizer with its named, checkpointable state.
#[derive(Debug)]
pub struct Optimizer {
    rule: OptimizerRule,
    iterations: u64,
    /// `(parameter name, slot name)` → state tensor.
    slots: BTreeMap<(String, String), Tensor>,
}

impl Optimizer {
    /// An optimizer for the trainable parameters of `params`, with zeroed state.
    pub fn new(rule: OptimizerRule, params: &Params) -> Result<Self> {
        let mut slots = BTreeMap::new();
        for p in params.trainable() {
            for slot in slot_names(&rule) {
                let zeros = p.var.as_detached_tensor().zeros_like()?;
                slots.insert((p.name.clone(), slot.to_string()), zeros);
            }
        }
        Ok(Self {
            rule,
            iterations: 0,
            slots,
        })
    }

    /// The hyper-parameters.
    pub fn rule(&self) -> &OptimizerRule {
        &self.rule
    }

    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        self.rule.learning_rate()
    }

    /// The number of steps taken so far.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Updates every trainable parameter that has a gradient in `grads` (parameters the loss
    /// does not depend on are left alone, as Keras does), then counts one step.
    pub fn step(&mut self, params: &Params, grads: &GradStore) -> Result<()> {
        for p in params.trainable() {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            let w = p.var.as_detached_tensor();
            let g = g.detach().to_dtype(w.dtype())?;
            let new_w = self.update(&p.name, &w, &g)?;
            p.var.set(&new_w)?;
        }
        self.iterations += 1;
        Ok(())
    }

    fn slot(&self, name: &str, slot: &str) -> Result<&Tensor> {
        self.slots
            .get(&(name.to_string(), slot.to_string()))
            .ok_or_else(|| {
                EngineError::config(
                    "parameters",
                    format!("parameter `{name}` has no optimizer state `{slot}`"),
                )
            })
    }

    fn set_slot(&mut self, name: &str, slot: &str, value: Tensor) {
        self.slots
            .insert((name.to_string(), slot.to_string()), value);
    }

    /// The new value of weight `w` of parameter `name` with gradient `g`, updating its state.
    fn update(&mut self, name: &str, w: &Tensor, g: &Tensor) -> Result<Tensor> {
        match self.rule {
            OptimizerRule::Sgd {
                learning_rate: lr,
                momentum,
                nesterov,
            } => {
                if momentum == 0.0 {
                    return Ok((w - g.affine(lr, 0.0)?)?);
                }
                let lr_g = g.affine(lr, 0.0)?;
                let m = (self.slot(name, "momentum")?.affine(momentum, 0.0)? - &lr_g)?;
                let new_w = if nesterov {
                    (w + (m.affine(momentum, 0.0)? - &lr_g)?)?
                } else {
                    (w + &m)?
                };
                self.set_slot(name, "momentum", m);
                Ok(new_w)
            }
            OptimizerRule::Rmsprop {
                learning_rate: lr,
                rho,
                momentum,
                epsilon,
                centered,
            } => {
                let v = (self.slot(name, "velocity")?.affine(rho, 0.0)?
                    + g.sqr()?.affine(1.0 - rho, 0.0)?)?;
                let denominator = if centered {
                    let a = (self.slot(name, "average_gradient")?.affine(rho, 0.0)?
                        + g.affine(1.0 - rho, 0.0)?)?;
                    let d = (&v - a.sqr()?)?.affine(1.0, epsilon)?;
                    self.set_slot(name, "average_gradient", a);
                    d
                } else {
                    v.affine(1.0, epsilon)?
                };
                let increment = g.affine(lr, 0.0)?.div(&denominator.sqrt()?)?;
                self.set_slot(name, "velocity", v);
                if momentum > 0.0 {
                    let m = (self.slot(name, "momentum")?.affine(momentum, 0.0)? + increment)?;
                    let new_w = (w - &m)?;
                    self.set_slot(name, "momentum", m);
                    Ok(new_w)
                } else {
                    Ok((w - increment)?)
                }
            }
            OptimizerRule::Adam {
                learning_rate: lr,
                beta_1,
                beta_2,
                epsilon,
            } => {
                // The step's scalars are computed in f64: `1 - beta_2^t` cancels badly in f32
                // for small t.
                let t = (self.iterations + 1) as f64;
                let b1_power = beta_1.powf(t);
                let b2_power = beta_2.powf(t);
                let alpha = lr * (1.0 - b2_power).sqrt() / (1.0 - b1_power);
                let m = self.slot(name, "momentum")?;
                let m = (m + (g - m)?.affine(1.0 - beta_1, 0.0)?)?;
                let v = self.slot(name, "velocity")?;
                let v = (v + (g.sqr()? - v)?.affine(1.0 - beta_2, 0.0)?)?;
                let step = m
                    .affine(alpha, 0.0)?
                    .div(&v.sqrt()?.affine(1.0, epsilon)?)?;
                self.set_slot(name, "momentum", m);
                self.set_slot(name, "velocity", v);
                Ok((w - step)?)
            }
        }
    }

    /// The state tensors, named `optimizer/{parameter}/{slot}`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .map(|((p, s), t)| (format!("optimizer/{p}/{s}"), t.clone()))
            .collect()
    }

    /// Restores the step count and every state tensor (as named by
    /// [`Optimizer::state_tensors`]) from `tensors`; `path` names the file in errors.
    pub fn load_state(
        &mut self,
        iterations: u64,
        tensors: &BTreeMap<String, Tensor>,
        path: &Path,
    ) -> Result<()> {
        let expected: std::collections::BTreeSet<String> = self
            .slots
            .keys()
            .map(|(p, s)| format!("optimizer/{p}/{s}"))
            .collect();
        if let Some(extra) = tensors
            .keys()
            .filter(|k| k.starts_with("optimizer/"))
            .find(|k| !expected.contains(*k))
        {
            return Err(EngineError::checkpoint(
                path,
                format!(
                    "it holds optimizer state `{extra}` that this run does not have (was the \
                     optimizer, or the set of trainable parameters, different?)"
                ),
            ));
        }
        let mut restored = BTreeMap::new();
        for ((p, s), current) in &self.slots {
            let key = format!("optimizer/{p}/{s}");
            let t = tensors.get(&key).ok_or_else(|| {
                EngineError::checkpoint(
                    path,
                    format!(
                        "optimizer state `{key}` is missing (was the optimizer, or the set of \
                         trainable parameters, different?)"
                    ),
                )
            })?;
            if t.dims() != current.dims() {
                return Err(EngineError::checkpoint(
                    path,
                    format!(
                        "optimizer state `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        current.dims()
                    ),
                ));
            }
            let t = t.to_device(current.device())?.to_dtype(current.dtype())?;
            restored.insert((p.clone(), s.clone()), t);
        }
        self.slots = restored;
        self.iterations = iterations;
        Ok(())
    }
}

/// The state slots a rule keeps per trainable parameter.
fn slot_names(rule: &OptimizerRule) -> Vec<&'static str> {
    match *rule {
        OptimizerRule::Sgd { momentum, .. } if momentum != 0.0 => vec!["momentum"],
        OptimizerRule::Sgd { .. } => vec![],
        OptimizerRule::Rmsprop {
            momentum, centered, ..
        } => {
            let mut v = vec!["velocity"];
            if momentum > 0.0 {
                v.push("momentum");
            }
            if centered {
                v.push("average_gradient");
            }
            v
        }
        OptimizerRule::Adam { .. } => vec!["momentum", "velocity"],
    }
}
