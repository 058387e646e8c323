//! The images of a split and the digest that tells whether any of them changed
//! ([`ImageFolder::content_digest`]: the classes and, for every image in row order, its path
//! relative to the split's folder, its size and the sha256 of its bytes).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::folder::ImageFolder;

type Result<T> = std::result::Result<T, DataError>;

/// A split of the data folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// `<data.dir>/train`.
    Train,
    /// `<data.dir>/validation`.
    Validation,
}

impl Split {
    /// The folder name (`train`, `validation`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The images of one split in row order, with their labels and content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitData {
    /// Which split.
    pub split: Split,
    /// The split's folder.
    pub root: PathBuf,
    /// Class names (sorted subfolder names); label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// The image files, grouped by class, sorted within a class.
    pub files: Vec<PathBuf>,
    /// Each file's path relative to `root`, with `/` separators.
    pub relative: Vec<String>,
    /// Each file's class index.
    pub labels: Vec<u32>,
    /// sha256 over the classes and every file's relative path, size and content hash
    /// ([`ImageFolder::content_digest`]).
    pub digest: String,
}

impl SplitData {
    /// Scans `<data_dir>/<split>` (one subfolder per class, sorted; files sorted) and digests
    /// its images. At least two classes are required.
    pub fn scan(data_dir: &Path, split: Split) -> Result<Self> {
        let root = data_dir.join(split.dir_name());
        let folder = ImageFolder::scan(&root)?;
        if folder.classes.len() < 2 {
            return Err(DataError::Dataset {
                path: root,
                detail: format!(
                    "a classifier needs at least two class subfolders, found {}: {:?}",
                    folder.classes.len(),
                    folder.classes
                ),
            });
        }
        Self::from_folder(split, folder)
    }

    /// Scans and digests `<data_dir>/train` and `<data_dir>/validation`, which must have the
    /// same classes in the same order.
    pub fn scan_pair(data_dir: &Path) -> Result<(Self, Self)> {
        let train = Self::scan(data_dir, Split::Train)?;
        let validation = Self::scan(data_dir, Split::Validation)?;
        train.check_same_classes(&validation)?;
        Ok((train, validation))
    }

    /// Digests an already scanned folder.
    pub fn from_folder(split: Split, folder: ImageFolder) -> Result<Self> {
        let relative = folder.relative_names();
        let digest = folder.content_digest()?;
        Ok(Self {
            split,
            root: folder.root,
            classes: folder.classes,
            files: folder.files,
            relative,
            labels: folder.labels,
            digest,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no images (never true for a scanned split).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Checks that `other` (another split) has the same classes in the same order.
    pub fn check_same_classes(&self, other: &SplitData) -> Result<()> {
        if self.classes != other.classes {
            return Err(DataError::Dataset {
                path: other.root.clone(),
                detail: format!(
                    "its classes {:?} differ from those of {} {:?}; every split needs the same \
                     class subfolders",
                    other.classes,
                    self.root.display(),
                    self.classes
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn a_split_holds_its_folders_rows_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, bytes) in [
            ("cats/1.jpg", "one"),
            ("dogs/2.png", "two"),
            ("dogs/x/3.jpg", "3"),
        ] {
            write(&d.join("train").join(name), bytes.as_bytes());
        }
        let s = SplitData::scan(d, Split::Train).unwrap();
        let folder = ImageFolder::scan(&d.join("train")).unwrap();
        assert_eq!(s.relative, ["cats/1.jpg", "dogs/2.png", "dogs/x/3.jpg"]);
        assert_eq!(s.relative, folder.relative_names());
        assert_eq!(s.digest, folder.content_digest().unwrap());
        assert_eq!(
            (s.root, s.classes, s.files, s.labels),
            (folder.root, folder.classes, folder.files, folder.labels)
        );
    }

    #[test]
    fn one_class_or_different_classes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("train/cats/a.jpg"), b"a");
        let err = SplitData::scan(d, Split::Train).unwrap_err().to_string();
        assert!(
            err.contains("at least two class") && err.contains("train"),
            "{err}"
        );
        write(&d.join("train/dogs/a.jpg"), b"a");
        write(&d.join("validation/cats/a.jpg"), b"a");
        write(&d.join("validation/horses/a.jpg"), b"a");
        let t = SplitData::scan(d, Split::Train).unwrap();
        let v = SplitData::scan(d, Split::Validation).unwrap();
        let err = t.check_same_classes(&v).unwrap_err().to_string();
        assert!(
            err.contains("validation") && err.contains("horses"),
            "{err}"
        );
    }
}
