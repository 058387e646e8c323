//! One slice of a split: `--shard i/n` ([`Shard`]).
//!
//! Shard `i` of `n` holds images `⌊N·(i−1)/n⌋ .. ⌊N·i/n⌋` of a split of `N` images; shards are
//! numbered from 1, so a scheduler's array index maps onto them directly. `auto` and `auto/N`
//! take the slice from a Slurm array task or a Kubernetes Indexed Job ([`crate::cluster`]).

use std::fmt;
use std::str::FromStr;

use crate::error::{FeaturesError, Result};

/// One slice of `count`: shard `index` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// Which slice, `1..=count`.
    pub index: usize,
    /// How many slices.
    pub count: usize,
}

impl Shard {
    /// The images `[start, end)` of this slice of `total` images.
    pub fn range(self, total: usize) -> std::ops::Range<usize> {
        let at = |i: usize| ((total as u128 * i as u128) / self.count as u128) as usize;
        at(self.index - 1)..at(self.index)
    }
}

impl FromStr for Shard {
    type Err = FeaturesError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| FeaturesError::ShardArg {
            arg: s.to_string(),
            reason: reason.to_string(),
        };
        if let Some(auto) = crate::cluster::auto_shard(s) {
            let (index, count) = auto.map_err(|e| bad(&e.to_string()))?;
            return Ok(Self { index, count });
        }
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| bad("expected i/n, for example 2/8"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| bad("the shard number is not a whole number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| bad("the shard count is not a whole number"))?;
        if count == 0 {
            return Err(bad("the shard count must be at least 1"));
        }
        if !(1..=count).contains(&index) {
            return Err(bad("shards are numbered from 1 to the count"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_slices() {
        let s: Shard = "2/4".parse().unwrap();
        assert_eq!(s, Shard { index: 2, count: 4 });
        assert_eq!(s.to_string(), "2/4");
        for bad in ["", "2", "0/4", "5/4", "a/4", "1/0", "1/x"] {
            let err = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(err.starts_with(&format!("--shard {bad}:")), "{err}");
        }
        // Slices tile the range exactly, whatever the remainder.
        for total in [0usize, 1, 7, 10, 2000] {
            for count in 1..=6 {
                let mut next = 0;
                for index in 1..=count {
                    let r = Shard { index, count }.range(total);
                    assert_eq!(r.start, next);
                    assert!(r.len() <= total.div_ceil(count));
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }
}
