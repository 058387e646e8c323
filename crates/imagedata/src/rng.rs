//! Deterministic random streams derived from one seed.
//!
//! Every random choice in the project comes from a [`ChaCha8Rng`] returned by [`stream`] (or
//! [`substream`]): the run's one `--seed` plus a stream name such as `"shuffle"`, `"augment"` or
//! `"dropout"`. Different names give statistically independent generators, the same seed and name
//! always give the same sequence, and nothing depends on thread timing or the operating system.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The names of the project's random streams, in one place: a name says what it feeds and no
/// two uses share one.
pub mod names {
    /// The order of the samples in each epoch (`substream(seed, SHUFFLE, epoch)`).
    pub const SHUFFLE: &str = "shuffle";
    /// The random transform of sample `i` in epoch `k` (`substream(seed, AUGMENT, k << 32 | i)`).
    pub const AUGMENT: &str = "augment";
    /// Dropout masks during training.
    pub const DROPOUT: &str = "dropout";
    /// Which cached view of each image an epoch trains on (`substream(seed, VIEW_PICK, epoch)`).
    pub const VIEW_PICK: &str = "views";
    /// Augmented views of the bottleneck features and of the fine-tuning cache: view `v` of
    /// image `i` uses `substream(seed, VIEWS, (i << 32) | v)`.
    pub const VIEWS: &str = "bottleneck-views";
    /// The small convnet's initial weights.
    pub const SMALL_CNN_INIT: &str = "small-cnn-init";
    /// The top model's initial weights.
    pub const TOP_INIT: &str = "top-init";
    /// The initial weights of what fine-tuning adds beyond the pretrained tail and the trained
    /// top (drawn even when nothing is left to initialise, so that runs stay comparable).
    pub const FINETUNE_INIT: &str = "finetune-init";
    /// The k-fold assignment of samples to folds (`substream(seed, KFOLD, class)`).
    pub const KFOLD: &str = "kfold";
    /// The draw of files when a split is shuffled.
    pub const SPLIT: &str = "split";
    /// The order in which the validation photos are dealt into the two halves of the
    /// calibration's cross-fitting.
    pub const CALIBRATION_HALVES: &str = "calibration-halves";
    /// The random subsets of the audit's learning curve.
    pub const AUDIT_CURVE: &str = "audit-curve";
}

/// The FNV-1a 64-bit hash of `bytes`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// One step of splitmix64: advances `state` and returns the next mixed output.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 256-bit ChaCha key for `(seed, name, index)`.
fn derive_key(seed: u64, name: &str, index: u64) -> [u8; 32] {
    // Mix the seed first so that nearby seeds land far apart, then fold in the name's hash and
    // the index through further splitmix rounds, and expand the result into four key words.
    let mut state = seed;
    let mixed_seed = splitmix64(&mut state);
    let mut state = mixed_seed ^ fnv1a64(name.as_bytes());
    let mixed_name = splitmix64(&mut state);
    let mut state = mixed_name ^ index.wrapping_mul(0xd6e8_feb8_6659_fd93);
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    key
}

/// A deterministic generator for the stream `name` of the run seeded with `seed`.
///
/// `stream(seed, "shuffle")` and `stream(seed, "augment")` are independent; calling `stream`
/// twice with the same arguments yields identical sequences.
pub fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive_key(seed, name, 0))
}

/// A deterministic generator for item `index` of the stream `name` (for example the shuffle of
/// epoch `index`), so that any item can be reproduced without replaying the ones before it.
///
/// `substream(seed, name, i)` differs from `stream(seed, name)` for every `i`, including 0.
pub fn substream(seed: u64, name: &str, index: u64) -> ChaCha8Rng {
    // Offset the index so that substream 0 never coincides with the plain stream.
    ChaCha8Rng::from_seed(derive_key(seed, name, index.wrapping_add(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    fn first_words(mut rng: ChaCha8Rng) -> [u64; 4] {
        [
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        ]
    }

    #[test]
    fn same_seed_and_name_repeat() {
        assert_eq!(
            first_words(stream(42, "shuffle")),
            first_words(stream(42, "shuffle"))
        );
        assert_eq!(
            first_words(substream(42, "shuffle", 3)),
            first_words(substream(42, "shuffle", 3))
        );
    }

    #[test]
    fn seeds_names_and_indices_differ() {
        let base = first_words(stream(42, "shuffle"));
        assert_ne!(base, first_words(stream(43, "shuffle")));
        assert_ne!(base, first_words(stream(42, "augment")));
        assert_ne!(base, first_words(substream(42, "shuffle", 0)));
        assert_ne!(
            first_words(substream(42, "shuffle", 0)),
            first_words(substream(42, "shuffle", 1))
        );
        assert_ne!(first_words(stream(0, "")), first_words(stream(1, "")));
    }

    #[test]
    fn fnv_matches_reference_values() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn splitmix_matches_reference_values() {
        // splitmix64 seeded with 0: the reference implementation's first outputs.
        let mut s = 0u64;
        assert_eq!(splitmix64(&mut s), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(&mut s), 0x6e78_9e6a_a1b9_65f4);
    }
}
