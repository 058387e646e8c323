//! Each photo's content digest and a difference hash of its pixels, from one read of the file.
//!
//! The difference hash (dHash) shrinks the photo to 17 × 16 grey values with an antialiasing
//! filter and keeps, for every row, whether each value is brighter than its left neighbour:
//! 256 bits that survive re-encoding and resizing, which the features of a small photo blown
//! up to the backbone's input size do not always do. Two photos are near copies when their
//! hashes differ in few bits.

use std::path::Path;

use image::imageops::{self, FilterType};
use imagedata::{DataError, Limits, decode_rgb};
use rayon::prelude::*;
use stage::Result;

/// Bits of a [`Fingerprint::dhash`].
pub const DHASH_BITS: u32 = 256;

/// What one read of a photo gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// The sha256 of the file.
    pub sha256: String,
    /// The difference hash.
    pub dhash: [u64; 4],
}

/// The fewest bits of a hash that must be set, and unset, for it to stand for a photo: a flat
/// or nearly flat image (a blank frame) has almost no brighter neighbours, and all such
/// images would share one hash.
pub const MIN_STRUCTURE_BITS: u32 = 16;

impl Fingerprint {
    /// Whether the hash has enough structure to compare ([`MIN_STRUCTURE_BITS`]).
    pub fn has_structure(&self) -> bool {
        let ones: u32 = self.dhash.iter().map(|b| b.count_ones()).sum();
        ones >= MIN_STRUCTURE_BITS && DHASH_BITS - ones >= MIN_STRUCTURE_BITS
    }

    /// The number of bits in which the two hashes differ.
    pub fn distance(&self, other: &Fingerprint) -> u32 {
        self.dhash
            .iter()
            .zip(&other.dhash)
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }
}

/// The difference hash of `img`.
pub fn dhash(img: &image::RgbImage) -> [u64; 4] {
    let grey = imageops::grayscale(img);
    let small = imageops::resize(&grey, 17, 16, FilterType::Triangle);
    let mut bits = [0u64; 4];
    for y in 0..16u32 {
        for x in 0..16u32 {
            if small.get_pixel(x + 1, y)[0] > small.get_pixel(x, y)[0] {
                let i = (y * 16 + x) as usize;
                bits[i / 64] |= 1 << (i % 64);
            }
        }
    }
    bits
}

/// Reads and fingerprints one photo; a file that cannot be read or decoded is an error naming
/// it.
pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let img = decode_rgb(&bytes, path, &Limits::default())?;
    Ok(Fingerprint {
        sha256: artifact::sha256_bytes(&bytes),
        dhash: dhash(&img),
    })
}

/// Fingerprints every photo, in parallel.
pub fn fingerprints<P: AsRef<Path> + Sync>(paths: &[P]) -> Result<Vec<Fingerprint>> {
    paths.par_iter().map(|p| fingerprint(p.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgb, RgbImage};

    fn scene(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let v = ((fx * 7.0).sin() * (fy * 5.0).cos() * 120.0 + 128.0) as u8;
            Rgb([v, v / 2, 255 - v])
        })
    }

    #[test]
    fn a_resized_copy_stays_close_and_another_picture_does_not() {
        let a = Fingerprint {
            sha256: String::new(),
            dhash: dhash(&scene(300, 240)),
        };
        let small = imageops::resize(&scene(300, 240), 150, 120, FilterType::Triangle);
        let b = Fingerprint {
            sha256: String::new(),
            dhash: dhash(&small),
        };
        let flipped = imageops::flip_horizontal(&scene(300, 240));
        let c = Fingerprint {
            sha256: String::new(),
            dhash: dhash(&flipped),
        };
        assert!(a.distance(&b) <= 16, "{}", a.distance(&b));
        assert!(a.distance(&c) > 64, "{}", a.distance(&c));
        assert_eq!(a.distance(&a), 0);
        assert!(a.has_structure());
        let flat = Fingerprint {
            sha256: String::new(),
            dhash: dhash(&RgbImage::from_pixel(64, 64, Rgb([90, 90, 90]))),
        };
        assert!(!flat.has_structure());
    }
}
