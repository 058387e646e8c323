//! The split manifest, `split.json`: the arguments, the source and the exact file lists of a
//! split, written atomically next to the split folders. It makes a rerun with the same
//! arguments a no-op and lets a different existing split be recognised and refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Rejected, SplitError};
use crate::source::Layout;

/// File name of the manifest inside the output folder.
pub const MANIFEST_FILE: &str = "split.json";

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// One of the three subsets of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subset {
    /// `train/`.
    Train,
    /// `validation/`.
    Validation,
    /// `test/`.
    Test,
}

impl Subset {
    /// All subsets, in the order images are assigned to them.
    pub const ALL: [Subset; 3] = [Subset::Train, Subset::Validation, Subset::Test];

    /// The subset's folder name (`train`, `validation`, `test`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Subset::Train => "train",
            Subset::Validation => "validation",
            Subset::Test => "test",
        }
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The order in which each class's files are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Order {
    /// Numeric order of the file index (`cat.2` before `cat.10`), then by name.
    Numeric,
    /// A seeded ChaCha8 shuffle of the canonical order.
    Shuffled {
        /// The seed.
        seed: u64,
    },
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Order::Numeric => f.write_str("numeric order"),
            Order::Shuffled { seed } => write!(f, "--shuffle --seed {seed}"),
        }
    }
}

/// Everything that determines a split's content. Two splits with equal parameters are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitParams {
    /// The source folder, canonicalised.
    pub source: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// [`crate::source::ScannedSource::digest`] of the source listing.
    pub source_digest: String,
    /// Images per class in `train/`.
    pub train: usize,
    /// Images per class in `validation/`.
    pub validation: usize,
    /// Images per class in `test/`.
    pub test: usize,
    /// The order the files are taken in.
    pub order: Order,
    /// The source photos left out by `--exclude`, as `<class>/<file name>`, sorted (empty in
    /// manifests written before `--exclude` existed).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// [`crate::exclude::digest`] of [`SplitParams::exclude`]; empty when nothing is excluded.
    #[serde(default)]
    pub exclude_digest: String,
}

impl SplitParams {
    /// The per-class count of a subset.
    pub fn count(&self, subset: Subset) -> usize {
        match subset {
            Subset::Train => self.train,
            Subset::Validation => self.validation,
            Subset::Test => self.test,
        }
    }

    /// The counts as command-line flags (`--train 1000 --validation 500 --test 0`).
    pub fn request(&self) -> String {
        format!(
            "--train {} --validation {} --test {}",
            self.train, self.validation, self.test
        )
    }
}

/// How the output files were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// Every file is a hard link to its source.
    HardLink,
    /// Every file is a copy.
    Copy,
    /// Some files are hard links, some copies.
    Mixed,
}

/// One file of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The file name (as in the source).
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// The content of `split.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// The program and version that wrote it.
    pub generator: String,
    /// Creation time, RFC 3339, UTC.
    pub created: String,
    /// The split's parameters.
    pub params: SplitParams,
    /// The class names (output folder names), sorted.
    pub classes: Vec<String>,
    /// How the files were made.
    pub link_mode: LinkMode,
    /// Subset folder name → class → files, in the order they were taken.
    pub splits: BTreeMap<String, BTreeMap<String, Vec<ManifestFile>>>,
    /// Source files left out (undecodable, or without a class), with the reason.
    pub rejected: Vec<Rejected>,
    /// Source files left out by `--exclude`, with the file that excluded them
    /// (`excluded by artifacts/audit/audit.json`), sorted by path.
    #[serde(default)]
    pub excluded: Vec<Rejected>,
}

impl Manifest {
    /// The files of one class in one subset (empty when there are none).
    pub fn files(&self, subset: Subset, class: &str) -> &[ManifestFile] {
        self.splits
            .get(subset.dir_name())
            .and_then(|classes| classes.get(class))
            .map_or(&[], Vec::as_slice)
    }

    /// The subsets this split has (those with a non-zero count), in order.
    pub fn subsets(&self) -> Vec<Subset> {
        Subset::ALL
            .into_iter()
            .filter(|s| self.splits.contains_key(s.dir_name()))
            .collect()
    }

    /// Reads a manifest; the error is a human-readable reason.
    pub fn read(path: &Path) -> Result<Manifest, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a valid split manifest: {e}", path.display()))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!(
                "{} has manifest format {}, this version reads {MANIFEST_FORMAT}",
                path.display(),
                manifest.format
            ));
        }
        Ok(manifest)
    }

    /// Writes the manifest to `dir/split.json` atomically: a temporary file in `dir`, flushed
    /// to disk, then renamed over the target.
    pub fn write_atomic(&self, dir: &Path) -> Result<PathBuf, SplitError> {
        let path = dir.join(MANIFEST_FILE);
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|source| SplitError::ManifestWrite {
                path: path.clone(),
                source,
            })?;
        bytes.push(b'\n');
        artifact::atomic_write(&path, &bytes)?;
        Ok(path)
    }

    /// Why an existing split with this manifest differs from a split with `params`; empty
    /// when they are the same split.
    pub fn differences(&self, params: &SplitParams) -> Vec<String> {
        let old = &self.params;
        let mut out = Vec::new();
        if old.source != params.source {
            out.push(format!(
                "it was made from {}, not {}",
                old.source.display(),
                params.source.display()
            ));
        } else if old.layout != params.layout || old.source_digest != params.source_digest {
            out.push(format!(
                "the files in {} changed since it was made",
                params.source.display()
            ));
        }
        if (old.train, old.validation, old.test) != (params.train, params.validation, params.test) {
            out.push(format!(
                "it was made with {}, not {}",
                old.request(),
                params.request()
            ));
        }
        if old.order != params.order {
            out.push(format!(
                "it was made in {}, not {}",
                old.order, params.order
            ));
        }
        if old.exclude_digest != params.exclude_digest || old.exclude != params.exclude {
            out.push(exclusion_difference(&old.exclude, &params.exclude));
        }
        out
    }

    /// Checks that `out` holds exactly the files this manifest lists (names and sizes) in its
    /// subset folders; the error describes the first differences found.
    pub fn check_intact(&self, out: &Path) -> Result<(), String> {
        let mut problems = Vec::new();
        for subset in Subset::ALL {
            let dir = out.join(subset.dir_name());
            match self.splits.get(subset.dir_name()) {
                None => {
                    if count_files(&dir) > 0 {
                        problems.push(format!("{} is not part of the split", dir.display()));
                    }
                }
                Some(classes) => compare_subset(&dir, classes, &mut problems),
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let shown = problems.len().min(3);
        let mut msg = format!(
            "the files do not match {}: {}",
            MANIFEST_FILE,
            problems[..shown].join("; ")
        );
        if problems.len() > shown {
            msg.push_str(&format!(" (and {} more)", problems.len() - shown));
        }
        Err(msg)
    }
}

/// How two lists of excluded photos differ, as a reason for [`Manifest::differences`].
fn exclusion_difference(old: &[String], new: &[String]) -> String {
    let excluding = |n: usize| match n {
        0 => "with no photo excluded".to_string(),
        n => format!("with {n} photo(s) excluded"),
    };
    let old_set: BTreeSet<&String> = old.iter().collect();
    let new_set: BTreeSet<&String> = new.iter().collect();
    let show = |names: Vec<&&String>| {
        let shown: Vec<&str> = names.iter().take(3).map(|n| n.as_str()).collect();
        let mut text = shown.join(", ");
        if names.len() > shown.len() {
            text.push_str(&format!(" and {} more", names.len() - shown.len()));
        }
        text
    };
    let mut details = Vec::new();
    let added: Vec<&&String> = new_set.difference(&old_set).collect();
    if !added.is_empty() {
        details.push(format!("now also excluding {}", show(added)));
    }
    let dropped: Vec<&&String> = old_set.difference(&new_set).collect();
    if !dropped.is_empty() {
        details.push(format!("no longer excluding {}", show(dropped)));
    }
    let mut msg = if old.len() == new.len() {
        format!("it was made with {} other photo(s) excluded", old.len())
    } else {
        format!(
            "it was made {}, not {}",
            excluding(old.len()),
            excluding(new.len())
        )
    };
    if !details.is_empty() {
        msg.push_str(&format!(" ({})", details.join("; ")));
    }
    msg
}

/// Visible entries of a folder: name → (is folder, size).
fn visible_entries(dir: &Path) -> std::io::Result<BTreeMap<String, (bool, u64)>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let meta = fs::metadata(entry.path())?;
        out.insert(name, (meta.is_dir(), meta.len()));
    }
    Ok(out)
}

/// Number of files under a folder (recursively); 0 when it does not exist.
pub(crate) fn count_files(dir: &Path) -> usize {
    let Ok(read) = fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => count_files(&entry.path()),
            _ => 1,
        })
        .sum()
}

fn compare_subset(
    dir: &Path,
    classes: &BTreeMap<String, Vec<ManifestFile>>,
    problems: &mut Vec<String>,
) {
    let found = match visible_entries(dir) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            problems.push(format!("{} is missing", dir.display()));
            return;
        }
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", dir.display()));
            return;
        }
    };
    for (name, (is_dir, _)) in &found {
        if !is_dir || !classes.contains_key(name) {
            problems.push(format!(
                "{} is not part of the split",
                dir.join(name).display()
            ));
        }
    }
    for (class, files) in classes {
        let class_dir = dir.join(class);
        let on_disk = match visible_entries(&class_dir) {
            Ok(on_disk) => on_disk,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{} is missing", class_dir.display()));
                continue;
            }
            Err(e) => {
                problems.push(format!("cannot read {}: {e}", class_dir.display()));
                continue;
            }
        };
        let listed: BTreeSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        for file in files {
            match on_disk.get(&file.name) {
                None => problems.push(format!(
                    "{} is missing",
                    class_dir.join(&file.name).display()
                )),
                Some((true, _)) => problems.push(format!(
                    "{} is a folder",
                    class_dir.join(&file.name).display()
                )),
                Some((false, bytes)) if *bytes != file.bytes => problems.push(format!(
                    "{} has {bytes} bytes, the manifest says {}",
                    class_dir.join(&file.name).display(),
                    file.bytes
                )),
                Some(_) => {}
            }
        }
        for name in on_disk.keys() {
            if !listed.contains(name.as_str()) {
                problems.push(format!(
                    "{} is not part of the split",
                    class_dir.join(name).display()
                ));
            }
        }
    }
}
