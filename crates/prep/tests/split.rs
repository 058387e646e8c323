//! `run_split` on synthetic sources: counts, ordering, shuffling, idempotence, replacement,
//! multi-class folders, bad files and bad sources.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use prep::manifest::Manifest;
use prep::{MANIFEST_FILE, Order, Outcome, SplitError, SplitOptions, Subset, run_split};

fn options(
    source: &Path,
    out: &Path,
    train: usize,
    validation: usize,
    test: usize,
) -> SplitOptions {
    SplitOptions {
        out: out.to_path_buf(),
        train,
        validation,
        test,
        ..SplitOptions::new(source)
    }
}

fn manifest(out: &Path) -> Manifest {
    Manifest::read(&out.join(MANIFEST_FILE)).expect("readable manifest")
}

fn listed(m: &Manifest, subset: Subset, class: &str) -> Vec<String> {
    m.files(subset, class)
        .iter()
        .map(|f| f.name.clone())
        .collect()
}

#[test]
fn counts_per_split_and_class() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..12);

    let report = run_split(&options(&src, &out, 5, 3, 2)).unwrap();
    assert_eq!(report.outcome, Outcome::Created);
    for class in ["cats", "dogs"] {
        assert_eq!(names(&out.join("train").join(class)).len(), 5);
        assert_eq!(names(&out.join("validation").join(class)).len(), 3);
        assert_eq!(names(&out.join("test").join(class)).len(), 2);
        assert_eq!(report.count(Subset::Train, class), 5);
        assert_eq!(report.count(Subset::Validation, class), 3);
        assert_eq!(report.count(Subset::Test, class), 2);
    }
    assert_eq!(names(&out.join("train")), ["cats", "dogs"]);
    assert_eq!(report.manifest.classes, ["cats", "dogs"]);
    assert!(report.manifest.rejected.is_empty());

    let table = report.table();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["split", "cats", "dogs", "total"]);
    assert_eq!(lines[1], ["train", "5", "5", "10"]);
    assert_eq!(lines[2], ["validation", "3", "3", "6"]);
    assert_eq!(lines[3], ["test", "2", "2", "4"]);
    assert_eq!(lines[4], ["total", "10", "10", "20"]);

    // The manifest on disk is what the report says.
    assert_eq!(manifest(&out), report.manifest);
}

#[test]
fn no_test_folder_when_test_is_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..6);
    let report = run_split(&options(&src, &out, 4, 2, 0)).unwrap();
    assert!(!out.join("test").exists());
    assert_eq!(
        report.manifest.subsets(),
        [Subset::Train, Subset::Validation]
    );
    assert!(!report.table().contains("test"));
}

#[test]
fn files_are_taken_in_numeric_order_of_their_index() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    // Name order would be 1, 10, 11, 2, 20, 3.
    flat_source(&src, &["cat"], [1, 2, 3, 10, 11, 20].into_iter());

    run_split(&options(&src, &out, 2, 2, 2)).unwrap();
    let m = manifest(&out);
    assert_eq!(
        listed(&m, Subset::Train, "cats"),
        ["cat.1.jpg", "cat.2.jpg"]
    );
    assert_eq!(
        listed(&m, Subset::Validation, "cats"),
        ["cat.3.jpg", "cat.10.jpg"]
    );
    assert_eq!(
        listed(&m, Subset::Test, "cats"),
        ["cat.11.jpg", "cat.20.jpg"]
    );
    assert_eq!(names(&out.join("train/cats")), ["cat.1.jpg", "cat.2.jpg"]);
}

#[test]
fn shuffle_is_deterministic_by_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    flat_source(&src, &["cat", "dog"], 0..40);
    let run = |name: &str, order: Order| {
        let out = tmp.path().join(name);
        let opts = SplitOptions {
            order,
            ..options(&src, &out, 10, 5, 0)
        };
        run_split(&opts).unwrap();
        let m = manifest(&out);
        (
            listed(&m, Subset::Train, "cats"),
            listed(&m, Subset::Validation, "dogs"),
        )
    };
    let a = run("a", Order::Shuffled { seed: 7 });
    let b = run("b", Order::Shuffled { seed: 7 });
    let c = run("c", Order::Shuffled { seed: 8 });
    let numeric = run("n", Order::Numeric);
    assert_eq!(a, b, "same seed, same split");
    assert_ne!(a, c, "another seed, another split");
    assert_ne!(a, numeric, "a shuffle is not the numeric order");
    assert_eq!(numeric.0, expected_in_order("cat", 0..10));
    // A shuffled split still has distinct files, all from the source.
    let mut train = a.0.clone();
    train.sort();
    train.dedup();
    assert_eq!(train.len(), 10);
    assert!(train.iter().all(|n| src.join(n).is_file()));
}

fn expected_in_order(label: &str, indices: std::ops::Range<u32>) -> Vec<String> {
    indices.map(|i| format!("{label}.{i}.jpg")).collect()
}

#[test]
fn rerun_with_the_same_arguments_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..8);
    let opts = options(&src, &out, 4, 2, 0);
    let first = run_split(&opts).unwrap();
    let manifest_before = fs::read(out.join(MANIFEST_FILE)).unwrap();
    let modified_before = fs::metadata(out.join(MANIFEST_FILE))
        .unwrap()
        .modified()
        .unwrap();

    let again = run_split(&opts).unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    assert_eq!(again.manifest, first.manifest);
    assert_eq!(again.links.hard_links + again.links.copies, 0);
    assert_eq!(fs::read(out.join(MANIFEST_FILE)).unwrap(), manifest_before);
    assert_eq!(
        fs::metadata(out.join(MANIFEST_FILE))
            .unwrap()
            .modified()
            .unwrap(),
        modified_before
    );
    assert!(again.to_string().contains("up to date"));
}

#[test]
fn a_different_split_is_refused_without_force_and_replaced_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..10);
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("README.md"), "kept").unwrap();
    run_split(&options(&src, &out, 4, 2, 2)).unwrap();
    let before = fs::read(out.join(MANIFEST_FILE)).unwrap();

    let err = run_split(&options(&src, &out, 5, 2, 0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SplitError::ExistingSplit { .. }), "{msg}");
    assert!(msg.contains("--force"), "{msg}");
    assert!(msg.contains("--train 4 --validation 2 --test 2"), "{msg}");
    assert_eq!(
        fs::read(out.join(MANIFEST_FILE)).unwrap(),
        before,
        "nothing touched"
    );
    assert_eq!(names(&out.join("test/cats")).len(), 2);

    let shuffled = SplitOptions {
        order: Order::Shuffled { seed: 1 },
        ..options(&src, &out, 4, 2, 2)
    };
    let err = run_split(&shuffled).unwrap_err().to_string();
    assert!(err.contains("--shuffle --seed 1"), "{err}");

    let forced = SplitOptions {
        force: true,
        ..options(&src, &out, 5, 2, 0)
    };
    let report = run_split(&forced).unwrap();
    assert_eq!(report.outcome, Outcome::Replaced);
    assert_eq!(names(&out.join("train/cats")), expected("cat", 0..5));
    assert_eq!(names(&out.join("validation/dogs")), expected("dog", 5..7));
    assert!(!out.join("test").exists(), "the old test split is gone");
    assert_eq!(fs::read_to_string(out.join("README.md")).unwrap(), "kept");
    assert_eq!(
        names(&out),
        ["README.md", "split.json", "train", "validation"]
    );
    assert_eq!(manifest(&out).params.train, 5);
}

#[test]
fn a_changed_source_or_a_damaged_output_is_not_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..6);
    let opts = options(&src, &out, 3, 2, 0);
    run_split(&opts).unwrap();

    // A file of the split deleted.
    fs::remove_file(out.join("train/cats/cat.1.jpg")).unwrap();
    let err = run_split(&opts).unwrap_err().to_string();
    assert!(err.contains("cat.1.jpg is missing"), "{err}");
    let report = run_split(&SplitOptions {
        force: true,
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(report.outcome, Outcome::Replaced);
    assert!(out.join("train/cats/cat.1.jpg").is_file());
    assert_eq!(run_split(&opts).unwrap().outcome, Outcome::UpToDate);

    // An extra file in the split.
    write_jpeg(&out.join("validation/dogs/dog.99.jpg"), 3);
    let err = run_split(&opts).unwrap_err().to_string();
    assert!(err.contains("dog.99.jpg is not part of the split"), "{err}");
    run_split(&SplitOptions {
        force: true,
        ..opts.clone()
    })
    .unwrap();
    assert!(!out.join("validation/dogs/dog.99.jpg").exists());

    // The source gained a file.
    write_jpeg(&src.join("cat.100.jpg"), 5);
    let err = run_split(&opts).unwrap_err().to_string();
    assert!(err.contains("changed since it was made"), "{err}");
}

#[test]
fn an_output_without_manifest_is_refused_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..5);
    write_jpeg(&out.join("train/cats/mine.jpg"), 1);

    let err = run_split(&options(&src, &out, 3, 2, 0)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SplitError::ExistingSplit { .. }), "{msg}");
    assert!(msg.contains("no split.json"), "{msg}");
    assert!(out.join("train/cats/mine.jpg").exists());

    // A corrupt manifest is refused as well.
    fs::write(out.join(MANIFEST_FILE), "{ not json").unwrap();
    let msg = run_split(&options(&src, &out, 3, 2, 0))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a valid split manifest"), "{msg}");

    let report = run_split(&SplitOptions {
        force: true,
        ..options(&src, &out, 3, 2, 0)
    })
    .unwrap();
    assert_eq!(report.outcome, Outcome::Replaced);
    assert_eq!(names(&out.join("train/cats")), expected("cat", 0..3));
}

#[test]
fn leftovers_of_an_interrupted_run_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..3);
    write_jpeg(&out.join(".split-new-abc123/train/cats/cat.0.jpg"), 1);
    fs::create_dir_all(out.join(".split-old-xyz")).unwrap();

    run_split(&options(&src, &out, 2, 1, 0)).unwrap();
    assert_eq!(names(&out), ["split.json", "train", "validation"]);
    let hidden: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".split-"))
        .collect();
    assert!(hidden.is_empty(), "stale staging folders removed");
}

#[test]
fn multi_class_subfolder_source() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    for (c, class) in ["birds", "cats", "dogs"].iter().enumerate() {
        for i in 0..6u32 {
            write_png(
                &src.join(class).join(format!("img_{i}.png")),
                i + 10 * c as u32,
            );
        }
    }
    // Numbered files come before unnumbered ones, which go by name.
    write_jpeg(&src.join("birds/0007.jpg"), 70);
    write_jpeg(&src.join(".hidden/ignored.jpg"), 71);

    let report = run_split(&options(&src, &out, 3, 2, 1)).unwrap();
    assert_eq!(report.manifest.classes, ["birds", "cats", "dogs"]);
    assert_eq!(report.manifest.params.layout, prep::Layout::ClassFolders);
    for class in ["birds", "cats", "dogs"] {
        for (subset, n) in [("train", 3), ("validation", 2), ("test", 1)] {
            assert_eq!(
                names(&out.join(subset).join(class)).len(),
                n,
                "{subset}/{class}"
            );
        }
    }
    assert_eq!(
        listed(&report.manifest, Subset::Train, "birds"),
        ["0007.jpg", "img_0.png", "img_1.png"]
    );
    let table = report.table();
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["split", "birds", "cats", "dogs", "total"]);
    assert_eq!(lines[4], ["total", "6", "6", "6", "18"]);
}

#[test]
fn flat_labels_become_plural_class_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("out");
    flat_source(&src, &["fox", "puppy", "horses"], 0..2);
    let report = run_split(&options(&src, &out, 1, 1, 0)).unwrap();
    assert_eq!(report.manifest.classes, ["foxes", "horses", "puppies"]);
    assert_eq!(names(&out.join("train/puppies")), ["puppy.0.jpg"]);
}

#[test]
fn undecodable_files_are_listed_and_replaced_by_the_next_good_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..10);
    fs::write(src.join("cat.1.jpg"), b"").unwrap();
    write_truncated_jpeg(&src.join("cat.3.jpg"));
    fs::write(src.join("dog.2.jpg"), "this is not an image").unwrap();
    write_huge_png_header(&src.join("dog.4.jpg"), 30_000, 30_000);
    // Colour variants that must decode: alpha, grayscale.
    write_rgba_png(&src.join("cat.0.jpg"), 1);
    write_gray_jpeg(&src.join("dog.0.jpg"), 2);
    // A file without a class label in a flat folder.
    fs::write(src.join("README.md"), "notes").unwrap();

    let report = run_split(&options(&src, &out, 4, 2, 0)).unwrap();
    let m = &report.manifest;
    assert_eq!(
        listed(m, Subset::Train, "cats"),
        ["cat.0.jpg", "cat.2.jpg", "cat.4.jpg", "cat.5.jpg"]
    );
    assert_eq!(
        listed(m, Subset::Validation, "cats"),
        ["cat.6.jpg", "cat.7.jpg"]
    );
    assert_eq!(
        listed(m, Subset::Train, "dogs"),
        ["dog.0.jpg", "dog.1.jpg", "dog.3.jpg", "dog.5.jpg"]
    );
    assert_eq!(
        listed(m, Subset::Validation, "dogs"),
        ["dog.6.jpg", "dog.7.jpg"]
    );
    assert!(!out.join("train/cats/cat.1.jpg").exists());

    let rejected: Vec<(String, String)> = m
        .rejected
        .iter()
        .map(|r| {
            (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason.clone(),
            )
        })
        .collect();
    let names: Vec<&str> = rejected.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "README.md",
            "cat.1.jpg",
            "cat.3.jpg",
            "dog.2.jpg",
            "dog.4.jpg"
        ]
    );
    let reason = |name: &str| &rejected.iter().find(|(n, _)| n == name).unwrap().1;
    assert!(
        reason("cat.1.jpg").contains("empty"),
        "{}",
        reason("cat.1.jpg")
    );
    assert!(
        reason("cat.3.jpg").contains("truncated"),
        "{}",
        reason("cat.3.jpg")
    );
    assert!(
        reason("dog.4.jpg").contains("30000"),
        "{}",
        reason("dog.4.jpg")
    );
    assert!(reason("README.md").contains("<label>.<index>.<ext>"));

    // The printed report lists every left-out file with its path.
    let text = report.to_string();
    assert!(text.contains("left out 5 file(s)"), "{text}");
    assert!(
        text.contains(
            &src.canonicalize()
                .unwrap()
                .join("dog.2.jpg")
                .display()
                .to_string()
        )
    );
}

#[test]
fn strict_makes_unusable_files_an_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..6);
    fs::write(src.join("dog.1.jpg"), b"").unwrap();
    let strict = SplitOptions {
        strict: true,
        ..options(&src, &out, 3, 2, 0)
    };
    let err = run_split(&strict).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, SplitError::Strict { files } if files.len() == 1),
        "{msg}"
    );
    assert!(msg.contains("dog.1.jpg"), "{msg}");
    assert!(!out.exists(), "nothing written");

    // Without --strict it goes through; a strict rerun of that split is still an error.
    run_split(&SplitOptions {
        strict: false,
        ..strict.clone()
    })
    .unwrap();
    assert!(matches!(run_split(&strict), Err(SplitError::Strict { .. })));
}

#[test]
fn a_class_with_too_few_images_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..10);
    flat_source(&src, &["dog"], 0..5);
    let err = run_split(&options(&src, &out, 4, 2, 0)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, SplitError::TooFewImages { class, needed: 6, available: 5, .. } if class == "dogs"),
        "{msg}"
    );
    assert!(
        msg.contains("`dogs`") && msg.contains("--train 4 --validation 2 --test 0"),
        "{msg}"
    );
    assert!(!out.exists(), "nothing written");

    // Enough files, but one is undecodable.
    write_jpeg(&src.join("dog.5.jpg"), 1);
    fs::write(src.join("dog.2.jpg"), b"junk").unwrap();
    let err = run_split(&options(&src, &out, 4, 2, 0)).unwrap_err();
    assert!(
        matches!(
            &err,
            SplitError::TooFewImages {
                available: 5,
                undecodable: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("1 more could not be decoded"));
    assert!(!out.exists());
}

#[test]
fn a_class_folder_without_images_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_png(&src.join("cats/a.png"), 1);
    fs::create_dir_all(src.join("dogs")).unwrap();
    let err = run_split(&options(&src, &tmp.path().join("out"), 1, 0, 0)).unwrap_err();
    assert!(
        matches!(&err, SplitError::TooFewImages { class, available: 0, .. } if class == "dogs"),
        "{err}"
    );
}

#[test]
fn bad_sources_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");

    let missing = tmp.path().join("nope");
    let err = run_split(&options(&missing, &out, 1, 1, 0)).unwrap_err();
    assert!(matches!(err, SplitError::SourceMissing { .. }));
    assert!(err.to_string().contains("nope"), "{err}");

    let empty = tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join(".DS_Store"), "").unwrap();
    let err = run_split(&options(&empty, &out, 1, 1, 0)).unwrap_err();
    assert!(matches!(err, SplitError::SourceEmpty { .. }), "{err}");

    let file = tmp.path().join("file.jpg");
    write_jpeg(&file, 1);
    let err = run_split(&options(&file, &out, 1, 1, 0)).unwrap_err();
    assert!(
        matches!(err, SplitError::SourceNotADirectory { .. }),
        "{err}"
    );

    let mixed = tmp.path().join("mixed");
    write_jpeg(&mixed.join("cat.0.jpg"), 1);
    write_jpeg(&mixed.join("dogs/dog.0.jpg"), 1);
    let err = run_split(&options(&mixed, &out, 1, 0, 0)).unwrap_err();
    assert!(matches!(err, SplitError::MixedLayout { .. }), "{err}");
    assert!(err.to_string().contains("cat.0.jpg") && err.to_string().contains("dogs"));

    let unlabelled = tmp.path().join("unlabelled");
    write_jpeg(&unlabelled.join("photo.jpg"), 1);
    let err = run_split(&options(&unlabelled, &out, 1, 0, 0)).unwrap_err();
    assert!(matches!(err, SplitError::NoLabelledFiles { .. }), "{err}");
    assert!(err.to_string().contains("photo.jpg"));

    let src = tmp.path().join("src");
    flat_source(&src, &["cat"], 0..2);
    let err = run_split(&options(&src, &out, 0, 0, 0)).unwrap_err();
    assert!(matches!(err, SplitError::NothingRequested));
    let err = run_split(&options(&src, &src.join("data"), 1, 0, 0)).unwrap_err();
    assert!(
        matches!(err, SplitError::OutputInsideSource { .. }),
        "{err}"
    );
    assert!(!out.exists(), "nothing written by any failed split");
}

#[test]
fn a_source_inside_the_split_folders_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let src = out.join("train");
    flat_source(&src, &["cat"], 0..3);
    let err = run_split(&options(&src, &out, 1, 1, 0)).unwrap_err();
    assert!(
        matches!(err, SplitError::SourceInsideOutput { .. }),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn files_are_hard_links_to_the_source_on_one_file_system() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..3);
    let report = run_split(&options(&src, &out, 2, 1, 0)).unwrap();
    assert_eq!(report.links.hard_links, 6);
    assert_eq!(report.links.copies, 0);
    assert_eq!(
        report.manifest.link_mode,
        prep::manifest::LinkMode::HardLink
    );
    let a = fs::metadata(src.join("cat.1.jpg")).unwrap();
    let b = fs::metadata(out.join("train/cats/cat.1.jpg")).unwrap();
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    assert!(report.to_string().contains("6 hard links"));
}
