//! A linear probe: multinomial logistic regression with an L2 penalty on standardised feature
//! vectors, fitted to convergence on the full batch by L-BFGS (`argmin`).
//!
//! The objective is the mean negative log-likelihood plus `l2 / 2 · ‖W‖²` (the bias is not
//! penalised); it is strictly convex for `l2 > 0`, so the fit does not depend on a seed or an
//! initialisation, only on the photos. The matrix products run through `candle` on the CPU.

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// An [`EngineError::Data`] about the linear probe's input.
fn probe_error(reason: String) -> EngineError {
    EngineError::Data {
        what: "linear probe".into(),
        reason,
    }
}

/// Row-major feature vectors: `rows × dim` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    /// The values, row after row.
    pub values: Vec<f32>,
    /// The length of one row.
    pub dim: usize,
}

impl Rows {
    /// `values` as rows of length `dim` (an error when the length is not a multiple of it).
    pub fn new(values: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 || !values.len().is_multiple_of(dim) {
            return Err(probe_error(format!(
                "{} values are not rows of length {dim}",
                values.len()
            )));
        }
        Ok(Self { values, dim })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.values.len() / self.dim
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Self {
        let mut values = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            values.extend_from_slice(self.row(i));
        }
        Self {
            values,
            dim: self.dim,
        }
    }
}

/// Per-dimension mean and scale that map features to zero mean and unit variance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// The mean of every dimension.
    pub mean: Vec<f32>,
    /// One over the standard deviation of every dimension (0 for a constant dimension).
    pub inv_std: Vec<f32>,
}

impl Standardizer {
    /// The mean and standard deviation of `rows` (at least one row).
    pub fn fit(rows: &Rows) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = vec![0f64; rows.dim];
        for i in 0..rows.len() {
            for (m, &v) in mean.iter_mut().zip(rows.row(i)) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; rows.dim];
        for i in 0..rows.len() {
            for ((s, &v), m) in var.iter_mut().zip(rows.row(i)).zip(&mean) {
                *s += (f64::from(v) - m).powi(2);
            }
        }
        let inv_std = var
            .iter()
            .map(|s| {
                let sd = (s / n).sqrt();
                if sd > 1e-12 { (1.0 / sd) as f32 } else { 0.0 }
            })
            .collect();
        Self {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            inv_std,
        }
    }

    /// `rows` standardised.
    pub fn apply(&self, rows: &Rows) -> Rows {
        let mut values = rows.values.clone();
        for row in values.chunks_mut(rows.dim) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.inv_std) {
                *v = (*v - m) * s;
            }
        }
        Rows {
            values,
            dim: rows.dim,
        }
    }
}

/// How a linear probe is fitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearFit {
    /// The L2 penalty on the weights.
    pub l2: f64,
    /// The most L-BFGS iterations.
    pub max_iters: u64,
    /// Stop when the gradient's norm falls below this.
    pub tolerance: f64,
}

impl LinearFit {
    /// A fit with penalty `l2`, at most 500 iterations, gradient tolerance 1e-5.
    pub fn new(l2: f64) -> Self {
        Self {
            l2,
            max_iters: 500,
            tolerance: 1e-5,
        }
    }
}

/// A fitted multinomial logistic regression on standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearProbe {
    /// The standardisation fitted on the training rows.
    pub standardizer: Standardizer,
    /// `classes × dim` weights, row-major.
    pub weights: Vec<f32>,
    /// One bias per class.
    pub bias: Vec<f32>,
    /// The number of classes.
    pub classes: usize,
    /// The L2 penalty it was fitted with.
    pub l2: f64,
    /// The L-BFGS iterations it took.
    pub iterations: u64,
}

/// The objective on standardised rows, with the one-hot labels.
struct Objective {
    x: Tensor,
    onehot: Vec<f32>,
    n: usize,
    dim: usize,
    classes: usize,
    l2: f64,
    /// The last [`Objective::forward`]: its parameters, probabilities and NLL. The line
    /// search asks for the cost and then the gradient at the same point; this spares the
    /// second product `X · Wᵀ`.
    last: RefCell<Option<Evaluated>>,
}

/// Parameters, the probabilities they give and the mean NLL.
type Evaluated = (Vec<f64>, Vec<f32>, f64);

impl Objective {
    fn split(&self, p: &[f64]) -> candle_core::Result<(Tensor, Tensor)> {
        let k = self.classes;
        let w: Vec<f32> = p[..k * self.dim].iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = p[k * self.dim..].iter().map(|&v| v as f32).collect();
        Ok((
            Tensor::from_vec(w, (k, self.dim), &Device::Cpu)?,
            Tensor::from_vec(b, k, &Device::Cpu)?,
        ))
    }

    /// [`Objective::forward`] at `p`, reused when `p` is the last point asked for.
    fn forward_cached(&self, p: &[f64]) -> candle_core::Result<(Vec<f32>, f64)> {
        if let Some((at, probs, nll)) = self.last.borrow().as_ref()
            && at.as_slice() == p
        {
            return Ok((probs.clone(), *nll));
        }
        let (probs, nll) = self.forward(p)?;
        *self.last.borrow_mut() = Some((p.to_vec(), probs.clone(), nll));
        Ok((probs, nll))
    }

    /// The softmax probabilities `n × classes` and the mean NLL.
    fn forward(&self, p: &[f64]) -> candle_core::Result<(Vec<f32>, f64)> {
        let (w, b) = self.split(p)?;
        let logits = self.x.matmul(&w.t()?)?.broadcast_add(&b)?;
        let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let k = self.classes;
        let mut probs = vec![0f32; logits.len()];
        let mut nll = 0f64;
        for ((row, out), y) in logits
            .chunks(k)
            .zip(probs.chunks_mut(k))
            .zip(self.onehot.chunks(k))
        {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = row.iter().map(|&z| f64::from(z - max).exp()).sum();
            let lse = f64::from(max) + sum.ln();
            for ((o, &z), &t) in out.iter_mut().zip(row).zip(y) {
                *o = (f64::from(z) - lse).exp() as f32;
                if t > 0.0 {
                    nll += lse - f64::from(z);
                }
            }
        }
        Ok((probs, nll / self.n as f64))
    }

    fn penalty(&self, p: &[f64]) -> f64 {
        let w = &p[..self.classes * self.dim];
        0.5 * self.l2 * w.iter().map(|v| v * v).sum::<f64>()
    }
}

fn argmin_error(e: candle_core::Error) -> argmin::core::Error {
    argmin::core::Error::msg(e.to_string())
}

impl CostFunction for Objective {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        let (_, nll) = self.forward_cached(p).map_err(argmin_error)?;
        Ok(nll + self.penalty(p))
    }
}

impl Gradient for Objective {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        let (probs, _) = self.forward_cached(p).map_err(argmin_error)?;
        let k = self.classes;
        let inv_n = 1.0 / self.n as f32;
        let residual: Vec<f32> = probs
            .iter()
            .zip(&self.onehot)
            .map(|(p, t)| (p - t) * inv_n)
            .collect();
        let mut bias = vec![0f64; k];
        for row in residual.chunks(k) {
            for (b, &r) in bias.iter_mut().zip(row) {
                *b += f64::from(r);
            }
        }
        let g = Tensor::from_vec(residual, (self.n, k), &Device::Cpu).map_err(argmin_error)?;
        let gw: Vec<f32> = g
            .t()
            .and_then(|gt| gt.contiguous())
            .and_then(|gt| gt.matmul(&self.x))
            .and_then(|m| m.flatten_all())
            .and_then(|m| m.to_vec1())
            .map_err(argmin_error)?;
        let mut out: Vec<f64> = gw
            .iter()
            .zip(&p[..k * self.dim])
            .map(|(&g, &w)| f64::from(g) + self.l2 * w)
            .collect();
        out.extend(bias);
        Ok(out)
    }
}

impl LinearProbe {
    /// Fits a probe to `rows` (raw features: the probe standardises them itself) with labels
    /// in `0..classes`. `warm` starts L-BFGS from an earlier probe of the same shape (a path of
    /// penalties converges in fewer iterations); the optimum is the same.
    pub fn fit(
        rows: &Rows,
        labels: &[u32],
        classes: usize,
        fit: LinearFit,
        warm: Option<&LinearProbe>,
    ) -> Result<Self> {
        if rows.len() != labels.len() || rows.is_empty() {
            return Err(probe_error(format!(
                "{} feature rows for {} labels",
                rows.len(),
                labels.len()
            )));
        }
        if classes < 2 {
            return Err(probe_error(format!(
                "a classifier needs at least two classes, got {classes}"
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(probe_error(format!(
                "label {bad} is outside the {classes} classes"
            )));
        }
        if !(fit.l2 > 0.0 && fit.l2.is_finite()) {
            return Err(EngineError::Config {
                key: "l2".into(),
                reason: format!("the L2 penalty must be positive, got {}", fit.l2),
            });
        }
        let standardizer = Standardizer::fit(rows);
        let z = standardizer.apply(rows);
        let n = z.len();
        let dim = z.dim;
        let mut onehot = vec![0f32; n * classes];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * classes + l as usize] = 1.0;
        }
        let objective = Objective {
            x: Tensor::from_vec(z.values, (n, dim), &Device::Cpu)?,
            onehot,
            n,
            dim,
            classes,
            l2: fit.l2,
            last: RefCell::new(None),
        };
        let init: Vec<f64> = match warm {
            Some(w) if w.weights.len() == classes * dim && w.bias.len() == classes => w
                .weights
                .iter()
                .chain(&w.bias)
                .map(|&v| f64::from(v))
                .collect(),
            _ => vec![0.0; classes * dim + classes],
        };
        let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
            .with_tolerance_grad(fit.tolerance)
            .and_then(|s| s.with_tolerance_cost(1e-12))
            .map_err(|e| probe_error(format!("L-BFGS settings: {e}")))?;
        let result = Executor::new(objective, solver)
            .configure(|state| state.param(init).max_iters(fit.max_iters))
            .run()
            .map_err(|e| probe_error(format!("fitting the linear probe: {e}")))?;
        let state = result.state();
        let iterations = state.get_iter();
        let best = state
            .get_best_param()
            .or_else(|| state.get_param())
            .cloned()
            .ok_or_else(|| probe_error("L-BFGS returned no parameters".into()))?;
        Ok(Self {
            standardizer,
            weights: best[..classes * dim].iter().map(|&v| v as f32).collect(),
            bias: best[classes * dim..].iter().map(|&v| v as f32).collect(),
            classes,
            l2: fit.l2,
            iterations,
        })
    }

    /// The class probabilities of `rows` (raw features), `rows.len() × classes`, row-major.
    pub fn probabilities(&self, rows: &Rows) -> Result<Vec<f32>> {
        let dim = self.weights.len() / self.classes;
        if rows.dim != dim {
            return Err(probe_error(format!(
                "the probe takes rows of length {dim}, got {}",
                rows.dim
            )));
        }
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let z = self.standardizer.apply(rows);
        let x = Tensor::from_vec(z.values, (rows.len(), dim), &Device::Cpu)?;
        let w = Tensor::from_slice(&self.weights, (self.classes, dim), &Device::Cpu)?;
        let b = Tensor::from_slice(&self.bias, self.classes, &Device::Cpu)?;
        let logits = x.matmul(&w.t()?)?.broadcast_add(&b)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        Ok(probs.flatten_all()?.to_vec1()?)
    }

    /// The accuracy on `rows` with `labels`.
    pub fn accuracy(&self, rows: &Rows, labels: &[u32]) -> Result<f64> {
        let probs = self.probabilities(rows)?;
        let correct = probs
            .chunks(self.classes)
            .zip(labels)
            .filter(|(p, y)| crate::argmax(p) == **y as usize)
            .count();
        Ok(correct as f64 / labels.len().max(1) as f64)
    }
}

/// The mean negative log-likelihood of `labels` under probability rows `probs` (`classes` per
/// row), with probabilities clamped away from 0.
pub fn log_loss(probs: &[f32], labels: &[u32], classes: usize) -> f64 {
    let total: f64 = probs
        .chunks(classes)
        .zip(labels)
        .map(|(p, &y)| -f64::from(p[y as usize]).max(1e-15).ln())
        .sum();
    total / labels.len().max(1) as f64
}

/// Fits a probe with `l2` on every fold's complement and returns the held-out probabilities of
/// every row (`rows.len() × classes`), each from the fold that did not see it.
pub fn out_of_fold(
    rows: &Rows,
    labels: &[u32],
    classes: usize,
    folds: &[Vec<usize>],
    l2: f64,
) -> Result<Vec<f32>> {
    let parts: Vec<(Vec<usize>, Vec<f32>)> = folds
        .par_iter()
        .map(|held| {
            let fit_rows = complement(rows.len(), held);
            let fit_labels: Vec<u32> = fit_rows.iter().map(|&i| labels[i]).collect();
            let probe = LinearProbe::fit(
                &rows.select(&fit_rows),
                &fit_labels,
                classes,
                LinearFit::new(l2),
                None,
            )?;
            Ok((held.clone(), probe.probabilities(&rows.select(held))?))
        })
        .collect::<Result<_>>()?;
    let mut probs = vec![0f32; rows.len() * classes];
    for (held, p) in parts {
        for (&i, row) in held.iter().zip(p.chunks(classes)) {
            probs[i * classes..(i + 1) * classes].copy_from_slice(row);
        }
    }
    Ok(probs)
}

/// The indices of `0..n` not in the sorted list `held`.
fn complement(n: usize, held: &[usize]) -> Vec<usize> {
    let mut out = Vec::with_capacity(n - held.len());
    let mut h = held.iter().peekable();
    for i in 0..n {
        if h.peek() == Some(&&i) {
            h.next();
        } else {
            out.push(i);
        }
    }
    out
}

/// The penalty of `candidates` with the lowest mean held-out log-loss over `folds` (ties: the
/// larger penalty), and every candidate's loss. Each fold walks the penalties from the largest
/// down, warm-starting each fit from the previous one.
pub fn choose_l2(
    rows: &Rows,
    labels: &[u32],
    classes: usize,
    folds: &[Vec<usize>],
    candidates: &[f64],
) -> Result<(f64, Vec<(f64, f64)>)> {
    let mut path: Vec<f64> = candidates.to_vec();
    path.sort_by(|a, b| b.total_cmp(a));
    path.dedup();
    let per_fold: Vec<Vec<f64>> = folds
        .par_iter()
        .map(|held| {
            let fit_rows = complement(rows.len(), held);
            let fit_labels: Vec<u32> = fit_rows.iter().map(|&i| labels[i]).collect();
            let held_labels: Vec<u32> = held.iter().map(|&i| labels[i]).collect();
            let (x, hx) = (rows.select(&fit_rows), rows.select(held));
            let mut warm: Option<LinearProbe> = None;
            let mut losses = Vec::with_capacity(path.len());
            for &l2 in &path {
                let probe =
                    LinearProbe::fit(&x, &fit_labels, classes, LinearFit::new(l2), warm.as_ref())?;
                losses.push(log_loss(&probe.probabilities(&hx)?, &held_labels, classes));
                warm = Some(probe);
            }
            Ok(losses)
        })
        .collect::<Result<_>>()?;
    let table: Vec<(f64, f64)> = path
        .iter()
        .enumerate()
        .map(|(j, &l2)| {
            let mean = per_fold.iter().map(|l| l[j]).sum::<f64>() / per_fold.len() as f64;
            (l2, mean)
        })
        .collect();
    let best = table
        .iter()
        .fold(None::<(f64, f64)>, |best, &(l2, loss)| match best {
            Some((_, b)) if b <= loss => best,
            _ => Some((l2, loss)),
        })
        .ok_or_else(|| probe_error("no L2 penalty to choose from".into()))?;
    Ok((best.0, table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Two Gaussian blobs in 5 dimensions, centres ±`shift` on dimension 0.
    fn blobs(n: usize, shift: f32, seed: u64) -> (Rows, Vec<u32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let y = (i % 2) as u32;
            for d in 0..5 {
                let noise: f32 = rng.random_range(-1.0..1.0);
                let centre = if d == 0 {
                    (y as f32 * 2.0 - 1.0) * shift
                } else {
                    0.0
                };
                values.push(centre + noise + 10.0);
            }
            labels.push(y);
        }
        (Rows::new(values, 5).unwrap(), labels)
    }

    #[test]
    fn the_gradient_vanishes_at_the_fit_and_matches_finite_differences() {
        let (rows, labels) = blobs(60, 0.3, 1);
        let probe = LinearProbe::fit(&rows, &labels, 2, LinearFit::new(0.1), None).unwrap();
        let z = probe.standardizer.apply(&rows);
        let mut onehot = vec![0f32; 120];
        for (i, &l) in labels.iter().enumerate() {
            onehot[i * 2 + l as usize] = 1.0;
        }
        let objective = Objective {
            x: Tensor::from_vec(z.values, (60, 5), &Device::Cpu).unwrap(),
            onehot,
            n: 60,
            dim: 5,
            classes: 2,
            l2: 0.1,
            last: RefCell::new(None),
        };
        let at: Vec<f64> = probe
            .weights
            .iter()
            .chain(&probe.bias)
            .map(|&v| f64::from(v))
            .collect();
        let g = objective.gradient(&at).unwrap();
        let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(norm < 1e-4, "gradient norm {norm} at the optimum");
        // Away from the optimum, the analytic gradient matches central differences.
        let p: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
        let g = objective.gradient(&p).unwrap();
        for i in 0..12 {
            let h = 1e-2;
            let (mut a, mut b) = (p.clone(), p.clone());
            a[i] += h;
            b[i] -= h;
            let numeric = (objective.cost(&a).unwrap() - objective.cost(&b).unwrap()) / (2.0 * h);
            assert!((numeric - g[i]).abs() < 2e-3, "{i}: {numeric} vs {}", g[i]);
        }
    }

    #[test]
    fn separable_blobs_are_learned_and_a_stronger_penalty_shrinks_the_weights() {
        let (rows, labels) = blobs(200, 1.5, 2);
        let weak = LinearProbe::fit(&rows, &labels, 2, LinearFit::new(1e-3), None).unwrap();
        let strong = LinearProbe::fit(&rows, &labels, 2, LinearFit::new(1.0), Some(&weak)).unwrap();
        let (test, test_labels) = blobs(200, 1.5, 3);
        assert!(weak.accuracy(&test, &test_labels).unwrap() > 0.95);
        let norm = |p: &LinearProbe| p.weights.iter().map(|v| v * v).sum::<f32>();
        assert!(norm(&strong) < norm(&weak) / 4.0);
        let probs = weak.probabilities(&test).unwrap();
        for row in probs.chunks(2) {
            assert!((row[0] + row[1] - 1.0).abs() < 1e-5);
        }
        assert!(log_loss(&probs, &test_labels, 2) < 0.2);
        // The same photos, the same fit.
        let again = LinearProbe::fit(&rows, &labels, 2, LinearFit::new(1e-3), None).unwrap();
        assert_eq!(again, weak);
    }

    #[test]
    fn complement_skips_the_held_rows() {
        assert_eq!(complement(6, &[1, 4]), vec![0, 2, 3, 5]);
        assert_eq!(complement(3, &[]), vec![0, 1, 2]);
    }

    #[test]
    fn out_of_fold_rows_come_from_the_fold_that_did_not_see_them() {
        let (rows, labels) = blobs(40, 1.5, 5);
        let folds: Vec<Vec<usize>> = (0..4).map(|f| (f..40).step_by(4).collect()).collect();
        let (l2, table) = choose_l2(&rows, &labels, 2, &folds, &[1.0, 1e-2]).unwrap();
        assert_eq!(table.len(), 2);
        assert!(table.iter().any(|&(c, _)| c == l2));
        let probs = out_of_fold(&rows, &labels, 2, &folds, l2).unwrap();
        // Row 0 is held out by fold 0 only: its probabilities are fold 0's probe's.
        let fit_rows = complement(40, &folds[0]);
        let fit_labels: Vec<u32> = fit_rows.iter().map(|&i| labels[i]).collect();
        let probe = LinearProbe::fit(
            &rows.select(&fit_rows),
            &fit_labels,
            2,
            LinearFit::new(l2),
            None,
        )
        .unwrap();
        let expected = probe.probabilities(&rows.select(&[0])).unwrap();
        assert_eq!(&probs[..2], &expected[..]);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (rows, labels) = blobs(10, 1.0, 4);
        assert!(LinearProbe::fit(&rows, &labels[..9], 2, LinearFit::new(0.1), None).is_err());
        assert!(LinearProbe::fit(&rows, &labels, 1, LinearFit::new(0.1), None).is_err());
        assert!(LinearProbe::fit(&rows, &labels, 2, LinearFit::new(0.0), None).is_err());
        let bad: Vec<u32> = labels.iter().map(|l| l + 5).collect();
        assert!(LinearProbe::fit(&rows, &bad, 2, LinearFit::new(0.1), None).is_err());
        assert!(Rows::new(vec![1.0; 7], 5).is_err());
    }
}
