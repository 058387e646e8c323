//! `run_split` with `exclude` files: excluded photos are replaced by the next ones in order,
//! the manifest records the exclusions (same list: up to date; another list: a different
//! split), the accepted file forms, unmatched entries and bad files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use prep::manifest::Manifest;
use prep::{MANIFEST_FILE, Order, Outcome, SplitError, SplitOptions, Subset, run_split};

fn options(source: &Path, out: &Path, train: usize, validation: usize) -> SplitOptions {
    SplitOptions {
        out: out.to_path_buf(),
        train,
        validation,
        test: 0,
        ..SplitOptions::new(source)
    }
}

fn excluding(opts: &SplitOptions, files: &[&Path]) -> SplitOptions {
    SplitOptions {
        exclude: files.iter().map(|f| f.to_path_buf()).collect(),
        ..opts.clone()
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

fn write(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn excluded_photos_are_absent_and_the_next_ones_take_their_places() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..10);
    let list = write(
        &tmp.path().join("bad.txt"),
        "# confirmed bad photos\n\ncat.1.jpg\ndata/train/dogs/dog.0.jpg   # blurry\n\
         data/validation/cats/cat.4.jpg\n",
    );

    let report = run_split(&excluding(&options(&src, &out, 3, 2), &[&list])).unwrap();
    assert_eq!(report.outcome, Outcome::Created);
    assert!(report.unmatched.is_empty(), "{:?}", report.unmatched);
    let m = manifest(&out);
    assert_eq!(m, report.manifest);
    assert_eq!(
        listed(&m, Subset::Train, "cats"),
        ["cat.0.jpg", "cat.2.jpg", "cat.3.jpg"]
    );
    assert_eq!(
        listed(&m, Subset::Validation, "cats"),
        ["cat.5.jpg", "cat.6.jpg"]
    );
    assert_eq!(
        listed(&m, Subset::Train, "dogs"),
        ["dog.1.jpg", "dog.2.jpg", "dog.3.jpg"]
    );
    assert_eq!(
        listed(&m, Subset::Validation, "dogs"),
        ["dog.4.jpg", "dog.5.jpg"]
    );
    assert_eq!(
        names(&out.join("train/cats")),
        ["cat.0.jpg", "cat.2.jpg", "cat.3.jpg"]
    );
    assert!(!out.join("validation/cats/cat.4.jpg").exists());
    assert!(!out.join("train/dogs/dog.0.jpg").exists());

    // The manifest records what was excluded, and by which file.
    assert_eq!(
        m.params.exclude,
        ["cats/cat.1.jpg", "cats/cat.4.jpg", "dogs/dog.0.jpg"]
    );
    assert_eq!(m.params.exclude_digest.len(), 64);
    assert!(m.rejected.is_empty(), "exclusions are not unusable files");
    let excluded: Vec<(String, String)> = m
        .excluded
        .iter()
        .map(|r| {
            (
                r.path.file_name().unwrap().to_string_lossy().into_owned(),
                r.reason.clone(),
            )
        })
        .collect();
    let reason = format!("excluded by {}", list.display());
    assert_eq!(
        excluded,
        [
            ("cat.1.jpg".to_string(), reason.clone()),
            ("cat.4.jpg".to_string(), reason.clone()),
            ("dog.0.jpg".to_string(), reason.clone()),
        ]
    );
    let text = report.to_string();
    assert!(text.contains("excluded 3 file(s)"), "{text}");
    assert!(text.contains(&reason), "{text}");
}

#[test]
fn the_same_list_is_up_to_date_and_another_is_a_different_split() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..10);
    let list = write(&tmp.path().join("bad.txt"), "cat.1.jpg\ndog.0.jpg\n");
    let opts = excluding(&options(&src, &out, 3, 2), &[&list]);
    run_split(&opts).unwrap();
    let before = fs::read(out.join(MANIFEST_FILE)).unwrap();

    let again = run_split(&opts).unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    assert!(again.to_string().contains("up to date"));

    // Other entries naming the same photos are the same split.
    let same = write(
        &tmp.path().join("same.txt"),
        "data/train/dogs/dog.0.jpg\ncats/cat.1.jpg\n",
    );
    let again = run_split(&excluding(&opts, &[&same])).unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);

    // A changed list is refused without --force, naming what changed, and nothing is touched.
    write(&list, "cat.1.jpg\ncat.5.jpg\n");
    let err = run_split(&opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SplitError::ExistingSplit { .. }), "{msg}");
    assert!(msg.contains("--force"), "{msg}");
    assert!(
        msg.contains("now also excluding cats/cat.5.jpg")
            && msg.contains("no longer excluding dogs/dog.0.jpg"),
        "{msg}"
    );
    assert_eq!(fs::read(out.join(MANIFEST_FILE)).unwrap(), before);

    let report = run_split(&SplitOptions {
        force: true,
        ..opts.clone()
    })
    .unwrap();
    assert_eq!(report.outcome, Outcome::Replaced);
    assert_eq!(
        names(&out.join("train/cats")),
        ["cat.0.jpg", "cat.2.jpg", "cat.3.jpg"]
    );
    assert_eq!(
        names(&out.join("validation/cats")),
        ["cat.4.jpg", "cat.6.jpg"]
    );
    assert_eq!(
        names(&out.join("train/dogs")),
        ["dog.0.jpg", "dog.1.jpg", "dog.2.jpg"]
    );

    // Without the list it is a different split too.
    let msg = run_split(&options(&src, &out, 3, 2))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("with 2 photo(s) excluded, not with no photo excluded"),
        "{msg}"
    );
}

#[test]
fn manifests_from_before_exclude_still_read_and_match() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..4);
    let opts = options(&src, &out, 2, 1);
    run_split(&opts).unwrap();
    let path = out.join(MANIFEST_FILE);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let params = json["params"].as_object_mut().unwrap();
    assert!(params.remove("exclude").is_some());
    assert!(params.remove("exclude_digest").is_some());
    assert!(json.as_object_mut().unwrap().remove("excluded").is_some());
    fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

    let m = manifest(&out);
    assert!(m.params.exclude.is_empty() && m.excluded.is_empty());
    assert_eq!(run_split(&opts).unwrap().outcome, Outcome::UpToDate);
    // An empty list excludes nothing: still the same split.
    let empty = write(&tmp.path().join("none.txt"), "# nothing\n");
    assert_eq!(
        run_split(&excluding(&opts, &[&empty])).unwrap().outcome,
        Outcome::UpToDate
    );
}

#[test]
fn an_audit_report_excludes_its_flagged_photos_by_class_and_name() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    for (c, class) in ["cats", "dogs"].iter().enumerate() {
        for i in 0..6u32 {
            write_png(
                &src.join(class).join(format!("img_{i}.png")),
                i + 10 * c as u32,
            );
        }
    }
    // The shape `audit` writes; everything but `path` is ignored.
    let audit = write(
        &tmp.path().join("audit.json"),
        r#"{
  "format": 1,
  "backbone": "vgg16",
  "classes": ["cats", "dogs"],
  "flagged": [
    {"path": "data/train/cats/img_1.png", "split": "train", "file": "cats/img_1.png",
     "given": "cats", "kind": "label_issue", "score": 0.97, "suggested": "dogs"},
    {"path": "data/validation/dogs/img_3.png", "split": "validation", "file": "dogs/img_3.png",
     "given": "dogs", "kind": "duplicate", "score": 0.99,
     "twin": {"path": "data/train/dogs/img_0.png", "split": "train", "file": "dogs/img_0.png",
              "given": "dogs"}, "exact": true}
  ],
  "label_issues": {"folds": 5}
}
"#,
    );
    let report = run_split(&excluding(&options(&src, &out, 2, 2), &[&audit])).unwrap();
    let m = &report.manifest;
    // Only the named class's file is excluded: dogs/img_1.png and cats/img_3.png stay.
    assert_eq!(m.params.exclude, ["cats/img_1.png", "dogs/img_3.png"]);
    assert_eq!(listed(m, Subset::Train, "cats"), ["img_0.png", "img_2.png"]);
    assert_eq!(
        listed(m, Subset::Validation, "cats"),
        ["img_3.png", "img_4.png"]
    );
    assert_eq!(listed(m, Subset::Train, "dogs"), ["img_0.png", "img_1.png"]);
    assert_eq!(
        listed(m, Subset::Validation, "dogs"),
        ["img_2.png", "img_4.png"]
    );

    // A bare name (or a parent that is no class) matches that name in every class.
    let bare = write(
        &tmp.path().join("bare.json"),
        r#"["img_0.png", "elsewhere/img_5.png"]"#,
    );
    let report = run_split(&SplitOptions {
        force: true,
        ..excluding(&options(&src, &out, 2, 2), &[&bare])
    })
    .unwrap();
    assert_eq!(
        report.manifest.params.exclude,
        [
            "cats/img_0.png",
            "cats/img_5.png",
            "dogs/img_0.png",
            "dogs/img_5.png"
        ]
    );
    for class in ["cats", "dogs"] {
        assert_eq!(
            names(&out.join("train").join(class)),
            ["img_1.png", "img_2.png"]
        );
        assert_eq!(
            names(&out.join("validation").join(class)),
            ["img_3.png", "img_4.png"]
        );
    }
}

#[test]
fn several_files_add_up() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..8);
    let a = write(&tmp.path().join("a.txt"), "cat.0.jpg\n");
    let b = write(&tmp.path().join("b.json"), r#"["cat.2.jpg", "cat.0.jpg"]"#);
    let report = run_split(&excluding(&options(&src, &out, 3, 1), &[&a, &b])).unwrap();
    assert_eq!(
        names(&out.join("train/cats")),
        ["cat.1.jpg", "cat.3.jpg", "cat.4.jpg"]
    );
    // Each excluded photo is listed once, with the first file that names it.
    let reasons: Vec<&str> = report
        .manifest
        .excluded
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            format!("excluded by {}", a.display()),
            format!("excluded by {}", b.display())
        ]
    );
}

#[test]
fn a_shuffled_split_keeps_its_order_around_an_exclusion() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    flat_source(&src, &["cat"], 0..30);
    let shuffled = |out: &str| SplitOptions {
        order: Order::Shuffled { seed: 3 },
        ..options(&src, &tmp.path().join(out), 5, 5)
    };
    let full = run_split(&shuffled("a")).unwrap().manifest;
    let mut order = listed(&full, Subset::Train, "cats");
    order.extend(listed(&full, Subset::Validation, "cats"));

    let dropped = order[1].clone();
    let list = write(&tmp.path().join("bad.txt"), &format!("{dropped}\n"));
    let without = run_split(&excluding(&shuffled("b"), &[&list]))
        .unwrap()
        .manifest;
    let mut expected: Vec<String> = order.iter().filter(|n| **n != dropped).cloned().collect();
    expected.truncate(9);
    let mut got = listed(&without, Subset::Train, "cats");
    got.extend(listed(&without, Subset::Validation, "cats"));
    assert_eq!(got[..9], expected[..], "the others keep their places");
    assert!(!got.contains(&dropped));
}

#[test]
fn unmatched_entries_are_warned_about_or_an_error_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..6);
    let list = write(
        &tmp.path().join("bad.txt"),
        "cat.1.jpg\nnope.0.jpg\ncats/missing.jpg\na.jpg\nb.jpg\nc.jpg\nd.jpg\ne.jpg\n",
    );
    let opts = excluding(&options(&src, &out, 2, 1), &[&list]);
    let report = run_split(&opts).unwrap();
    assert_eq!(report.unmatched.len(), 1);
    let unmatched = &report.unmatched[0];
    assert_eq!(unmatched.file, list);
    assert_eq!(unmatched.total, 8);
    assert_eq!(unmatched.entries.len(), 7);
    let warnings = report.warnings();
    assert_eq!(warnings.len(), 1);
    let w = &warnings[0];
    assert!(
        w.contains("7 of the 8 entries") && w.contains(&list.display().to_string()),
        "{w}"
    );
    assert!(
        w.contains("nope.0.jpg, cats/missing.jpg, a.jpg, b.jpg, c.jpg (and 2 more)"),
        "{w}"
    );
    assert_eq!(
        names(&out.join("train/cats")),
        ["cat.0.jpg", "cat.2.jpg"],
        "the matching entry still applies"
    );
    // The warning comes again with an up-to-date rerun.
    let again = run_split(&opts).unwrap();
    assert_eq!(again.outcome, Outcome::UpToDate);
    assert_eq!(again.warnings(), warnings);

    let strict_out = tmp.path().join("strict");
    let err = run_split(&SplitOptions {
        strict: true,
        out: strict_out.clone(),
        ..opts.clone()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SplitError::ExcludeUnmatched(_)), "{msg}");
    assert!(
        msg.contains("--strict") && msg.contains("nope.0.jpg"),
        "{msg}"
    );
    assert!(!strict_out.exists(), "nothing written");
}

#[test]
fn too_few_photos_left_after_exclusion_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..4);
    let list = write(&tmp.path().join("bad.txt"), "dog.1.jpg\ndog.2.jpg\n");
    let err = run_split(&excluding(&options(&src, &out, 2, 1), &[&list])).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, SplitError::TooFewImages { class, available: 2, excluded: 2, .. } if class == "dogs"),
        "{msg}"
    );
    assert!(msg.contains("2 more are excluded by --exclude"), "{msg}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn bad_exclude_files_are_clear_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..4);
    let opts = options(&src, &out, 2, 1);
    let fails = |file: &Path, expected: &[&str]| {
        let err = run_split(&excluding(&opts, &[file])).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, SplitError::ExcludeFile { .. }), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        for part in expected {
            assert!(msg.contains(part), "{msg} should contain {part:?}");
        }
        assert!(!out.exists(), "nothing written");
    };

    fails(&tmp.path().join("missing.json"), &["does not exist"]);
    fails(tmp.path(), &["cannot read"]);
    fails(
        &write(
            &tmp.path().join("broken.json"),
            "{\n  \"flagged\": [\n    {\"path\": \"cat.1.jpg\",}\n  ]\n}\n",
        ),
        &["not valid JSON", "line 3"],
    );
    fails(
        &write(
            &tmp.path().join("other.json"),
            r#"{"photos": ["cat.1.jpg"]}"#,
        ),
        &["without a `flagged` array"],
    );
    fails(
        &write(
            &tmp.path().join("nopath.json"),
            r#"{"flagged": [{"file": "cats/cat.1.jpg"}]}"#,
        ),
        &["`flagged[0]` has no `path`"],
    );
    fails(
        &write(&tmp.path().join("numbers.json"), "[1, 2]"),
        &["element 0", "not a path string"],
    );
    let binary = tmp.path().join("binary.txt");
    fs::write(&binary, [b'a', 0xff, 0xfe, b'\n']).unwrap();
    fails(&binary, &["not UTF-8"]);

    // One bad file among good ones fails the whole run, even over an existing split.
    run_split(&opts).unwrap();
    let before = fs::read(out.join(MANIFEST_FILE)).unwrap();
    let good = write(&tmp.path().join("good.txt"), "cat.0.jpg\n");
    let err = run_split(&SplitOptions {
        force: true,
        ..excluding(&opts, &[&good, &tmp.path().join("missing.txt")])
    })
    .unwrap_err();
    assert!(matches!(err, SplitError::ExcludeFile { .. }), "{err}");
    assert_eq!(fs::read(out.join(MANIFEST_FILE)).unwrap(), before);
}
