//! Near copies and strays from the cosine similarity of the photos' feature vectors.
//!
//! Copies are found on the features centred on their mean and normalised to unit length
//! (centring takes away the direction every photo shares, so unrelated photos score near 0 and
//! copies near 1), or by their difference hashes ([`crate::fingerprint`]). Strays are found on
//! the raw features normalised: centring would also pull unnatural images (blank frames,
//! screenshots), whose features are small and alike, towards one another.
//!
//! The similarities are computed a block of rows at a time (`candle` matrix products), so
//! memory stays at `block × n` whatever the number of photos.

use candle_core::{Device, Tensor};
use engine::linear::Rows;
use stage::Result;

use crate::fingerprint::{DHASH_BITS, Fingerprint};

/// Rows of the similarity matrix computed at once.
const BLOCK: usize = 512;

/// A pair of near copies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The first photo's row.
    pub i: usize,
    /// The second photo's row (`j > i`).
    pub j: usize,
    /// The cosine similarity of their centred features.
    pub similarity: f32,
    /// The bits in which their difference hashes differ.
    pub hash_distance: u32,
    /// Whether the files are identical.
    pub exact: bool,
}

impl Pair {
    /// The pair's score in `[0, 1]`: 1 for identical files, else the larger of the feature
    /// similarity and the hash agreement (`1 − distance / bits`).
    pub fn score(&self) -> f64 {
        if self.exact {
            return 1.0;
        }
        let hash = 1.0 - f64::from(self.hash_distance) / f64::from(DHASH_BITS);
        f64::from(self.similarity).max(hash)
    }
}

/// When two photos count as near copies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CopyRule {
    /// Cosine similarity of the centred features at or above which they do.
    pub similarity: f32,
    /// Difference-hash distance at or below which they do (when both hashes have structure,
    /// [`Fingerprint::has_structure`]).
    pub hash_bits: u32,
}

/// What one pass over the similarities found.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbourhood {
    /// Near copies: identical files, or pairs within the [`CopyRule`].
    pub pairs: Vec<Pair>,
    /// Per row: the mean cosine distance (`1 − similarity` of the raw, uncentred features) to
    /// its `k` most similar rows, leaving out itself and its near copies.
    pub stray_scores: Vec<f64>,
    /// Per row: the highest centred similarity to any other row (the copy rule's margin).
    pub nearest_similarity: Vec<f32>,
    /// Per row: the smallest hash distance to any other row (both with structure).
    pub nearest_hash: Vec<u32>,
}

/// `rows` scaled to unit length (without centring).
pub fn unit(rows: &Rows) -> Rows {
    let mut values = rows.values.clone();
    for row in values.chunks_mut(rows.dim) {
        let norm = row
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        if norm > 1e-12 {
            row.iter_mut()
                .for_each(|v| *v = (f64::from(*v) / norm) as f32);
        }
    }
    Rows {
        values,
        dim: rows.dim,
    }
}

/// `rows` centred on their mean and scaled to unit length.
pub fn normalised(rows: &Rows) -> Rows {
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; rows.dim];
    for i in 0..rows.len() {
        for (m, &v) in mean.iter_mut().zip(rows.row(i)) {
            *m += f64::from(v) / n;
        }
    }
    let mut values = rows.values.clone();
    for row in values.chunks_mut(rows.dim) {
        for (v, m) in row.iter_mut().zip(&mean) {
            *v -= *m as f32;
        }
    }
    unit(&Rows {
        values,
        dim: rows.dim,
    })
}

/// The similarity blocks of `z` against all its rows, `BLOCK` rows at a time.
fn blocks(z: &Rows) -> Result<impl Iterator<Item = Result<(usize, Vec<f32>)>>> {
    let n = z.len();
    let all = Tensor::from_slice(&z.values, (n, z.dim), &Device::Cpu)?;
    let all_t = all.t()?.contiguous()?;
    Ok((0..n).step_by(BLOCK).map(move |start| {
        let len = BLOCK.min(n - start);
        let block = all.narrow(0, start, len)?.matmul(&all_t)?;
        Ok((start, block.flatten_all()?.to_vec1()?))
    }))
}

/// Finds near copies and each row's stray score over its `k` nearest rows. `rows` are the raw
/// features, `prints[i]` row `i`'s fingerprint.
pub fn scan(
    rows: &Rows,
    prints: &[Fingerprint],
    rule: CopyRule,
    k: usize,
) -> Result<Neighbourhood> {
    let n = rows.len();
    let centred = normalised(rows);
    let raw = unit(rows);
    let mut pairs = Vec::new();
    let mut nearest_similarity = vec![f32::NEG_INFINITY; n];
    let mut nearest_hash = vec![u32::MAX; n];
    let mut copy_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    for block in blocks(&centred)? {
        let (start, sims) = block?;
        for (r, row) in sims.chunks(n).enumerate() {
            let i = start + r;
            for (j, &s) in row.iter().enumerate() {
                if j == i {
                    continue;
                }
                let d = prints[i].distance(&prints[j]);
                let structured = prints[i].has_structure() && prints[j].has_structure();
                nearest_similarity[i] = nearest_similarity[i].max(s);
                if structured {
                    nearest_hash[i] = nearest_hash[i].min(d);
                }
                let exact = prints[i].sha256 == prints[j].sha256;
                let hashed = structured && d <= rule.hash_bits;
                if exact || s >= rule.similarity || hashed {
                    copy_of[i].push(j);
                    if j > i {
                        pairs.push(Pair {
                            i,
                            j,
                            similarity: s,
                            hash_distance: d,
                            exact,
                        });
                    }
                }
            }
        }
    }
    let mut stray_scores = Vec::with_capacity(n);
    let mut best: Vec<f32> = Vec::with_capacity(k + 1);
    for block in blocks(&raw)? {
        let (start, sims) = block?;
        for (r, row) in sims.chunks(n).enumerate() {
            let i = start + r;
            best.clear();
            for (j, &s) in row.iter().enumerate() {
                if j == i || copy_of[i].contains(&j) {
                    continue;
                }
                // Keep the k largest similarities (k is small: insertion into a sorted list).
                if best.len() < k || s > best[best.len() - 1] {
                    let at = best.partition_point(|&b| b >= s);
                    best.insert(at, s);
                    best.truncate(k);
                }
            }
            let score = if best.is_empty() {
                0.0
            } else {
                best.iter().map(|&s| 1.0 - f64::from(s)).sum::<f64>() / best.len() as f64
            };
            stray_scores.push(score);
        }
    }
    Ok(Neighbourhood {
        pairs,
        stray_scores,
        nearest_similarity,
        nearest_hash,
    })
}

/// Tukey's far-out fence of `scores`: the upper quartile plus three interquartile ranges.
pub fn far_out_fence(scores: &[f64]) -> f64 {
    if scores.is_empty() {
        return f64::INFINITY;
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let pos = p * (sorted.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
    };
    let (q1, q3) = (q(0.25), q(0.75));
    q3 + 3.0 * (q3 - q1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pseudo-random hash per `seed` (splitmix64): two differ in about 128 bits.
    fn print(sha: &str, seed: usize) -> Fingerprint {
        let mut x = seed as u64;
        let dhash = [0; 4].map(|_: u64| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        });
        Fingerprint {
            sha256: sha.into(),
            dhash,
        }
    }

    #[test]
    fn copies_pair_up_and_the_odd_one_out_scores_highest() {
        // Ten points around two directions, one copy of row 0, one point far from all.
        let mut values = Vec::new();
        for i in 0..10 {
            let t = 0.3 + i as f32 * 0.05;
            if i % 2 == 0 {
                values.extend([1.0, t, 0.2, 0.0]);
            } else {
                values.extend([t, 1.0, 0.2, 0.0]);
            }
        }
        values.extend([1.0, 0.3, 0.2, 0.0]); // 10: row 0's twin
        values.extend([0.0, 0.0, 0.0, 1.0]); // 11: a stray
        let rows = Rows::new(values, 4).unwrap();
        let mut prints: Vec<Fingerprint> = (0..12).map(|i| print(&format!("d{i}"), i)).collect();
        prints[3].sha256 = "same".into();
        prints[5].sha256 = "same".into();
        prints[7].dhash = prints[1].dhash; // a resized copy: the same hash
        let rule = CopyRule {
            similarity: 0.9999,
            hash_bits: 8,
        };
        let found = scan(&rows, &prints, rule, 3).unwrap();
        let pairs: Vec<(usize, usize)> = found.pairs.iter().map(|p| (p.i, p.j)).collect();
        assert!(pairs.contains(&(0, 10)), "{pairs:?}");
        assert!(pairs.contains(&(3, 5)), "{pairs:?}");
        assert!(pairs.contains(&(1, 7)), "{pairs:?}");
        let exact = found.pairs.iter().find(|p| (p.i, p.j) == (3, 5)).unwrap();
        assert!(exact.exact && exact.score() == 1.0);
        let top = (0..12)
            .max_by(|&a, &b| found.stray_scores[a].total_cmp(&found.stray_scores[b]))
            .unwrap();
        assert_eq!(top, 11);
        assert!(found.stray_scores[11] > far_out_fence(&found.stray_scores[..11]));
    }
}
