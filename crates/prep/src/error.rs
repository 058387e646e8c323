//! Error types of the split and of the default-source download.

use std::fmt;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::exclude::Unmatched;

/// A source file that was left out of the split, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejected {
    /// The file in the source folder.
    pub path: PathBuf,
    /// Why it was left out (a decoder error, a file name without a class label, ...).
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// Formats a list of rejected files, one per line, indented.
pub(crate) fn list_rejected(files: &[Rejected]) -> String {
    files
        .iter()
        .map(|r| format!("  {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The parenthesised note of [`SplitError::TooFewImages`]: images not counted as available.
fn too_few_note(undecodable: usize, excluded: usize) -> String {
    let mut parts = Vec::new();
    if undecodable > 0 {
        parts.push(format!("{undecodable} more could not be decoded"));
    }
    if excluded > 0 {
        parts.push(format!("{excluded} more are excluded by --exclude"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Everything that can go wrong while splitting a source folder.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// The source folder does not exist.
    #[error("source folder {} does not exist", path.display())]
    SourceMissing {
        /// The path given as source.
        path: PathBuf,
    },

    /// The source path exists but is not a folder.
    #[error("source {} is not a folder", path.display())]
    SourceNotADirectory {
        /// The path given as source.
        path: PathBuf,
    },

    /// The source folder holds no (visible) files or folders.
    #[error("source folder {} is empty", path.display())]
    SourceEmpty {
        /// The source folder.
        path: PathBuf,
    },

    /// The source folder holds both files and subfolders, so it is neither a flat
    /// `<label>.<index>.<ext>` folder nor a folder of class subfolders.
    #[error(
        "source folder {} mixes files (e.g. {}) and subfolders (e.g. {}): use either a flat folder \
         of `<label>.<index>.<ext>` files or one subfolder per class",
        path.display(), example_file, example_dir
    )]
    MixedLayout {
        /// The source folder.
        path: PathBuf,
        /// One of the files found at the top level.
        example_file: String,
        /// One of the subfolders found at the top level.
        example_dir: String,
    },

    /// A flat source folder in which no file is named `<label>.<index>.<ext>`.
    #[error(
        "no file in {} is named `<label>.<index>.<ext>` (like `cat.12.jpg`); {} file(s) left out:\n{}",
        path.display(), rejected.len(), list_rejected(rejected)
    )]
    NoLabelledFiles {
        /// The source folder.
        path: PathBuf,
        /// The files found and why each was left out.
        rejected: Vec<Rejected>,
    },

    /// A class subfolder or file name is not valid UTF-8.
    #[error("{} is not a valid UTF-8 name; class names must be UTF-8", path.display())]
    NonUtf8Name {
        /// The offending path.
        path: PathBuf,
    },

    /// The requested counts add up to nothing.
    #[error("--train, --validation and --test are all 0: nothing to split")]
    NothingRequested,

    /// The output folder is inside the source folder (the split would read its own output).
    #[error(
        "output folder {} is inside the source folder {}; choose an output outside the source",
        out.display(), source_dir.display()
    )]
    OutputInsideSource {
        /// The output folder.
        out: PathBuf,
        /// The source folder.
        source_dir: PathBuf,
    },

    /// The source folder is one of the split folders the split would replace.
    #[error(
        "source folder {} lies inside {}, which the split writes; choose another output folder",
        source_dir.display(), split_dir.display()
    )]
    SourceInsideOutput {
        /// The source folder.
        source_dir: PathBuf,
        /// The split folder that contains it.
        split_dir: PathBuf,
    },

    /// A class has fewer usable images than the split needs.
    #[error(
        "class `{class}` in {} has {available} image(s) but {request} needs {needed}{}",
        source_dir.display(),
        too_few_note(*undecodable, *excluded)
    )]
    TooFewImages {
        /// The class name (output folder name).
        class: String,
        /// The source folder.
        source_dir: PathBuf,
        /// Images the split needs per class (train + validation + test).
        needed: usize,
        /// Usable images found.
        available: usize,
        /// Images of this class that failed to decode.
        undecodable: usize,
        /// Images of this class left out by `--exclude`.
        excluded: usize,
        /// The request, as flags (`--train 1000 --validation 500 --test 0`).
        request: String,
    },

    /// `--strict` was given and some files could not be used.
    #[error(
        "--strict: {} file(s) could not be used:\n{}",
        files.len(), list_rejected(files)
    )]
    Strict {
        /// The files left out and why.
        files: Vec<Rejected>,
    },

    /// An `--exclude` file cannot be read or has an unexpected shape.
    #[error("cannot use exclude file {}: {problem}", path.display())]
    ExcludeFile {
        /// The exclude file, as given.
        path: PathBuf,
        /// What is wrong with it (missing, unreadable, malformed JSON with its line and column,
        /// JSON of another shape).
        problem: String,
    },

    /// `--strict` was given and an `--exclude` file names photos the source does not have.
    #[error("--strict: {0}")]
    ExcludeUnmatched(Unmatched),

    /// The output folder already holds a different split and `--force` was not given.
    #[error("{} already holds a different split: {reason}; rerun with --force to replace it", out.display())]
    ExistingSplit {
        /// The output folder.
        out: PathBuf,
        /// What differs.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read folder`, `create`, `copy to`, ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The manifest could not be serialised.
    #[error("cannot write manifest {}: {source}", path.display())]
    ManifestWrite {
        /// The manifest path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// An atomic file write failed.
    #[error("cannot write {0}")]
    Write(#[from] artifact::ArtifactError),

    /// Resolving the default source failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl SplitError {
    /// Builds an [`SplitError::Io`] error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Everything that can go wrong while downloading, verifying and unpacking the default source.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Neither `XDG_CACHE_HOME` nor a home folder is known.
    #[error("no cache folder: set XDG_CACHE_HOME or HOME, or pass --source DIR")]
    NoCacheDir,

    /// The HTTP download failed.
    #[error(
        "cannot download {url}: {source}; pass --source DIR (or set LITTLEDATA_SOURCE) to use a local folder"
    )]
    Download {
        /// The URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },

    /// The download was interrupted while reading the body.
    #[error("download of {url} failed after {received} bytes: {source}")]
    DownloadBody {
        /// The URL.
        url: String,
        /// Bytes received before the failure.
        received: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The archive has the wrong size.
    #[error("{} has {actual} bytes, expected {expected}; delete it to download it again", path.display())]
    SizeMismatch {
        /// The archive.
        path: PathBuf,
        /// The published size.
        expected: u64,
        /// The size found.
        actual: u64,
    },

    /// The archive's sha256 digest is not the expected one.
    #[error(
        "{} has sha256 {actual}, expected {expected} ({origin}); delete it to download it again",
        path.display()
    )]
    DigestMismatch {
        /// The archive.
        path: PathBuf,
        /// The expected digest.
        expected: String,
        /// The digest found.
        actual: String,
        /// Where the expected digest comes from (pinned, or recorded at first download in a file).
        origin: String,
    },

    /// The archive is not a readable zip file.
    #[error("{} is not a readable zip archive: {source}", path.display())]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The zip reader's error.
        #[source]
        source: zip::result::ZipError,
    },

    /// An archive entry has an unsafe path (absolute, or escaping with `..`).
    #[error("{} holds an entry with an unsafe path: {entry}", path.display())]
    UnsafeEntry {
        /// The archive.
        path: PathBuf,
        /// The entry's name.
        entry: String,
    },

    /// Two archive entries land on the same file after merging.
    #[error("{} holds {entry} twice after merging {merged}", path.display())]
    DuplicateEntry {
        /// The archive.
        path: PathBuf,
        /// The class/file path that appears twice.
        entry: String,
        /// The merged folders.
        merged: String,
    },

    /// The archive holds no image in the expected class folders.
    #[error("{} holds no file under {expected}", path.display())]
    NoImagesInArchive {
        /// The archive.
        path: PathBuf,
        /// The expected layout.
        expected: String,
    },

    /// Writing or hashing a file failed.
    #[error("cannot write or read {0}")]
    File(#[from] artifact::ArtifactError),

    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Builds a [`FetchError::Io`] error.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
