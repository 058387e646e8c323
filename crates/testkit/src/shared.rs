//! The shared data folder (`LITTLEDATA_SHARED`) and what the tests read from it.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// The shared data folder named by `LITTLEDATA_SHARED` (holding `data/`, `models/` and
/// `reference/`), for the test named `test`.
///
/// When the variable is unset or empty this panics if `CI` is set, so CI never skips a test
/// that needs the folder, and otherwise prints a note and returns `None` so the test can
/// return early.
#[track_caller]
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LITTLEDATA_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: LITTLEDATA_SHARED is not set; it must name the shared folder \
                     (with data/, models/ and reference/) when CI is set"
                );
            }
            eprintln!(
                "note: {test} skipped: set LITTLEDATA_SHARED to the shared data folder to run it"
            );
            None
        }
    }
}

/// The ImageNet VGG16 conv base in the shared folder,
/// `models/vgg16_imagenet_features.safetensors`.
pub fn shared_weights(shared: &Path) -> PathBuf {
    shared.join("models/vgg16_imagenet_features.safetensors")
}

/// The VGG16 weights a test uses: `LITTLEDATA_VGG16_WEIGHTS` when it is set, else the shared
/// folder's copy ([`shared_weights`]).
pub fn vgg16_weights(shared: &Path) -> PathBuf {
    match std::env::var_os("LITTLEDATA_VGG16_WEIGHTS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => shared_weights(shared),
    }
}

/// torchvision's VGG16 outputs on reference photos, `reference/vgg16_features.safetensors`.
pub fn reference_features(shared: &Path) -> PathBuf {
    shared.join("reference/vgg16_features.safetensors")
}

/// The Kaggle dogs-vs-cats training photos (`cat.N.jpg`, `dog.N.jpg`) in the shared folder,
/// `data/dogs-vs-cats/train`.
///
/// # Panics
/// When the folder does not exist: a shared folder without the photos is misconfigured.
#[track_caller]
pub fn kaggle_photos(shared: &Path) -> PathBuf {
    let dir = shared.join("data/dogs-vs-cats/train");
    assert!(
        dir.is_dir(),
        "{} does not exist: LITTLEDATA_SHARED must hold data/dogs-vs-cats/train",
        dir.display()
    );
    dir
}

/// Symlinks the Kaggle photos `<animal>.<i>.jpg`, `i` in `ids`, into `<dst>/<class>/`.
///
/// # Panics
/// When a photo is missing from the shared folder, or a link cannot be made.
#[track_caller]
pub fn link_photos(shared: &Path, dst: &Path, class: &str, animal: &str, ids: Range<usize>) {
    let src = kaggle_photos(shared);
    let dir = dst.join(class);
    std::fs::create_dir_all(&dir).unwrap();
    for i in ids {
        let name = format!("{animal}.{i}.jpg");
        let from = src.join(&name);
        assert!(
            from.exists(),
            "{} is missing from the shared data",
            from.display()
        );
        std::os::unix::fs::symlink(&from, dir.join(&name)).unwrap();
    }
}

/// A cats-vs-dogs data folder of real photos: `<data>/train/{cats,dogs}` holds the photos
/// `train` of each animal, `<data>/validation/{cats,dogs}` the photos `validation`.
pub fn link_cats_and_dogs(
    shared: &Path,
    data: &Path,
    train: Range<usize>,
    validation: Range<usize>,
) {
    for (class, animal) in [("cats", "cat"), ("dogs", "dog")] {
        link_photos(shared, &data.join("train"), class, animal, train.clone());
        link_photos(
            shared,
            &data.join("validation"),
            class,
            animal,
            validation.clone(),
        );
    }
}
