//! Confident learning (Northcutt et al., 2021) on out-of-fold class probabilities
//! ([`engine::linear::out_of_fold`]): per-class thresholds, the confident joint, and the
//! photos in its off-diagonal, ranked.

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
}
