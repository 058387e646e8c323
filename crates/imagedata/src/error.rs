//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, caching, augmenting or saving images.
///
/// Every variant that concerns a file names it, so a message such as
/// `data/train/cats/cat.7.jpg: truncated JPEG (no end-of-image marker)` can be shown as it is.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder does not exist.
    #[error("{}: no such file or folder", path.display())]
    NotFound {
        /// The missing path.
        path: PathBuf,
    },
    /// Reading the file or folder failed for another reason (permissions, I/O error).
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is zero bytes long.
    #[error("{}: empty file (0 bytes)", path.display())]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// The file is not a JPEG or PNG image (or is one in a variant the decoder cannot read).
    #[error("{}: not a supported image: {detail}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The image data ends before the image does.
    #[error("{}: truncated {format} ({detail})", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// `"JPEG"` or `"PNG"`.
        format: &'static str,
        /// Where the data ran out.
        detail: String,
    },
    /// The image is malformed.
    #[error("{}: corrupt image: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The decoder's description of the problem.
        detail: String,
    },
    /// The image header claims dimensions beyond the configured [`crate::decode::Limits`].
    #[error(
        "{}: image too large: the header claims {width}x{height} pixels, the limit is {limit}",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Claimed width in pixels.
        width: u32,
        /// Claimed height in pixels.
        height: u32,
        /// The limit that was exceeded, in words.
        limit: String,
    },
    /// Decoding would exceed the configured [`crate::decode::Limits`] (reported by the decoder
    /// before the image size was known, for example for oversized metadata).
    #[error("{}: exceeds the decoding limits: {detail}", path.display())]
    OverLimit {
        /// The file.
        path: PathBuf,
        /// The decoder's description of the limit.
        detail: String,
    },
    /// The decoder panicked on this file (a decoder bug triggered by malformed data).
    #[error("{}: the image decoder failed unexpectedly: {detail}", path.display())]
    DecoderPanic {
        /// The file.
        path: PathBuf,
        /// The panic message, when there is one.
        detail: String,
    },
    /// A class folder tree is unusable (missing, no class folders, a class without images).
    #[error("{}: {detail}", path.display())]
    Dataset {
        /// The folder concerned.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Some files could not be decoded and the policy is to fail: every failure is named, up to
    /// [`DataError::LISTED`], then counted.
    #[error("{count} file(s) could not be decoded:{}", list_failures(failures, *count))]
    Undecodable {
        /// How many files failed.
        count: usize,
        /// The failures in input order, at most [`DataError::LISTED`] of them.
        failures: Vec<DataError>,
    },
    /// Writing an image (for example with `save_to_dir`) failed.
    #[error("{}: cannot write image: {detail}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Arguments that do not fit together (for example images and labels of different lengths).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// Building a tensor failed.
    #[error("tensor error: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl DataError {
    /// The file or folder the error concerns, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            DataError::NotFound { path }
            | DataError::Io { path, .. }
            | DataError::Empty { path }
            | DataError::Unsupported { path, .. }
            | DataError::Truncated { path, .. }
            | DataError::Corrupt { path, .. }
            | DataError::TooLarge { path, .. }
            | DataError::OverLimit { path, .. }
            | DataError::DecoderPanic { path, .. }
            | DataError::Dataset { path, .. }
            | DataError::Write { path, .. } => Some(path),
            DataError::Undecodable { failures, .. } => failures.first().and_then(DataError::path),
            DataError::Invalid(_) | DataError::Tensor(_) => None,
        }
    }

    /// The most undecodable files an error names one by one.
    pub const LISTED: usize = 20;

    /// An error for `failures` (in input order): the failure itself when there is one, else a
    /// [`DataError::Undecodable`] naming the first [`DataError::LISTED`] and counting the rest.
    pub fn undecodable(mut failures: Vec<DataError>) -> Self {
        if failures.len() == 1 {
            return failures.remove(0);
        }
        let count = failures.len();
        failures.truncate(Self::LISTED);
        DataError::Undecodable { count, failures }
    }

    /// An I/O error on `path`, mapping "not found" to [`DataError::NotFound`].
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            DataError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            DataError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// The failures listed one per line, then `and N more` when some were left out.
fn list_failures(failures: &[DataError], count: usize) -> String {
    let mut out: String = failures.iter().map(|e| format!("\n  - {e}")).collect();
    if count > failures.len() {
        out.push_str(&format!("\n  and {} more", count - failures.len()));
    }
    out
}

/// An invalid configuration value; the message names the offending key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key, as written in the pipeline file (for example `zoom_range`).
    pub key: String,
    /// Why the value is refused.
    pub message: String,
}

impl ConfigError {
    /// A new error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` put before the key (for nested sections).
    pub fn within(mut self, prefix: &str) -> Self {
        self.key = format!("{prefix}.{}", self.key);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn empty(i: usize) -> DataError {
        DataError::Empty {
            path: PathBuf::from(format!("img{i}.jpg")),
        }
    }

    #[test]
    fn undecodable_files_are_all_named_up_to_the_cap() {
        assert!(matches!(
            DataError::undecodable(vec![empty(0)]),
            DataError::Empty { .. }
        ));
        let five = DataError::undecodable((0..5).map(empty).collect()).to_string();
        assert!(
            five.starts_with("5 file(s) could not be decoded:"),
            "{five}"
        );
        for i in 0..5 {
            assert!(five.contains(&format!("img{i}.jpg: empty file")), "{five}");
        }
        assert!(!five.contains("more"), "{five}");
        let many = DataError::undecodable((0..25).map(empty).collect());
        let text = many.to_string();
        assert!(
            text.contains("img19.jpg") && !text.contains("img20.jpg"),
            "{text}"
        );
        assert!(text.ends_with("and 5 more"), "{text}");
        assert_eq!(many.path(), Some(Path::new("img0.jpg")));
    }
}
