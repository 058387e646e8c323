//! Reading a source folder: its layout, its classes and their files in a canonical order.
//!
//! Two layouts are accepted:
//!
//! - **flat** (the Kaggle "Dogs vs. Cats" layout): every file is named `<label>.<index>.<ext>`
//!   (`cat.12.jpg`); the class is the plural of the label (`cats`), see [`plural`];
//! - **class folders**: one subfolder per class (`cats/`, `dogs/`, ...); the class is the
//!   subfolder's name and every file directly inside it belongs to it.
//!
//! Names starting with `.` are ignored in both layouts. Within a class, files are ordered by
//! their numeric index (see [`file_index`]), files without one after those, ties by name.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Rejected, SplitError};

/// How a source folder is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Files named `<label>.<index>.<ext>` directly in the folder.
    Flat,
    /// One subfolder per class.
    ClassFolders,
}

impl Layout {
    /// A short human-readable name.
    pub fn describe(self) -> &'static str {
        match self {
            Layout::Flat => "flat folder of <label>.<index>.<ext> files",
            Layout::ClassFolders => "one subfolder per class",
        }
    }
}

/// One candidate image of a class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Full path of the file in the source.
    pub path: PathBuf,
    /// File name (kept unchanged in the output).
    pub name: String,
    /// Numeric index parsed from the name, see [`file_index`].
    pub index: Option<u64>,
    /// File size in bytes.
    pub bytes: u64,
}

/// One class of a source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceClass {
    /// The class name, which is also its output folder name (`cats`).
    pub name: String,
    /// Its files in canonical order (see [`canonical_order`]).
    pub files: Vec<Candidate>,
}

/// A scanned source folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedSource {
    /// The folder, canonicalised.
    pub root: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Its classes, sorted by name.
    pub classes: Vec<SourceClass>,
    /// Files found but not usable as images of a class (bad names, nested folders).
    pub rejected: Vec<Rejected>,
}

impl ScannedSource {
    /// sha256 over the layout, every class and every file's name and size (in canonical
    /// order) and the rejected entries: it changes whenever the source's listing does.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(match self.layout {
            Layout::Flat => b"flat\n".as_slice(),
            Layout::ClassFolders => b"class_folders\n".as_slice(),
        });
        for class in &self.classes {
            h.update(b"class\0");
            h.update(class.name.as_bytes());
            h.update(b"\n");
            for file in &class.files {
                h.update(file.name.as_bytes());
                h.update(b"\0");
                h.update(file.bytes.to_le_bytes());
            }
        }
        for r in &self.rejected {
            h.update(b"rejected\0");
            h.update(r.path.to_string_lossy().as_bytes());
            h.update(b"\n");
        }
        hex::encode(h.finalize())
    }
}

/// The plural of a class label, by simple English rules: a label already ending in `s`
/// (but not `ss`, `us` or `is`) is kept (`cats`); one ending in `s`, `x`, `z`, `ch` or `sh`
/// takes `es` (`fox` → `foxes`); a consonant followed by `y` becomes `ies` (`puppy` →
/// `puppies`); anything else takes `s` (`cat` → `cats`, `dog` → `dogs`).
pub fn plural(label: &str) -> String {
    let lower = label.to_lowercase();
    let already_plural = lower.ends_with('s')
        && !lower.ends_with("ss")
        && !lower.ends_with("us")
        && !lower.ends_with("is");
    if already_plural || label.is_empty() {
        return label.to_string();
    }
    if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| lower.ends_with(e))
    {
        return format!("{label}es");
    }
    let mut chars = label.chars().rev();
    if let (Some(y @ ('y' | 'Y')), Some(before)) = (chars.next(), chars.next())
        && !"aeiouAEIOU".contains(before)
    {
        let stem = &label[..label.len() - 1];
        let ies = if y == 'Y' { "IES" } else { "ies" };
        return format!("{stem}{ies}");
    }
    format!("{label}s")
}

/// The numeric index of a file name: the first dot-separated part of the name (without its
/// extension) that is all ASCII digits. `cat.12.jpg` → 12, `0042.png` → 42, `cat.jpg` → none.
pub fn file_index(name: &str) -> Option<u64> {
    let stem = match name.rsplit_once('.') {
        Some((stem, _ext)) => stem,
        None => name,
    };
    stem.split('.')
        .find(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|part| part.parse().ok())
}

/// Orders two candidates: by index (files with an index first), then by name.
pub fn canonical_order(a: &Candidate, b: &Candidate) -> Ordering {
    match (a.index, b.index) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.name.cmp(&b.name)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    }
}

/// The class label of a flat-layout file name `<label>.<index>.<ext>`, or why there is none.
fn flat_label(name: &str) -> Result<&str, &'static str> {
    match name.split_once('.') {
        Some((label, rest)) if !label.is_empty() && rest.contains('.') => Ok(label),
        _ => {
            Err("file name is not `<label>.<index>.<ext>` (like `cat.12.jpg`), so it has no class")
        }
    }
}

struct Entry {
    path: PathBuf,
    name: Option<String>,
    is_dir: bool,
    bytes: u64,
}

/// Lists a folder's visible entries (names not starting with `.`), following symlinks,
/// sorted by name.
fn list(dir: &Path) -> Result<Vec<Entry>, SplitError> {
    let read = fs::read_dir(dir).map_err(|e| SplitError::io("read folder", dir, e))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| SplitError::io("read folder", dir, e))?;
        let path = entry.path();
        let os_name = entry.file_name();
        if os_name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let meta = fs::metadata(&path).map_err(|e| SplitError::io("read", &path, e))?;
        out.push(Entry {
            name: os_name.to_str().map(str::to_owned),
            is_dir: meta.is_dir(),
            bytes: meta.len(),
            path,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Scans a source folder: detects its layout, finds its classes and their files.
///
/// Errors on a missing, non-folder or empty source, a folder that mixes files and subfolders,
/// and a flat folder with no `<label>.<index>.<ext>` file. A class subfolder with no file is
/// kept with no candidates (the split then reports it as having too few images).
pub fn scan(source: &Path) -> Result<ScannedSource, SplitError> {
    let meta = match fs::metadata(source) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SplitError::SourceMissing {
                path: source.to_path_buf(),
            });
        }
        Err(e) => return Err(SplitError::io("read", source, e)),
    };
    if !meta.is_dir() {
        return Err(SplitError::SourceNotADirectory {
            path: source.to_path_buf(),
        });
    }
    let root = fs::canonicalize(source).map_err(|e| SplitError::io("resolve", source, e))?;
    let entries = list(&root)?;
    if entries.is_empty() {
        return Err(SplitError::SourceEmpty { path: root });
    }
    let first_file = entries.iter().find(|e| !e.is_dir);
    let first_dir = entries.iter().find(|e| e.is_dir);
    match (first_file, first_dir) {
        (Some(file), Some(dir)) => Err(SplitError::MixedLayout {
            example_file: file.path.display().to_string(),
            example_dir: dir.path.display().to_string(),
            path: root,
        }),
        (Some(_), None) => scan_flat(root, entries),
        (None, _) => scan_class_folders(root, entries),
    }
}

fn candidate(entry: Entry, name: String) -> Candidate {
    Candidate {
        index: file_index(&name),
        path: entry.path,
        name,
        bytes: entry.bytes,
    }
}

fn scan_flat(root: PathBuf, entries: Vec<Entry>) -> Result<ScannedSource, SplitError> {
    let mut classes: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for entry in entries {
        let Some(name) = entry.name.clone() else {
            rejected.push(Rejected {
                path: entry.path,
                reason: "file name is not valid UTF-8".into(),
            });
            continue;
        };
        match flat_label(&name) {
            Ok(label) => {
                let class = plural(label);
                classes
                    .entry(class)
                    .or_default()
                    .push(candidate(entry, name));
            }
            Err(reason) => rejected.push(Rejected {
                path: entry.path,
                reason: reason.into(),
            }),
        }
    }
    if classes.is_empty() {
        return Err(SplitError::NoLabelledFiles {
            path: root,
            rejected,
        });
    }
    Ok(ScannedSource {
        root,
        layout: Layout::Flat,
        classes: finish(classes),
        rejected,
    })
}

fn scan_class_folders(root: PathBuf, entries: Vec<Entry>) -> Result<ScannedSource, SplitError> {
    let mut classes = BTreeMap::new();
    let mut rejected = Vec::new();
    for dir in entries {
        let Some(class) = dir.name.clone() else {
            return Err(SplitError::NonUtf8Name { path: dir.path });
        };
        let mut files = Vec::new();
        for entry in list(&dir.path)? {
            if entry.is_dir {
                rejected.push(Rejected {
                    path: entry.path,
                    reason: "is a folder; class folders are not searched recursively".into(),
                });
                continue;
            }
            match entry.name.clone() {
                Some(name) => files.push(candidate(entry, name)),
                None => rejected.push(Rejected {
                    path: entry.path,
                    reason: "file name is not valid UTF-8".into(),
                }),
            }
        }
        classes.insert(class, files);
    }
    Ok(ScannedSource {
        root,
        layout: Layout::ClassFolders,
        classes: finish(classes),
        rejected,
    })
}

fn finish(classes: BTreeMap<String, Vec<Candidate>>) -> Vec<SourceClass> {
    classes
        .into_iter()
        .map(|(name, mut files)| {
            files.sort_by(canonical_order);
            SourceClass { name, files }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_rules() {
        assert_eq!(plural("cat"), "cats");
        assert_eq!(plural("dog"), "dogs");
        assert_eq!(plural("cats"), "cats");
        assert_eq!(plural("fox"), "foxes");
        assert_eq!(plural("bus"), "buses");
        assert_eq!(plural("glass"), "glasses");
        assert_eq!(plural("iris"), "irises");
        assert_eq!(plural("finch"), "finches");
        assert_eq!(plural("fish"), "fishes");
        assert_eq!(plural("buzz"), "buzzes");
        assert_eq!(plural("puppy"), "puppies");
        assert_eq!(plural("monkey"), "monkeys");
        assert_eq!(plural("horse"), "horses");
        assert_eq!(plural("PUPPY"), "PUPPIES");
    }

    #[test]
    fn index_parsing() {
        assert_eq!(file_index("cat.12.jpg"), Some(12));
        assert_eq!(file_index("cat.0.jpg"), Some(0));
        assert_eq!(file_index("0042.png"), Some(42));
        assert_eq!(file_index("cat.jpg"), None);
        assert_eq!(file_index("cat.tabby.jpg"), None);
        assert_eq!(file_index("cat.12"), None);
        assert_eq!(file_index("noext"), None);
    }

    #[test]
    fn labels_of_flat_names() {
        assert_eq!(flat_label("cat.12.jpg"), Ok("cat"));
        assert_eq!(flat_label("dog.x.y.png"), Ok("dog"));
        assert!(flat_label("README.md").is_err());
        assert!(flat_label("noext").is_err());
    }

    #[test]
    fn ordering_is_numeric_then_by_name() {
        let c = |name: &str| Candidate {
            path: PathBuf::from(name),
            name: name.into(),
            index: file_index(name),
            bytes: 0,
        };
        let mut files = [
            c("cat.10.jpg"),
            c("cat.b.jpg"),
            c("cat.2.jpg"),
            c("cat.a.jpg"),
            c("cat.02.jpg"),
        ];
        files.sort_by(canonical_order);
        let names: Vec<_> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cat.02.jpg",
                "cat.2.jpg",
                "cat.10.jpg",
                "cat.a.jpg",
                "cat.b.jpg"
            ]
        );
    }
}
