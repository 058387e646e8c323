//! Temperature scaling (Guo et al., 2017): one scalar `T > 0` that divides a classifier's
//! logits, fitted by minimising the negative log-likelihood on held-out photos, and the
//! expected calibration error (ECE) with its reliability diagram.
//!
//! Dividing the logits by `T` leaves the order of every row unchanged, so the predicted class
//! (and the accuracy) cannot change; only the probabilities do. A one-unit (sigmoid) network's
//! logit `s` is treated as the two-class softmax of `[0, s]`, which is the same distribution.
//!
//! The fit minimises over `β = 1/T`, in which the NLL is convex (a log-sum-exp of lines minus
//! a line): its derivative `E_p[z] − z_y` increases with `β`, so bisection on its sign finds
//! the one minimum without a step size.

use serde::{Deserialize, Serialize};

/// The smallest and largest temperature [`fit_temperature`] returns. A validation set the
/// model separates perfectly has its NLL minimum at `T → 0`: the bound keeps the probabilities
/// finite and says so (the fit then sits on it).
pub const TEMPERATURE_RANGE: (f64, f64) = (0.05, 20.0);

/// The number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// Logit rows as the softmax sees them: a one-unit row `[s]` becomes `[0, s]`.
pub fn softmax_logits(logits: &[Vec<f32>]) -> Vec<Vec<f64>> {
    logits
        .iter()
        .map(|row| match row.as_slice() {
            [s] => vec![0.0, f64::from(*s)],
            _ => row.iter().map(|&v| f64::from(v)).collect(),
        })
        .collect()
}

/// The softmax of `row / t`, stably.
pub fn softmax(row: &[f64], t: f64) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|&z| ((z - max) / t).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The mean negative log-likelihood of `labels` under the softmax of `rows / t`.
pub fn nll(rows: &[Vec<f64>], labels: &[u32], t: f64) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let total: f64 = rows
        .iter()
        .zip(labels)
        .map(|(row, &y)| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lse = max / t + row.iter().map(|&z| ((z - max) / t).exp()).sum::<f64>().ln();
            lse - row.get(y as usize).copied().unwrap_or(0.0) / t
        })
        .sum();
    total / rows.len() as f64
}

/// The derivative of the mean NLL with respect to `β = 1/T`: the mean of `E_p[z] − z_y`.
fn nll_slope(rows: &[Vec<f64>], labels: &[u32], beta: f64) -> f64 {
    let t = 1.0 / beta;
    let total: f64 = rows
        .iter()
        .zip(labels)
        .map(|(row, &y)| {
            let p = softmax(row, t);
            let expected: f64 = p.iter().zip(row).map(|(p, z)| p * z).sum();
            expected - row.get(y as usize).copied().unwrap_or(0.0)
        })
        .sum();
    total / rows.len().max(1) as f64
}

/// The temperature that minimises the mean NLL of `labels` under `rows / T`, within
/// [`TEMPERATURE_RANGE`] (bisection on the derivative in `β = 1/T`, to 1e-10 relative).
/// An empty set gives 1 (no change).
pub fn fit_temperature(rows: &[Vec<f64>], labels: &[u32]) -> f64 {
    if rows.is_empty() {
        return 1.0;
    }
    let (t_min, t_max) = TEMPERATURE_RANGE;
    // β from small (high temperature) to large (low temperature).
    let (mut lo, mut hi) = ((1.0 / t_max).ln(), (1.0 / t_min).ln());
    if nll_slope(rows, labels, lo.exp()) >= 0.0 {
        return t_max;
    }
    if nll_slope(rows, labels, hi.exp()) <= 0.0 {
        return t_min;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if nll_slope(rows, labels, mid.exp()) < 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo < 1e-10 {
            break;
        }
    }
    1.0 / (0.5 * (lo + hi)).exp()
}

/// One bin of a reliability diagram: the photos whose top probability fell in
/// `(lower, upper]` (the first bin also takes 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// The bin's lower edge.
    pub lower: f64,
    /// The bin's upper edge.
    pub upper: f64,
    /// Photos in the bin.
    pub count: usize,
    /// Their mean top probability (0 for an empty bin).
    pub confidence: f64,
    /// The fraction of them predicted right (0 for an empty bin).
    pub accuracy: f64,
}

/// The reliability diagram of `probabilities` (one row per photo, summing to 1) against
/// `labels`, in `bins` equal-width bins of the top probability.
pub fn reliability(probabilities: &[Vec<f64>], labels: &[u32], bins: usize) -> Vec<ReliabilityBin> {
    let bins = bins.max(1);
    let mut count = vec![0usize; bins];
    let mut confidence = vec![0f64; bins];
    let mut correct = vec![0usize; bins];
    for (row, &y) in probabilities.iter().zip(labels) {
        let (best, p) = crate::max_entry(row);
        let b = ((p * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        confidence[b] += p;
        correct[b] += usize::from(best == y as usize);
    }
    (0..bins)
        .map(|b| {
            let n = count[b];
            let mean = |v: f64| if n == 0 { 0.0 } else { v / n as f64 };
            ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: n,
                confidence: mean(confidence[b]),
                accuracy: mean(correct[b] as f64),
            }
        })
        .collect()
}

/// The expected calibration error of a reliability diagram: the photo-weighted mean of
/// `|accuracy − confidence|` over its bins.
pub fn ece(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.count as f64 * (b.accuracy - b.confidence).abs())
        .sum::<f64>()
        / n as f64
}

/// What two-fold cross-fitting measured: each half's probabilities come from the temperature
/// fitted on the other half, so no photo is scored by a fit it took part in.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossFit {
    /// The temperature fitted on each half (fitted on half 0, then on half 1).
    pub temperatures: [f64; 2],
    /// Every photo's probabilities under the temperature of the half it is not in.
    pub probabilities: Vec<Vec<f64>>,
}

/// Two-fold cross-fitting: `half[i]` says which half photo `i` is in (0 or 1); each half is
/// scored with the temperature fitted on the other.
pub fn cross_fit(rows: &[Vec<f64>], labels: &[u32], half: &[u8]) -> CrossFit {
    let subset = |h: u8| -> (Vec<Vec<f64>>, Vec<u32>) {
        rows.iter()
            .zip(labels)
            .zip(half)
            .filter(|(_, k)| **k == h)
            .map(|((r, &y), _)| (r.clone(), y))
            .unzip()
    };
    let (r0, y0) = subset(0);
    let (r1, y1) = subset(1);
    let temperatures = [fit_temperature(&r0, &y0), fit_temperature(&r1, &y1)];
    let probabilities = rows
        .iter()
        .zip(half)
        .map(|(row, &h)| softmax(row, temperatures[usize::from(h == 0)]))
        .collect();
    CrossFit {
        temperatures,
        probabilities,
    }
}

/// A stratified two-way split of `labels`: within each class, alternate photos in the order
/// given by `order` (a permutation of the indices, drawn from the run's seed) go to half 0 and
/// half 1, so both halves hold every class in the same proportion.
pub fn stratified_halves(labels: &[u32], order: &[usize]) -> Vec<u8> {
    let mut half = vec![0u8; labels.len()];
    let mut seen = std::collections::BTreeMap::<u32, usize>::new();
    for &i in order {
        let Some(&y) = labels.get(i) else { continue };
        let k = seen.entry(y).or_default();
        half[i] = (*k % 2) as u8;
        *k += 1;
    }
    half
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits whose true distribution is the softmax of `z / t_true`, with labels drawn from
    /// it by a fixed linear congruential sequence.
    fn sample(n: usize, t_true: f64) -> (Vec<Vec<f64>>, Vec<u32>) {
        let mut state = 12345u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..n {
            let row: Vec<f64> = (0..3).map(|_| 8.0 * (uniform() - 0.5)).collect();
            let p = softmax(&row, t_true);
            let u = uniform();
            let y = if u < p[0] {
                0
            } else if u < p[0] + p[1] {
                1
            } else {
                2
            };
            rows.push(row);
            labels.push(y);
        }
        (rows, labels)
    }

    #[test]
    fn the_fit_recovers_the_temperature_that_generated_the_labels() {
        for t_true in [0.5, 1.0, 2.5] {
            let (rows, labels) = sample(20_000, t_true);
            let t = fit_temperature(&rows, &labels);
            assert!((t - t_true).abs() / t_true < 0.06, "{t} vs {t_true}");
            // It is the minimum: both neighbours are worse.
            let best = nll(&rows, &labels, t);
            assert!(nll(&rows, &labels, t * 1.05) > best);
            assert!(nll(&rows, &labels, t / 1.05) > best);
        }
    }

    #[test]
    fn a_one_unit_logit_is_the_two_class_softmax() {
        let rows = softmax_logits(&[vec![1.5], vec![-0.25]]);
        assert_eq!(rows[0], vec![0.0, 1.5]);
        let p = softmax(&rows[0], 1.0);
        let sigmoid = 1.0 / (1.0 + (-1.5f64).exp());
        assert!((p[1] - sigmoid).abs() < 1e-12);
        let three = softmax_logits(&[vec![1.0, 2.0, 3.0]]);
        assert_eq!(three[0], vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_perfectly_separated_set_sits_on_the_lower_bound() {
        let rows = vec![vec![0.0, 5.0], vec![5.0, 0.0]];
        let t = fit_temperature(&rows, &[1, 0]);
        assert_eq!(t, TEMPERATURE_RANGE.0);
        // All wrong: the flattest distribution is best.
        let t = fit_temperature(&rows, &[0, 1]);
        assert_eq!(t, TEMPERATURE_RANGE.1);
        assert_eq!(fit_temperature(&[], &[]), 1.0);
    }

    #[test]
    fn ece_of_known_bins() {
        // Two photos at 0.9 (one right), two at 0.6 (both right): bins 14 and 9.
        let probs = vec![
            vec![0.9, 0.1],
            vec![0.9, 0.1],
            vec![0.4, 0.6],
            vec![0.4, 0.6],
        ];
        let bins = reliability(&probs, &[0, 1, 1, 1], ECE_BINS);
        assert_eq!(bins.len(), 15);
        assert_eq!(bins[13].count, 2);
        assert_eq!(bins[8].count, 2);
        assert!((bins[13].accuracy - 0.5).abs() < 1e-12);
        assert!((bins[8].accuracy - 1.0).abs() < 1e-12);
        // (2 · |0.5 − 0.9| + 2 · |1 − 0.6|) / 4 = 0.4.
        assert!((ece(&bins) - 0.4).abs() < 1e-12);
        assert_eq!(ece(&[]), 0.0);
    }

    #[test]
    fn cross_fitting_scores_each_half_with_the_other_halfs_fit_and_calibrates() {
        let (rows, labels) = sample(6_000, 0.4);
        let order: Vec<usize> = (0..rows.len()).rev().collect();
        let half = stratified_halves(&labels, &order);
        let ones = half.iter().filter(|&&h| h == 1).count();
        assert!(ones.abs_diff(rows.len() / 2) <= 3, "{ones}");
        let fit = cross_fit(&rows, &labels, &half);
        for t in fit.temperatures {
            assert!((t - 0.4).abs() < 0.05, "{t}");
        }
        let i = half.iter().position(|&h| h == 0).unwrap();
        assert_eq!(fit.probabilities[i], softmax(&rows[i], fit.temperatures[1]));
        let before: Vec<Vec<f64>> = rows.iter().map(|r| softmax(r, 1.0)).collect();
        let ece_before = ece(&reliability(&before, &labels, ECE_BINS));
        let ece_after = ece(&reliability(&fit.probabilities, &labels, ECE_BINS));
        assert!(
            ece_after < 0.03 && ece_before > 2.0 * ece_after,
            "{ece_before} {ece_after}"
        );
    }
}
