//! The learning curve: the validation accuracy of a linear probe trained on `n` training photos
//! per class, for growing `n`, several random subsets each, and the power law through it that
//! says what more photos would bring.

use engine::linear::{LinearFit, LinearProbe, Rows};
use imagedata::rng::names;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use stage::Result;
use stage::audit::{CurvePoint, PowerLaw};

/// The sizes of the curve: the `requested` ones below the smallest class's count, then that
/// count (every photo of the smallest class), ascending and distinct.
pub fn sizes(requested: &[usize], smallest_class: usize) -> Vec<usize> {
    let mut out: Vec<usize> = requested
        .iter()
        .copied()
        .filter(|&n| n >= 1 && n < smallest_class)
        .collect();
    out.push(smallest_class);
    out.sort_unstable();
    out.dedup();
    out
}

/// Trains a probe with penalty `l2` on `n` random training rows per class for each size and
/// seed, and measures each on the validation rows. At the last size every class gives its
/// first `n` rows in a random order: a class larger than the smallest is still subsampled, so
/// the seeds differ there too unless every class has exactly `n` rows (then one run stands
/// for all).
#[allow(clippy::too_many_arguments)]
pub fn learning_curve(
    train: &Rows,
    train_labels: &[u32],
    validation: &Rows,
    validation_labels: &[u32],
    classes: usize,
    sizes: &[usize],
    seeds: usize,
    l2: f64,
    seed: u64,
) -> Result<Vec<CurvePoint>> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in train_labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let largest = by_class.iter().map(Vec::len).max().unwrap_or(0);
    let runs: Vec<(usize, usize)> = sizes
        .iter()
        .flat_map(|&n| {
            let distinct = if n >= largest { 1 } else { seeds };
            (0..distinct).map(move |s| (n, s))
        })
        .collect();
    let results: Vec<(usize, f64)> = runs
        .par_iter()
        .map(|&(n, s)| {
            let mut rng =
                imagedata::rng::substream(seed, names::AUDIT_CURVE, (n as u64) << 16 | s as u64);
            let mut picked = Vec::with_capacity(n * classes);
            for members in &by_class {
                let mut m = members.clone();
                m.shuffle(&mut rng);
                picked.extend(m.into_iter().take(n));
            }
            picked.sort_unstable();
            let labels: Vec<u32> = picked.iter().map(|&i| train_labels[i]).collect();
            let probe = LinearProbe::fit(
                &train.select(&picked),
                &labels,
                classes,
                LinearFit::new(l2),
                None,
            )?;
            Ok((n, probe.accuracy(validation, validation_labels)?))
        })
        .collect::<engine::Result<_>>()?;
    Ok(sizes
        .iter()
        .map(|&n| {
            let accuracies: Vec<f64> = results
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|&(_, a)| a)
                .collect();
            let (mean, std) = engine::folds::mean_std(&accuracies);
            CurvePoint {
                per_class: n,
                accuracies,
                mean,
                std,
            }
        })
        .collect())
}

/// Fits `error = a · n^(−b)` to the points' mean error by least squares in log–log space. An
/// error of 0 is taken as half a validation photo (`0.5 / validation_photos`), the smallest
/// error the split can tell from 0. `None` with fewer than three points.
pub fn power_law(points: &[CurvePoint], validation_photos: usize) -> Option<PowerLaw> {
    if points.len() < 3 || validation_photos == 0 {
        return None;
    }
    let floor = 0.5 / validation_photos as f64;
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| ((p.per_class as f64).ln(), (1.0 - p.mean).max(floor).ln()))
        .collect();
    let n = xy.len() as f64;
    let (mx, my) = (
        xy.iter().map(|p| p.0).sum::<f64>() / n,
        xy.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let a = (my - slope * mx).exp();
    let b = -slope;
    let last = points.last()?.per_class as f64;
    let accuracy = |n: f64| (1.0 - a * n.powf(-b)).clamp(0.0, 1.0);
    Some(PowerLaw {
        a,
        b,
        accuracy_now: accuracy(last),
        accuracy_doubled: accuracy(2.0 * last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stop_at_the_smallest_class() {
        assert_eq!(sizes(&[5, 10, 20, 50, 100], 30), vec![5, 10, 20, 30]);
        assert_eq!(sizes(&[5, 10], 10), vec![5, 10]);
        assert_eq!(sizes(&[50], 7), vec![7]);
    }

    #[test]
    fn an_exact_power_law_is_recovered() {
        let points: Vec<CurvePoint> = [10usize, 20, 40, 80, 160]
            .iter()
            .map(|&n| {
                let acc = 1.0 - 0.8 * (n as f64).powf(-0.5);
                CurvePoint {
                    per_class: n,
                    accuracies: vec![acc],
                    mean: acc,
                    std: 0.0,
                }
            })
            .collect();
        let fit = power_law(&points, 1000).unwrap();
        assert!(
            (fit.a - 0.8).abs() < 1e-9 && (fit.b - 0.5).abs() < 1e-9,
            "{fit:?}"
        );
        let expected = 1.0 - 0.8 * 320f64.powf(-0.5);
        assert!((fit.accuracy_doubled - expected).abs() < 1e-9);
        assert!(power_law(&points[..2], 1000).is_none());
    }
}
