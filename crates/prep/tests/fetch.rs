//! The default-source archive: verification (pinned and recorded digests, size) and unpacking
//! (merging train/ and validation/ class folders), on small zips built here. The download
//! itself needs the network and is not exercised.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use prep::fetch::{RemoteArchive, Verification, prepare_archive, sha256_file};
use prep::{FetchError, SplitOptions, Subset, run_split};
use zip::write::SimpleFileOptions;

/// Writes a zip with the given (entry name, contents) pairs.
fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let file = fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn jpeg_bytes(seed: u32) -> Vec<u8> {
    let tmp = tempfile::NamedTempFile::with_suffix(".jpg").unwrap();
    write_jpeg(tmp.path(), seed);
    fs::read(tmp.path()).unwrap()
}

/// An archive shaped like cats_and_dogs_filtered.zip: 3 train + 2 validation images per class.
fn tutorial_like_zip(path: &Path) {
    let mut entries = vec![("filtered/vectorize.py", b"print()".to_vec())];
    let names: Vec<(String, u32)> = ["cat", "dog"]
        .iter()
        .flat_map(|label| {
            let train =
                (0..3).map(move |i| (format!("filtered/train/{label}s/{label}.{i}.jpg"), i));
            let validation =
                (20..22).map(move |i| (format!("filtered/validation/{label}s/{label}.{i}.jpg"), i));
            train.chain(validation)
        })
        .collect();
    for (name, seed) in &names {
        entries.push((name.as_str(), jpeg_bytes(*seed)));
    }
    write_zip(path, &entries);
}

fn archive(size: Option<u64>, sha256: Option<String>) -> RemoteArchive {
    RemoteArchive {
        // Never contacted: the archive is placed in the cache before each test.
        url: "http://127.0.0.1:9/filtered.zip".into(),
        file_name: "filtered.zip".into(),
        size,
        sha256,
        root: Some("filtered".into()),
        merge: vec!["train".into(), "validation".into()],
        unpacked_name: "filtered".into(),
    }
}

fn cache_with_archive() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    fs::create_dir_all(&cache).unwrap();
    let zip = cache.join("filtered.zip");
    tutorial_like_zip(&zip);
    (tmp, zip)
}

#[test]
fn the_digest_is_recorded_on_first_use_and_checked_afterwards() {
    let (tmp, zip) = cache_with_archive();
    let cache = tmp.path().join("cache");
    let digest = sha256_file(&zip).unwrap();
    let spec = archive(Some(fs::metadata(&zip).unwrap().len()), None);

    let first = prepare_archive(&spec, &cache, false).unwrap();
    assert!(!first.downloaded);
    assert!(first.unpacked);
    assert_eq!(first.files, 10);
    assert_eq!(first.sha256, digest);
    let record = cache.join("filtered.zip.sha256");
    assert_eq!(
        first.verification,
        Verification::Recorded {
            record: record.clone()
        }
    );
    assert_eq!(
        fs::read_to_string(&record).unwrap(),
        format!("{digest}  filtered.zip\n")
    );

    // Merged class folders, nothing else.
    let source = cache.join("filtered");
    assert_eq!(first.source, source);
    assert_eq!(names(&source), ["cats", "dogs"]);
    assert_eq!(
        names(&source.join("cats")),
        [
            "cat.0.jpg",
            "cat.1.jpg",
            "cat.2.jpg",
            "cat.20.jpg",
            "cat.21.jpg"
        ]
    );

    let second = prepare_archive(&spec, &cache, false).unwrap();
    assert_eq!(
        second.verification,
        Verification::MatchesRecord {
            record: record.clone()
        }
    );
    assert!(!second.unpacked, "already unpacked from this archive");

    // A different archive under the same name no longer matches the record.
    write_zip(&zip, &[("filtered/train/cats/cat.0.jpg", jpeg_bytes(5))]);
    let spec = archive(None, None);
    let err = prepare_archive(&spec, &cache, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{msg}");
    assert!(
        msg.contains("recorded at the first download") && msg.contains(&digest),
        "{msg}"
    );
    assert!(
        zip.exists(),
        "a cached archive is not deleted behind the user's back"
    );
}

#[test]
fn a_pinned_digest_is_enforced() {
    let (tmp, zip) = cache_with_archive();
    let cache = tmp.path().join("cache");
    let digest = sha256_file(&zip).unwrap();

    let good = prepare_archive(&archive(None, Some(digest.to_uppercase())), &cache, false).unwrap();
    assert_eq!(good.verification, Verification::Pinned);
    assert!(
        !cache.join("filtered.zip.sha256").exists(),
        "no record needed when pinned"
    );

    let wrong = "0".repeat(64);
    let err = prepare_archive(&archive(None, Some(wrong.clone())), &cache, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{msg}");
    assert!(msg.contains(&wrong) && msg.contains(&digest), "{msg}");
}

#[test]
fn a_wrong_size_is_refused() {
    let (tmp, zip) = cache_with_archive();
    let cache = tmp.path().join("cache");
    let len = fs::metadata(&zip).unwrap().len();
    let err = prepare_archive(&archive(Some(len + 1), None), &cache, false).unwrap_err();
    assert!(
        matches!(err, FetchError::SizeMismatch { expected, actual, .. } if expected == len + 1 && actual == len),
        "{err}"
    );
    assert!(
        !cache.join("filtered.zip.sha256").exists(),
        "nothing recorded for a bad archive"
    );
}

#[test]
fn the_unpacked_archive_is_a_class_folder_source_for_the_split() {
    let (tmp, _zip) = cache_with_archive();
    let cache = tmp.path().join("cache");
    let prepared = prepare_archive(&archive(None, None), &cache, false).unwrap();
    let out = tmp.path().join("data");
    let report = run_split(&SplitOptions {
        out: out.clone(),
        train: 3,
        validation: 2,
        ..SplitOptions::new(&prepared.source)
    })
    .unwrap();
    // As in the tutorial archive: the train images first, then the validation ones.
    let listed = |s, c| -> Vec<String> {
        report
            .manifest
            .files(s, c)
            .iter()
            .map(|f| f.name.clone())
            .collect()
    };
    assert_eq!(
        listed(Subset::Train, "cats"),
        ["cat.0.jpg", "cat.1.jpg", "cat.2.jpg"]
    );
    assert_eq!(
        listed(Subset::Validation, "dogs"),
        ["dog.20.jpg", "dog.21.jpg"]
    );
}

#[test]
fn unsafe_duplicate_and_empty_archives_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    fs::create_dir_all(&cache).unwrap();
    let zip = cache.join("filtered.zip");

    write_zip(
        &zip,
        &[
            ("filtered/train/cats/cat.0.jpg", jpeg_bytes(1)),
            ("filtered/validation/cats/cat.0.jpg", jpeg_bytes(2)),
        ],
    );
    let err = prepare_archive(&archive(None, None), &cache, false).unwrap_err();
    assert!(matches!(err, FetchError::DuplicateEntry { .. }), "{err}");
    assert!(err.to_string().contains("cats/cat.0.jpg"));
    assert!(!cache.join("filtered").exists(), "nothing half-unpacked");

    fs::remove_file(cache.join("filtered.zip.sha256")).unwrap();
    write_zip(&zip, &[("filtered/README", b"no images".to_vec())]);
    let err = prepare_archive(&archive(None, None), &cache, false).unwrap_err();
    assert!(matches!(err, FetchError::NoImagesInArchive { .. }), "{err}");

    fs::remove_file(cache.join("filtered.zip.sha256")).unwrap();
    write_zip(&zip, &[("../../evil.jpg", jpeg_bytes(1))]);
    let err = prepare_archive(&archive(None, None), &cache, false).unwrap_err();
    assert!(matches!(err, FetchError::UnsafeEntry { .. }), "{err}");
    assert!(!tmp.path().join("evil.jpg").exists());

    fs::remove_file(cache.join("filtered.zip.sha256")).unwrap();
    fs::write(&zip, b"not a zip").unwrap();
    let err = prepare_archive(&archive(None, None), &cache, false).unwrap_err();
    assert!(matches!(err, FetchError::Zip { .. }), "{err}");
}
