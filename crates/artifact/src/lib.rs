//! The one artifact format every stage reads and writes.
//!
//! An artifact is a safetensors file whose JSON-string metadata carries its provenance (stage,
//! digest of the pipeline section used, digests of the inputs, crate version, creation time).
//! Every write is atomic: the bytes go to a temp file in the destination folder, are flushed to
//! disk, and the temp file is renamed over the destination, so a reader never sees half a file.
//!
//! Every safetensors file written by [`save`] or [`StreamWriter`] records a digest of its bytes
//! (metadata key [`fresh::KEY_DATA_DIGEST`], value `xxh3-128:<32 hex>`), covering the header's
//! tensor table and metadata as well as all tensor data; [`load`], [`load_tensors`], [`verify`]
//! and [`check_fresh`] check it, and a damaged file is an [`ArtifactError::Damaged`] that says
//! how to rebuild it (or, for [`check_fresh`], a stale file). A file that records no digest
//! (written before digests were recorded, or by another program) still loads, after the
//! structural checks; [`check_fresh`] calls it stale so that the next run rebuilds it with one.
//! The check costs about 1 s of CPU per 4 GB (see [`verify`]); on a 100 MB artifact it adds
//! about 20 ms of CPU to `save` (of about 340 ms) and to `load` (of about 190 ms).
//!
//! Temp files name their target and their writer (host, pid); [`remove_stale_temps`] removes
//! those whose writer is gone.

mod digest;
pub mod fresh;
mod integrity;
mod io;
mod stream;
mod temp;

pub use digest::{sha256_bytes, sha256_file, sha256_json};
pub use fresh::{Freshness, Provenance, check_fresh};
pub use integrity::{DIGEST_ALGORITHM, verify};
pub use io::{atomic_write, atomic_write_with, load, load_tensors, read_metadata, save};
pub use stream::StreamWriter;
pub use temp::{FOREIGN_TEMP_AGE, remove_stale_temps};

use std::collections::BTreeMap;
use std::path::PathBuf;

/// String key/value metadata stored in a safetensors header (`__metadata__`).
pub type Metadata = BTreeMap<String, String>;

/// Everything that can go wrong reading or writing an artifact. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a readable safetensors file.
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the caller needs is absent.
    #[error("{path}: missing tensor `{name}`")]
    MissingTensor {
        /// The file involved.
        path: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// A metadata key the caller needs is absent or malformed.
    #[error("{path}: metadata `{key}`: {reason}")]
    Metadata {
        /// The file involved.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor operation failed while preparing or reading data.
    #[error("{path}: {source}")]
    Tensor {
        /// The file involved.
        path: PathBuf,
        /// The underlying candle error.
        #[source]
        source: candle_core::Error,
    },
    /// The file is damaged: truncated, its header broken, or its bytes no longer match the
    /// digest it records. Removing it and rerunning the stage that wrote it rebuilds it.
    #[error("{path}: damaged ({reason}); {}", rebuild_hint(.stage.as_deref()))]
    Damaged {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// The stage that wrote it (its `littledata.stage` metadata), when readable.
        stage: Option<String>,
    },
    /// The file records no data digest (written before artifacts recorded one, or by another
    /// program), so its bytes cannot be checked.
    #[error(
        "{path}: records no data digest (written before littledata recorded one, or by another \
         program), so its bytes cannot be checked"
    )]
    NoDigest {
        /// The file involved.
        path: PathBuf,
    },
    /// Misuse of a streaming writer (wrong tensor order, wrong size, unfinished tensors).
    #[error("{path}: {reason}")]
    Stream {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl ArtifactError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

fn rebuild_hint(stage: Option<&str>) -> String {
    match stage {
        Some(s) => format!("remove it and rerun the `{s}` stage, which wrote it, to rebuild it"),
        None => "remove it and rerun the stage that wrote it to rebuild it".into(),
    }
}

/// Shorthand result type of this crate.
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;

/// Reads a required metadata value, with an error naming the file and key when it is absent.
pub fn meta_get<'a>(meta: &'a Metadata, path: &std::path::Path, key: &str) -> Result<&'a str> {
    meta.get(key)
        .map(String::as_str)
        .ok_or_else(|| ArtifactError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: "absent".into(),
        })
}

/// Reads a required metadata value holding JSON and deserializes it.
pub fn meta_json<T: serde::de::DeserializeOwned>(
    meta: &Metadata,
    path: &std::path::Path,
    key: &str,
) -> Result<T> {
    let raw = meta_get(meta, path, key)?;
    serde_json::from_str(raw).map_err(|e| ArtifactError::Metadata {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: format!("invalid JSON: {e}"),
    })
}
