//! Class folders as Keras' `flow_from_directory` reads them: one subfolder per class, classes
//! in sorted order, image files (by extension) in sorted order within each class, subfolders of
//! a class folder included.

use std::path::{Path, PathBuf};

use crate::decode::has_image_extension;
use crate::error::DataError;

/// The images of a folder with one subfolder per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFolder {
    /// The folder that was scanned.
    pub root: PathBuf,
    /// Class names (subfolder names), sorted; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Image files, grouped by class in class order, sorted by path within a class.
    pub files: Vec<PathBuf>,
    /// The class index of each file.
    pub labels: Vec<u32>,
}

impl ImageFolder {
    /// Scans `root`: every subfolder is a class (hidden ones, starting with `.`, are ignored).
    ///
    /// Errors: `root` missing or not a folder, no class subfolders, or a class without images.
    pub fn scan(root: &Path) -> Result<Self, DataError> {
        let classes = list_class_dirs(root)?;
        Self::scan_classes(root, &classes)
    }

    /// Scans `root` for the given classes only, in the given order (Keras' `classes=`
    /// argument); use it to give validation data the training data's labels.
    pub fn scan_classes(root: &Path, classes: &[String]) -> Result<Self, DataError> {
        check_dir(root)?;
        if classes.is_empty() {
            return Err(DataError::Dataset {
                path: root.to_path_buf(),
                detail: "no classes: expected one subfolder per class".to_string(),
            });
        }
        let mut files = Vec::new();
        let mut labels = Vec::new();
        for (label, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            check_dir(&dir)?;
            let mut class_files = Vec::new();
            collect_images(&dir, &mut class_files)?;
            if class_files.is_empty() {
                return Err(DataError::Dataset {
                    path: dir,
                    detail: format!(
                        "class '{class}' has no images (looked for {} files)",
                        crate::decode::IMAGE_EXTENSIONS.join(", ")
                    ),
                });
            }
            class_files.sort();
            labels.extend(std::iter::repeat_n(label as u32, class_files.len()));
            files.extend(class_files);
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes: classes.to_vec(),
            files,
            labels,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are no images (never true for a scanned folder).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Number of images per class, in class order.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}

fn check_dir(path: &Path) -> Result<(), DataError> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !meta.is_dir() {
        return Err(DataError::Dataset {
            path: path.to_path_buf(),
            detail: "not a folder".to_string(),
        });
    }
    Ok(())
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// The sorted names of the non-hidden subfolders of `root`.
pub fn list_class_dirs(root: &Path) -> Result<Vec<String>, DataError> {
    check_dir(root)?;
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| DataError::io(root, e))? {
        let entry = entry.map_err(|e| DataError::io(root, e))?;
        let path = entry.path();
        if is_hidden(&entry.file_name()) || !path.is_dir() {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| DataError::Dataset {
                path: root.join(&n),
                detail: "class folder name is not valid UTF-8".to_string(),
            })?;
        classes.push(name);
    }
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::Dataset {
            path: root.to_path_buf(),
            detail: "no class subfolders (expected one subfolder per class, e.g. cats/ and dogs/)"
                .to_string(),
        });
    }
    Ok(classes)
}

/// Appends every image file under `dir` (recursively, skipping hidden entries) to `out`.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        // `metadata` follows symbolic links, so linked files and folders count.
        let meta = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
        if meta.is_dir() {
            collect_images(&path, out)?;
        } else if meta.is_file() && has_image_extension(&path) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn scans_sorted_classes_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        for f in [
            "dogs/b.jpg",
            "dogs/a.PNG",
            "cats/z.jpeg",
            "cats/sub/y.jpg",
            "cats/notes.txt",
            "cats/.hidden.jpg",
            "birds/x.png",
        ] {
            touch(&r.join(f));
        }
        std::fs::create_dir_all(r.join(".cache")).unwrap();
        touch(&r.join("README.jpg"));
        let f = ImageFolder::scan(r).unwrap();
        assert_eq!(f.classes, vec!["birds", "cats", "dogs"]);
        let rel: Vec<String> = f
            .files
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            rel,
            vec![
                "birds/x.png",
                "cats/sub/y.jpg",
                "cats/z.jpeg",
                "dogs/a.PNG",
                "dogs/b.jpg"
            ]
        );
        assert_eq!(f.labels, vec![0, 1, 1, 2, 2]);
        assert_eq!(f.class_counts(), vec![1, 2, 2]);
        let only = ImageFolder::scan_classes(r, &["dogs".into(), "cats".into()]).unwrap();
        assert_eq!(only.labels, vec![0, 0, 1, 1]);
    }

    #[test]
    fn bad_folders_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let missing = r.join("nope");
        let err = ImageFolder::scan(&missing).unwrap_err();
        assert!(matches!(err, DataError::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("nope"));

        let err = ImageFolder::scan(r).unwrap_err().to_string();
        assert!(err.contains("no class subfolders"), "{err}");

        touch(&r.join("cats/a.jpg"));
        std::fs::create_dir_all(r.join("dogs")).unwrap();
        touch(&r.join("dogs/readme.txt"));
        let err = ImageFolder::scan(r).unwrap_err();
        assert!(
            err.to_string().contains("class 'dogs' has no images"),
            "{err}"
        );
        assert_eq!(err.path().unwrap(), r.join("dogs"));

        let file = r.join("cats/a.jpg");
        let err = ImageFolder::scan(&file).unwrap_err().to_string();
        assert!(err.contains("not a folder"), "{err}");
    }
}
