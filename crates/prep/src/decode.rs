//! The two things the split borrows from the image pipeline: the decoder (to find unusable
//! files) and the seeded random streams (for `--shuffle`).

use std::path::Path;

use imagedata::decode::{Limits, load_rgb};
use rand_chacha::ChaCha8Rng;

/// Decodes the image at `path` once, with the pipeline's default limits, and discards the
/// pixels. The error is the reason the file cannot be used, without the path.
pub(crate) fn check_decodable(path: &Path) -> Result<(), String> {
    match load_rgb(path, &Limits::default()) {
        Ok(_) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            let prefix = format!("{}: ", path.display());
            Err(message
                .strip_prefix(&prefix)
                .map_or_else(|| message.clone(), str::to_owned))
        }
    }
}

/// The random stream `name` of the run seeded with `seed`.
pub(crate) fn rng(seed: u64, name: &str) -> ChaCha8Rng {
    imagedata::rng::stream(seed, name)
}
