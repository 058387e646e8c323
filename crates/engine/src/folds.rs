//! Stratified k-fold assignment and the mean ± standard deviation of fold results: what
//! k-fold cross-validation of the top model, the linear probe's choice of penalty and the
//! audit share.

use std::collections::BTreeMap;

use imagedata::rng::names;
use rand::seq::SliceRandom;

use crate::error::{EngineError, Result};

/// An [`EngineError::Data`] about a fold assignment.
fn folds_error(reason: String) -> EngineError {
    EngineError::Data {
        what: "k-fold".into(),
        reason,
    }
}

/// Assigns `labels.len()` samples to `k` folds, stratified: each class's samples, shuffled
/// with `imagedata::rng::substream(seed, names::KFOLD, class)`, are dealt round-robin, continuing
/// from where the previous class stopped, so every fold gets each class's share (±1) and fold
/// sizes differ by at most one. Returns each fold's sample indices, sorted.
pub fn stratified_folds(labels: &[u32], k: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if k < 2 {
        return Err(folds_error(format!(
            "k-fold cross-validation needs at least 2 folds, got {k}"
        )));
    }
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        by_class.entry(l).or_default().push(i);
    }
    if let Some((class, members)) = by_class.iter().find(|(_, m)| m.len() < k) {
        return Err(folds_error(format!(
            "class {class} has {} samples, fewer than the {k} folds",
            members.len()
        )));
    }
    let mut folds = vec![Vec::new(); k];
    let mut next = 0usize;
    for (class, mut members) in by_class {
        let mut rng = imagedata::rng::substream(seed, names::KFOLD, u64::from(class));
        members.shuffle(&mut rng);
        for i in members {
            folds[next % k].push(i);
            next += 1;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    Ok(folds)
}

/// The mean and the sample standard deviation (n − 1) of `values`.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_stratified_balanced_disjoint_and_seeded() {
        // 13 of class 0, 7 of class 1, 5 of class 2.
        let labels: Vec<u32> = [(0u32, 13usize), (1, 7), (2, 5)]
            .iter()
            .flat_map(|&(l, n)| std::iter::repeat_n(l, n))
            .collect();
        let folds = stratified_folds(&labels, 5, 9).unwrap();
        let mut all: Vec<usize> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>(), "a partition");
        for f in &folds {
            assert_eq!(f.len(), 5, "25 samples in 5 folds");
            for (class, n) in [(0u32, 13usize), (1, 7), (2, 5)] {
                let c = f.iter().filter(|&&i| labels[i] == class).count();
                assert!(c == n / 5 || c == n / 5 + 1, "class {class}: {c}");
            }
        }
        assert_eq!(folds, stratified_folds(&labels, 5, 9).unwrap());
        assert_ne!(folds, stratified_folds(&labels, 5, 10).unwrap());
        let err = stratified_folds(&labels, 6, 9).unwrap_err().to_string();
        assert!(err.contains("class 2 has 5 samples"), "{err}");
        assert!(stratified_folds(&labels, 1, 9).is_err());
    }

    #[test]
    fn sample_standard_deviation() {
        let (m, s) = mean_std(&[0.9, 0.95, 1.0]);
        assert!((m - 0.95).abs() < 1e-12);
        assert!((s - 0.05).abs() < 1e-12);
        assert_eq!(mean_std(&[0.5]), (0.5, 0.0));
    }
}
