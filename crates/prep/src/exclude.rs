//! `prep split --exclude FILE`: photos a user has confirmed as bad, left out of the split.
//!
//! An exclude file is one of:
//!
//! - an audit report (`artifacts/audit/audit.json`): a JSON object whose `flagged` array holds
//!   objects with at least a `path` string (`"data/train/cats/cat.12.jpg"`); every other field
//!   is ignored, so a user can delete the entries they think are fine and pass the rest;
//! - a JSON array of path strings;
//! - a text file with one path per line; blank lines and `#` comments (a whole line, or from
//!   a `#` after white space to the end of the line) are ignored.
//!
//! A file is read as JSON when its name ends in `.json` or its first character (after white
//! space) is `{` or `[`, and as a text list otherwise.
//!
//! Each entry names a photo by path or bare file name. It matches the source's candidates by
//! file name (the last path component; a split keeps source file names). When the source has
//! class subfolders and the entry has a parent folder naming a class that holds that file, only
//! that class's file matches (`cats/img_3.png` leaves `dogs/img_3.png` in); otherwise every
//! candidate with that file name does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Rejected, SplitError};
use crate::source::{Layout, ScannedSource};

/// How many unmatched entries a warning or an error shows.
const SHOWN: usize = 5;

/// The entries of one exclude file, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludeList {
    /// The file, as given.
    pub file: PathBuf,
    /// Its entries (paths or file names), in file order, without duplicates or blanks.
    pub entries: Vec<String>,
}

impl ExcludeList {
    /// Reads an exclude file (see the module documentation for the accepted forms).
    ///
    /// Errors, naming the file, when it cannot be read, is not UTF-8, is malformed JSON (with
    /// the line and column), or is JSON of another shape.
    pub fn read(path: &Path) -> Result<Self, SplitError> {
        let bytes = fs::read(path).map_err(|e| {
            let problem = match e.kind() {
                std::io::ErrorKind::NotFound => "it does not exist".to_string(),
                _ => format!("cannot read it: {e}"),
            };
            bad(path, problem)
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            bad(
                path,
                format!(
                    "it is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Self::parse(path, &text)
    }

    /// Parses the content of an exclude file; `path` names it in errors and decides, by its
    /// extension, whether it is JSON.
    pub fn parse(path: &Path, text: &str) -> Result<Self, SplitError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let is_json_name = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let first = text.trim_start().chars().next();
        let raw = if is_json_name || matches!(first, Some('{' | '[')) {
            json_entries(path, text)?
        } else {
            text_entries(text)
        };
        let mut seen = HashSet::new();
        let entries = raw
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty() && seen.insert(e.clone()))
            .collect();
        Ok(Self {
            file: path.to_path_buf(),
            entries,
        })
    }
}

/// An [`SplitError::ExcludeFile`] error.
fn bad(path: &Path, problem: impl Into<String>) -> SplitError {
    SplitError::ExcludeFile {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// What the accepted JSON forms look like, for error messages.
const EXPECTED_JSON: &str = "expected an audit report (an object with a `flagged` array of \
                             objects with a `path`) or an array of path strings";

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn json_entries(path: &Path, text: &str) -> Result<Vec<String>, SplitError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        bad(
            path,
            format!(
                "it is not valid JSON: line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })?;
    match value {
        Value::Object(mut object) => {
            let Some(flagged) = object.remove("flagged") else {
                return Err(bad(
                    path,
                    format!("it is a JSON object without a `flagged` array; {EXPECTED_JSON}"),
                ));
            };
            let Value::Array(flagged) = flagged else {
                return Err(bad(
                    path,
                    format!("its `flagged` is {}, not an array", kind_of(&flagged)),
                ));
            };
            flagged
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(mut o) => match o.remove("path") {
                        Some(Value::String(p)) => Ok(p),
                        Some(other) => Err(bad(
                            path,
                            format!("`flagged[{i}].path` is {}, not a string", kind_of(&other)),
                        )),
                        None => Err(bad(path, format!("`flagged[{i}]` has no `path`"))),
                    },
                    other => Err(bad(
                        path,
                        format!(
                            "`flagged[{i}]` is {}, not an object with a `path`",
                            kind_of(&other)
                        ),
                    )),
                })
                .collect()
        }
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(p) => Ok(p),
                other => Err(bad(
                    path,
                    format!(
                        "element {i} of the array is {}, not a path string",
                        kind_of(&other)
                    ),
                )),
            })
            .collect(),
        other => Err(bad(
            path,
            format!("it is JSON {}; {EXPECTED_JSON}", kind_of(&other)),
        )),
    }
}

fn text_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| strip_comment(line).trim())
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

/// A line without its comment: from a `#` at its start or after white space to its end (a `#`
/// inside a name is kept).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// The parent folder and the file name of an entry (`/` and `\` both separate).
fn entry_parts(entry: &str) -> (Option<&str>, &str) {
    let trimmed = entry.trim_end_matches(['/', '\\']);
    let mut parts = trimmed.rsplit(['/', '\\']);
    let name = parts.next().unwrap_or("");
    let parent = parts
        .next()
        .filter(|p| !p.is_empty() && *p != "." && *p != "..");
    (parent, name)
}

/// The entries of one exclude file that match no photo of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmatched {
    /// The exclude file, as given.
    pub file: PathBuf,
    /// Its entries that match nothing, in file order.
    pub entries: Vec<String>,
    /// How many entries the file has.
    pub total: usize,
}

impl Unmatched {
    /// The first few unmatched entries, then how many more there are.
    pub fn shown(&self) -> String {
        let mut out = self.entries[..self.entries.len().min(SHOWN)].join(", ");
        if self.entries.len() > SHOWN {
            out.push_str(&format!(" (and {} more)", self.entries.len() - SHOWN));
        }
        out
    }
}

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of the {} entries of {} match no photo of the source: {}",
            self.entries.len(),
            self.total,
            self.file.display(),
            self.shown()
        )
    }
}

/// The exclude files applied to a scanned source.
#[derive(Debug, Clone, Default)]
pub(crate) struct Exclusions {
    /// Paths of the excluded candidates.
    pub paths: HashSet<PathBuf>,
    /// Excluded candidates per class name.
    pub per_class: BTreeMap<String, usize>,
    /// The excluded candidates as `<class>/<file name>`, sorted.
    pub names: Vec<String>,
    /// The excluded candidates with the file that excluded them, sorted by path.
    pub rejected: Vec<Rejected>,
    /// The files with entries that match nothing.
    pub unmatched: Vec<Unmatched>,
}

impl Exclusions {
    /// Matches every list's entries against the source's candidates.
    pub fn apply(lists: &[ExcludeList], source: &ScannedSource) -> Self {
        // File name → (class index, file index) of every candidate with that name.
        let mut by_name: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (c, class) in source.classes.iter().enumerate() {
            for (f, file) in class.files.iter().enumerate() {
                by_name.entry(file.name.as_str()).or_default().push((c, f));
            }
        }
        let mut out = Self::default();
        let mut excluded: BTreeMap<(usize, usize), &Path> = BTreeMap::new();
        for list in lists {
            let mut unmatched = Vec::new();
            for entry in &list.entries {
                let (parent, name) = entry_parts(entry);
                let Some(all) = by_name.get(name) else {
                    unmatched.push(entry.clone());
                    continue;
                };
                let exact: Vec<(usize, usize)> = match (source.layout, parent) {
                    (Layout::ClassFolders, Some(parent)) => all
                        .iter()
                        .copied()
                        .filter(|&(c, _)| source.classes[c].name == parent)
                        .collect(),
                    _ => Vec::new(),
                };
                let hits = if exact.is_empty() { all.clone() } else { exact };
                for hit in hits {
                    excluded.entry(hit).or_insert(&list.file);
                }
            }
            if !unmatched.is_empty() {
                out.unmatched.push(Unmatched {
                    file: list.file.clone(),
                    entries: unmatched,
                    total: list.entries.len(),
                });
            }
        }
        let mut names = BTreeSet::new();
        for ((c, f), file) in excluded {
            let class = &source.classes[c];
            let candidate = &class.files[f];
            out.paths.insert(candidate.path.clone());
            *out.per_class.entry(class.name.clone()).or_default() += 1;
            names.insert(format!("{}/{}", class.name, candidate.name));
            out.rejected.push(Rejected {
                path: candidate.path.clone(),
                reason: format!("excluded by {}", file.display()),
            });
        }
        out.names = names.into_iter().collect();
        out.rejected.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Excluded candidates of a class.
    pub fn in_class(&self, class: &str) -> usize {
        self.per_class.get(class).copied().unwrap_or(0)
    }
}

/// sha256 of a sorted list of excluded photos (`<class>/<file name>`, one per line); empty for
/// an empty list, as in manifests written before `--exclude` existed.
pub fn digest(names: &[String]) -> String {
    if names.is_empty() {
        return String::new();
    }
    let mut h = Sha256::new();
    for name in names {
        h.update(name.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<Vec<String>, String> {
        ExcludeList::parse(Path::new(name), text)
            .map(|l| l.entries)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn exclude_text_lists_skip_blanks_and_comments() {
        let text = "# confirmed bad\n\ncats/cat.1.jpg\n  dog.2.jpg   # blurry\nodd#name.jpg\n\
                    cats/cat.1.jpg\n\t# indented comment\n";
        assert_eq!(
            parse("bad.txt", text).unwrap(),
            ["cats/cat.1.jpg", "dog.2.jpg", "odd#name.jpg"]
        );
        assert!(parse("empty.txt", "").unwrap().is_empty());
    }

    #[test]
    fn exclude_json_forms() {
        let audit = r#"{"format": 1, "flagged": [
            {"path": "data/train/cats/cat.12.jpg", "kind": "label_issue", "score": 0.9},
            {"path": "data/validation/dogs/dog.3.jpg", "split": "validation"}
        ], "classes": ["cats", "dogs"]}"#;
        assert_eq!(
            parse("audit.json", audit).unwrap(),
            [
                "data/train/cats/cat.12.jpg",
                "data/validation/dogs/dog.3.jpg"
            ]
        );
        assert_eq!(
            parse("list", r#"["a.jpg", "cats/b.jpg"]"#).unwrap(),
            ["a.jpg", "cats/b.jpg"]
        );
        assert!(parse("x.json", r#"{"flagged": []}"#).unwrap().is_empty());
    }

    #[test]
    fn exclude_json_errors_name_the_problem() {
        let err = parse("a.json", "{\n  \"flagged\": [\n    {\"path\": }\n]}").unwrap_err();
        assert!(err.contains("a.json") && err.contains("line 3"), "{err}");
        let err = parse("a.json", r#"{"photos": []}"#).unwrap_err();
        assert!(err.contains("without a `flagged` array"), "{err}");
        let err = parse("a.json", r#"{"flagged": {}}"#).unwrap_err();
        assert!(err.contains("not an array"), "{err}");
        let err = parse("a.json", r#"{"flagged": [{"file": "x.jpg"}]}"#).unwrap_err();
        assert!(err.contains("`flagged[0]` has no `path`"), "{err}");
        let err = parse("a.json", r#"{"flagged": [{"path": 3}]}"#).unwrap_err();
        assert!(err.contains("`flagged[0].path` is a number"), "{err}");
        let err = parse("a.json", r#"["x.jpg", 2]"#).unwrap_err();
        assert!(err.contains("element 1"), "{err}");
        let err = parse("a.json", "42").unwrap_err();
        assert!(err.contains("JSON a number"), "{err}");
        let err = parse("a.json", "").unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn exclude_entry_parts() {
        assert_eq!(
            entry_parts("data/train/cats/cat.1.jpg"),
            (Some("cats"), "cat.1.jpg")
        );
        assert_eq!(entry_parts("cat.1.jpg"), (None, "cat.1.jpg"));
        assert_eq!(entry_parts("./cat.1.jpg"), (None, "cat.1.jpg"));
        assert_eq!(entry_parts(r"cats\cat.1.jpg"), (Some("cats"), "cat.1.jpg"));
    }

    #[test]
    fn exclude_digest_is_empty_for_no_exclusions() {
        assert_eq!(digest(&[]), "");
        let a = digest(&["cats/cat.1.jpg".into()]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, digest(&["cats/cat.2.jpg".into()]));
    }
}
