//! sha256 digests of files, bytes and JSON-serializable values.

use crate::{ArtifactError, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Hex sha256 of a file's bytes, streamed (constant memory).
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArtifactError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Hex sha256 of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of a value's canonical JSON form (`serde_json` keeps struct field order, and
/// maps should be `BTreeMap`s, so equal values give equal digests).
pub fn sha256_json<T: serde::Serialize>(value: &T) -> String {
    // Serializing plain data structures to a Vec cannot fail; fall back to the Debug-free
    // error text so a digest is always produced.
    let bytes = serde_json::to_vec(value).unwrap_or_else(|e| e.to_string().into_bytes());
    sha256_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_digest_matches_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.bin");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        assert_eq!(sha256_file(&p).unwrap(), sha256_bytes(&data));
    }

    #[test]
    fn missing_file_names_path() {
        let err = sha256_file(Path::new("/nonexistent/weights.bin")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/weights.bin"));
    }
}
