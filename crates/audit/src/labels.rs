//! Out-of-fold class probabilities from a linear probe on the cached features, and confident
//! learning (Northcutt et al., 2021) on them: per-class thresholds, the confident joint, and
//! the photos in its off-diagonal, ranked.

use engine::linear::{LinearFit, LinearProbe, Rows, log_loss};
use rayon::prelude::*;
use stage::{Result, StageError};

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
        .collect::<engine::Result<_>>()?;
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
        .collect::<engine::Result<_>>()?;
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
        .ok_or_else(|| StageError::Settings("audit.l2 lists no penalty".into()))?;
    Ok((best.0, table))
}

/// What confident learning found.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfidentLearning {
    /// Per class: the mean probability of the class over the rows labelled with it.
    pub thresholds: Vec<f64>,
    /// `joint[given][confident]` counts.
    pub joint: Vec<Vec<usize>>,
    /// Rows in the off-diagonal.
    pub confident: usize,
    /// The rows in the off-diagonal and those whose most probable class is not the given one:
    /// `(row, suggested class, score)`, the highest score (one minus the probability of the
    /// given label) first; ties in row order.
    pub issues: Vec<(usize, usize, f64)>,
}

/// Confident learning on out-of-fold probabilities `probs` (`labels.len() × classes`): a row
/// with given label `y` counts for the class `j` with the highest probability among those at or
/// above their class's threshold; the rows counted off the diagonal are the confident label
/// issues. Rows whose most probable class is not the given one join them: with many wrong
/// labels the thresholds rise out of reach of some of them.
pub fn confident_learning(probs: &[f32], labels: &[u32], classes: usize) -> ConfidentLearning {
    let mut sums = vec![0f64; classes];
    let mut counts = vec![0usize; classes];
    for (p, &y) in probs.chunks(classes).zip(labels) {
        sums[y as usize] += f64::from(p[y as usize]);
        counts[y as usize] += 1;
    }
    let thresholds: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &c)| if c > 0 { s / c as f64 } else { 1.0 })
        .collect();
    let mut joint = vec![vec![0usize; classes]; classes];
    let mut issues = Vec::new();
    let mut off_diagonal = 0;
    for (i, (p, &y)) in probs.chunks(classes).zip(labels).enumerate() {
        let confident = (0..classes)
            .filter(|&j| f64::from(p[j]) >= thresholds[j])
            .max_by(|&a, &b| p[a].total_cmp(&p[b]).then(b.cmp(&a)));
        let score = 1.0 - f64::from(p[y as usize]);
        if let Some(j) = confident {
            joint[y as usize][j] += 1;
            if j != y as usize {
                off_diagonal += 1;
                issues.push((i, j, score));
                continue;
            }
        }
        let best = engine::argmax(p);
        if best != y as usize {
            issues.push((i, best, score));
        }
    }
    issues.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    ConfidentLearning {
        thresholds,
        joint,
        confident: off_diagonal,
        issues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_off_diagonal_of_the_confident_joint_is_ranked_by_self_confidence() {
        // Class 0 rows, class 1 rows; row 2 is labelled 0 but looks like 1, row 5 is
        // labelled 1 and is unsure.
        let probs = [
            0.9, 0.1, //
            0.8, 0.2, //
            0.05, 0.95, // labelled 0: an issue
            0.1, 0.9, //
            0.2, 0.8, //
            0.55, 0.45, // labelled 1: p0 = 0.55 is above class 0's threshold
        ];
        let labels = [0, 0, 0, 1, 1, 1];
        let cl = confident_learning(&probs, &labels, 2);
        let t0 = (0.9 + 0.8 + 0.05) / 3.0;
        assert!((cl.thresholds[0] - t0).abs() < 1e-6);
        // Row 5 is an issue either way: confidently class 0, or most probably class 0.
        assert_eq!(cl.issues.len(), 2);
        assert_eq!(cl.confident, 1 + usize::from(0.55 >= t0));
        assert_eq!(cl.issues[0].0, 2);
        assert_eq!(cl.issues[0].1, 1);
        assert!((cl.issues[0].2 - 0.95).abs() < 1e-6);
        let total: usize = cl.joint.iter().flatten().sum();
        assert!(total <= 6);
        assert_eq!(cl.joint[0][0], 2);
    }

    #[test]
    fn complement_skips_the_held_rows() {
        assert_eq!(complement(6, &[1, 4]), vec![0, 2, 3, 5]);
        assert_eq!(complement(3, &[]), vec![0, 1, 2]);
    }
}
