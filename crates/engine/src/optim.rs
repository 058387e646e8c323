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

use crate::error::{EngineError, Result};
use crate::fused::{self, Update2, Update3};
use crate::params::Params;
use candle_core::Tensor;
use candle_core::backprop::GradStore;
use pipeline::OptimizerRule;
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
            if !self.update_in_place(&p.name, &w, &g)? {
                let new_w = self.update(&p.name, &w, &g)?;
                p.var.set(&new_w)?;
            }
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

    /// Updates weight `w` of parameter `name` and its state in place with the fused CPU
    /// kernels of [`crate::fused`]; `false` (and nothing changed) when they do not apply: other
    /// devices or dtypes, non-contiguous tensors, centered RMSprop.
    fn update_in_place(&mut self, name: &str, w: &Tensor, g: &Tensor) -> Result<bool> {
        let slot_names = slot_names(&self.rule);
        let slots = slot_names
            .iter()
            .map(|slot| self.slot(name, slot).cloned())
            .collect::<Result<Vec<_>>>()?;
        let mut operands = vec![w, g];
        operands.extend(slots.iter());
        if !fused::applies(&operands) {
            return Ok(false);
        }
        let slot = |s: &str| &slots[slot_names.iter().position(|n| *n == s).unwrap_or(0)];
        match self.rule {
            OptimizerRule::Sgd {
                learning_rate: lr,
                momentum,
                nesterov,
            } => {
                if momentum == 0.0 {
                    w.inplace_op2(g, &Update2::Sgd { lr })?;
                    return Ok(true);
                }
                let m = slot("momentum");
                m.inplace_op2(g, &Update2::SgdMomentum { lr, momentum })?;
                if nesterov {
                    w.inplace_op3(m, g, &Update3::Nesterov { lr, momentum })?;
                } else {
                    w.inplace_op2(m, &Update2::Add)?;
                }
            }
            OptimizerRule::Rmsprop { centered: true, .. } => return Ok(false),
            OptimizerRule::Rmsprop {
                learning_rate: lr,
                rho,
                momentum,
                epsilon,
                centered: false,
            } => {
                let v = slot("velocity");
                v.inplace_op2(g, &Update2::RmspropVelocity { rho })?;
                if momentum > 0.0 {
                    let m = slot("momentum");
                    m.inplace_op3(
                        g,
                        v,
                        &Update3::RmspropMomentum {
                            lr,
                            momentum,
                            epsilon,
                        },
                    )?;
                    w.inplace_op2(m, &Update2::Sub)?;
                } else {
                    w.inplace_op3(g, v, &Update3::Rmsprop { lr, epsilon })?;
                }
            }
            OptimizerRule::Adam {
                learning_rate: lr,
                beta_1,
                beta_2,
                epsilon,
            } => {
                let (m, v) = (slot("momentum"), slot("velocity"));
                m.inplace_op2(g, &Update2::AdamMomentum { beta_1 })?;
                v.inplace_op2(g, &Update2::AdamVelocity { beta_2 })?;
                let alpha = adam_alpha(lr, beta_1, beta_2, self.iterations);
                w.inplace_op3(m, v, &Update3::Adam { alpha, epsilon })?;
            }
        }
        Ok(true)
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
                let alpha = adam_alpha(lr, beta_1, beta_2, self.iterations);
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
            // A copy: the fused updates write the state in place.
            let t = t
                .to_device(current.device())?
                .to_dtype(current.dtype())?
                .copy()?;
            restored.insert((p.clone(), s.clone()), t);
        }
        self.slots = restored;
        self.iterations = iterations;
        Ok(())
    }
}

/// Adam's step size `lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)` for step `t = iterations + 1`,
/// computed in f64: `1 - beta_2^t` cancels badly in f32 for small `t`.
fn adam_alpha(lr: f64, beta_1: f64, beta_2: f64, iterations: u64) -> f64 {
    let t = (iterations + 1) as f64;
    lr * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t))
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    /// The fused in-place kernels and the tensor-op path give bit-identical weights and state,
    /// for every rule, over several steps and a tensor large enough to be split in chunks.
    #[test]
    fn fused_updates_equal_the_tensor_path() {
        let n = 70_001;
        let rules = [
            OptimizerRule::Sgd {
                learning_rate: 0.01,
                momentum: 0.0,
                nesterov: false,
            },
            OptimizerRule::Sgd {
                learning_rate: 0.01,
                momentum: 0.9,
                nesterov: false,
            },
            OptimizerRule::Sgd {
                learning_rate: 0.01,
                momentum: 0.9,
                nesterov: true,
            },
            OptimizerRule::Rmsprop {
                learning_rate: 1e-3,
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
                centered: false,
            },
            OptimizerRule::Rmsprop {
                learning_rate: 1e-3,
                rho: 0.9,
                momentum: 0.5,
                epsilon: 1e-7,
                centered: false,
            },
            OptimizerRule::Adam {
                learning_rate: 1e-3,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7,
            },
        ];
        for rule in rules {
            let w0 = Tensor::from_vec(values(n, 1), n, &Device::Cpu).unwrap();
            let fused_var = Var::from_tensor(&w0).unwrap();
            let plain_var = Var::from_tensor(&w0).unwrap();
            let fused_params =
                Params::new([("w".to_string(), fused_var.clone())], |_| true).unwrap();
            let plain_params =
                Params::new([("w".to_string(), plain_var.clone())], |_| true).unwrap();
            let mut fused = Optimizer::new(rule, &fused_params).unwrap();
            let mut plain = Optimizer::new(rule, &plain_params).unwrap();
            for step in 0..4u32 {
                let g = Tensor::from_vec(values(n, 100 + step), n, &Device::Cpu).unwrap();
                let w = fused_var.as_detached_tensor();
                assert!(fused.update_in_place("w", &w, &g).unwrap(), "{rule:?}");
                fused.iterations += 1;
                let new_w = plain
                    .update("w", &plain_var.as_detached_tensor(), &g)
                    .unwrap();
                plain_var.set(&new_w).unwrap();
                plain.iterations += 1;
                let a: Vec<f32> = fused_var.as_tensor().to_vec1().unwrap();
                let b: Vec<f32> = plain_var.as_tensor().to_vec1().unwrap();
                assert!(
                    a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{rule:?} step {step}"
                );
                for ((key, s1), s2) in fused.slots.iter().zip(plain.slots.values()) {
                    let (x, y): (Vec<f32>, Vec<f32>) =
                        (s1.to_vec1().unwrap(), s2.to_vec1().unwrap());
                    assert!(
                        x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "{rule:?} {key:?}"
                    );
                }
            }
        }
    }

    /// Centered RMSprop and non-CPU-contiguous tensors take the tensor-op path.
    #[test]
    fn fused_updates_decline_what_they_do_not_cover() {
        let w = Tensor::from_vec(values(12, 1), (3, 4), &Device::Cpu).unwrap();
        let var = Var::from_tensor(&w).unwrap();
        let params = Params::new([("w".to_string(), var.clone())], |_| true).unwrap();
        let centered = OptimizerRule::Rmsprop {
            learning_rate: 1e-3,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: true,
        };
        let mut opt = Optimizer::new(centered, &params).unwrap();
        let g = Tensor::from_vec(values(12, 2), (3, 4), &Device::Cpu).unwrap();
        assert!(
            !opt.update_in_place("w", &var.as_detached_tensor(), &g)
                .unwrap()
        );
        let sgd = OptimizerRule::Sgd {
            learning_rate: 0.1,
            momentum: 0.0,
            nesterov: false,
        };
        let mut opt = Optimizer::new(sgd, &params).unwrap();
        let transposed = Tensor::from_vec(values(12, 2), (4, 3), &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        assert!(
            !opt.update_in_place("w", &var.as_detached_tensor(), &transposed)
                .unwrap()
        );
        assert_eq!(
            var.as_tensor().to_vec2::<f32>().unwrap(),
            w.to_vec2::<f32>().unwrap()
        );
    }
}
