//! `flow_from_directory` and `flow`: classes, labels, shapes, ordering, the in-memory cache,
//! the undecodable-file policy, progress and `save_to_dir`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{encode, jpeg, pattern, write};
use image::ImageFormat;
use imagedata::{
    AugmentConfig, ClassMode, DataError, DirectoryOptions, FlowOptions, ImageDataGenerator,
    OnError, Preprocessing, Progress, SaveFormat, TargetSize,
};

/// cats: 3 PNGs (different sizes), dogs: 2 JPEGs, plus files that are not images.
fn tiny_folder(root: &Path) {
    for (i, (w, h)) in [(12, 10), (8, 8), (20, 6)].into_iter().enumerate() {
        write(
            root,
            &format!("cats/cat.{i}.png"),
            &encode(&pattern(w, h, i as u32).into(), ImageFormat::Png),
        );
    }
    for i in 0..2 {
        write(
            root,
            &format!("dogs/dog.{i}.jpg"),
            &jpeg(&pattern(16, 16, 10 + i)),
        );
    }
    write(root, "dogs/notes.txt", b"not an image");
    write(root, ".DS_Store", b"junk");
}

fn plain() -> ImageDataGenerator {
    ImageDataGenerator::preprocessing_only(Preprocessing::rescale(1.0 / 255.0))
}

fn dir_options(mode: ClassMode) -> DirectoryOptions {
    DirectoryOptions {
        target_size: TargetSize::new(8, 8),
        class_mode: mode,
        ..Default::default()
    }
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn classes_labels_shapes_and_order() {
    let dir = tempfile::tempdir().unwrap();
    tiny_folder(dir.path());
    let (flow, report) = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            FlowOptions {
                batch_size: 2,
                shuffle: false,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(flow.classes(), ["cats", "dogs"]);
    assert_eq!(flow.samples(), 5);
    assert_eq!(flow.len(), 3);
    let batches: Vec<_> = flow.epoch(0).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 3);
    let shapes: Vec<Vec<usize>> = batches.iter().map(|b| b.images.dims().to_vec()).collect();
    assert_eq!(
        shapes,
        vec![vec![2, 3, 8, 8], vec![2, 3, 8, 8], vec![1, 3, 8, 8]]
    );
    let labels: Vec<Vec<u32>> = batches
        .iter()
        .map(|b| b.labels.as_ref().unwrap().to_vec1().unwrap())
        .collect();
    assert_eq!(labels, vec![vec![0, 0], vec![0, 1], vec![1]]);
    let all_paths: Vec<PathBuf> = batches.iter().flat_map(|b| b.paths.clone()).collect();
    assert_eq!(
        names(&all_paths),
        [
            "cat.0.png",
            "cat.1.png",
            "cat.2.png",
            "dog.0.jpg",
            "dog.1.jpg"
        ]
    );
    assert_eq!(batches[1].indices, vec![2, 3]);
    assert_eq!(batches[2].index, 2);
    // Values are rescaled pixels.
    let v: Vec<f32> = batches[0].images.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    // The 8×8 cat is cached as it is (no resize needed): exact values.
    let cat1 = pattern(8, 8, 1);
    let want = f32::from(cat1.get_pixel(5, 2)[1]) / 255.0;
    let got = v[192 + 64 + 2 * 8 + 5];
    assert!((got - want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn class_modes() {
    let dir = tempfile::tempdir().unwrap();
    tiny_folder(dir.path());
    write(
        dir.path(),
        "birds/b.png",
        &encode(&pattern(5, 5, 0).into(), ImageFormat::Png),
    );
    let options = FlowOptions {
        shuffle: false,
        batch_size: 10,
        ..Default::default()
    };
    let err = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            options.clone(),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("exactly 2 classes, found 3: birds, cats, dogs"),
        "{err}"
    );

    let (flow, _) = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Categorical),
            options.clone(),
            None,
        )
        .unwrap();
    let batch = flow.batch(0, 0).unwrap();
    assert_eq!(
        batch.labels.unwrap().to_vec1::<u32>().unwrap(),
        vec![0, 1, 1, 1, 2, 2]
    );

    let (flow, _) = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::None),
            options.clone(),
            None,
        )
        .unwrap();
    let batch = flow.batch(0, 0).unwrap();
    assert!(batch.labels.is_none());
    assert_eq!(batch.images.dims(), &[6, 3, 8, 8]);

    // Explicit classes, in the given order (as Keras' `classes=`).
    let (flow, _) = plain()
        .flow_from_directory(
            dir.path(),
            &DirectoryOptions {
                classes: Some(vec!["dogs".into(), "cats".into()]),
                ..dir_options(ClassMode::Binary)
            },
            options,
            None,
        )
        .unwrap();
    assert_eq!(flow.classes(), ["dogs", "cats"]);
    let batch = flow.batch(0, 0).unwrap();
    assert_eq!(
        batch.labels.unwrap().to_vec1::<u32>().unwrap(),
        vec![0, 0, 1, 1, 1]
    );
}

#[test]
fn later_epochs_never_decode_again() {
    let dir = tempfile::tempdir().unwrap();
    tiny_folder(dir.path());
    let calls = Mutex::new(Vec::new());
    let progress = |p: Progress| calls.lock().unwrap().push(p);
    let (flow, _) = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            FlowOptions {
                batch_size: 3,
                shuffle: true,
                seed: 9,
                ..Default::default()
            },
            Some(&progress),
        )
        .unwrap();
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.len(), 5);
    assert!(calls.iter().all(|p| p.total == 5));
    let mut done: Vec<usize> = calls.iter().map(|p| p.done).collect();
    done.sort();
    assert_eq!(done, vec![1, 2, 3, 4, 5]);
    assert_eq!(flow.image_set().memory_bytes(), 5 * 8 * 8 * 3);

    let epoch0: Vec<_> = flow.epoch(0).map(Result::unwrap).collect();
    // Remove every file: epochs 1 and 2 still work from the cache.
    std::fs::remove_dir_all(dir.path().join("cats")).unwrap();
    std::fs::remove_dir_all(dir.path().join("dogs")).unwrap();
    for epoch in 1..3 {
        let batches: Vec<_> = flow.epoch(epoch).map(Result::unwrap).collect();
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 5);
        // Same images (no augmentation), in another order: compare per sample index.
        for b in &batches {
            for (k, &i) in b.indices.iter().enumerate() {
                let (b0, k0) = epoch0
                    .iter()
                    .find_map(|e| e.indices.iter().position(|&j| j == i).map(|p| (e, p)))
                    .unwrap();
                let x: Vec<f32> = b
                    .images
                    .get(k)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                let y: Vec<f32> = b0
                    .images
                    .get(k0)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                assert_eq!(x, y);
            }
        }
    }
}

#[test]
fn undecodable_files_fail_or_are_listed_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    tiny_folder(dir.path());
    let zero = write(dir.path(), "cats/cat.9.jpg", b"");
    let fake = write(dir.path(), "dogs/dog.9.png", b"plain text, not a PNG");
    let options = FlowOptions::default();
    let err = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            options.clone(),
            None,
        )
        .unwrap_err();
    match &err {
        DataError::Undecodable { count, failures } => {
            assert_eq!(*count, 2);
            assert!(
                matches!(failures[0], DataError::Empty { .. }),
                "{}",
                failures[0]
            );
            assert_eq!(failures[0].path().unwrap(), zero);
            assert_eq!(failures[1].path().unwrap(), fake);
        }
        other => panic!("expected Undecodable, got {other}"),
    }
    assert!(
        err.to_string().contains("2 file(s) could not be decoded"),
        "{err}"
    );
    assert!(err.to_string().contains("cat.9.jpg: empty file"), "{err}");
    assert!(err.to_string().contains("dog.9.png"), "{err}");

    let skip = DirectoryOptions {
        on_error: OnError::Skip,
        ..dir_options(ClassMode::Binary)
    };
    let (flow, report) = plain()
        .flow_from_directory(
            dir.path(),
            &skip,
            FlowOptions {
                shuffle: false,
                ..options
            },
            None,
        )
        .unwrap();
    assert_eq!(flow.samples(), 5);
    let skipped: Vec<&Path> = report.skipped.iter().map(|e| e.path().unwrap()).collect();
    assert_eq!(skipped, vec![zero.as_path(), fake.as_path()]);
    assert!(matches!(report.skipped[1], DataError::Unsupported { .. }));
    // Labels still line up with the files kept.
    let batch = flow.batch(0, 0).unwrap();
    assert_eq!(
        batch.labels.unwrap().to_vec1::<u32>().unwrap(),
        vec![0, 0, 0, 1, 1]
    );
    assert_eq!(
        names(&batch.paths),
        [
            "cat.0.png",
            "cat.1.png",
            "cat.2.png",
            "dog.0.jpg",
            "dog.1.jpg"
        ]
    );
}

#[test]
fn bad_folders_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let options = FlowOptions::default();
    let err = plain()
        .flow_from_directory(
            &dir.path().join("missing"),
            &dir_options(ClassMode::Binary),
            options.clone(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, DataError::NotFound { .. }), "{err}");
    write(
        dir.path(),
        "cats/a.png",
        &encode(&pattern(4, 4, 0).into(), ImageFormat::Png),
    );
    std::fs::create_dir_all(dir.path().join("dogs")).unwrap();
    let err = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            options.clone(),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("class 'dogs' has no images"),
        "{err}"
    );
    let err = plain()
        .flow_from_directory(
            dir.path(),
            &dir_options(ClassMode::Binary),
            FlowOptions {
                batch_size: 0,
                ..options
            },
            None,
        )
        .unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn flow_saves_augmented_images_like_keras() {
    let out = tempfile::tempdir().unwrap();
    let save_dir = out.path().join("preview");
    let images: Vec<_> = (0..3).map(|i| pattern(20, 16, i)).collect();
    let g = ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::rescale(1.0 / 255.0))
        .unwrap();
    for format in [SaveFormat::Jpeg, SaveFormat::Png] {
        let flow = g
            .flow(
                images.clone(),
                Some(vec![0, 1, 0]),
                FlowOptions {
                    batch_size: 2,
                    seed: 5,
                    save_to_dir: Some(save_dir.clone()),
                    save_prefix: "cat".into(),
                    save_format: format,
                    ..Default::default()
                },
            )
            .unwrap();
        let batches: Vec<_> = flow.epoch(0).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 2);
        assert!(
            batches[0].paths.is_empty(),
            "in-memory images have no paths"
        );
        let mut saved: Vec<String> = std::fs::read_dir(&save_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(format.extension()))
            .collect();
        saved.sort();
        assert_eq!(saved.len(), 3, "{saved:?}");
        for (i, name) in saved.iter().enumerate() {
            // {prefix}_{index}_{hash}.{format}
            let stem = name
                .strip_suffix(&format!(".{}", format.extension()))
                .unwrap();
            let parts: Vec<&str> = stem.split('_').collect();
            assert_eq!(parts.len(), 3, "{name}");
            assert_eq!(parts[0], "cat");
            assert_eq!(parts[1], i.to_string());
            assert!(parts[2].parse::<u32>().unwrap() < 10_000);
            let img = imagedata::load_rgb(&save_dir.join(name), &Default::default()).unwrap();
            assert_eq!(img.dimensions(), (20, 16));
        }
        // The batch holds what was saved (exactly, for lossless PNG).
        if format == SaveFormat::Png {
            let b = &batches[0];
            let back = imagedata::batch_to_images(&b.images, &g.preprocessing).unwrap();
            let k = b.indices[0];
            let name = saved
                .iter()
                .find(|n| n.starts_with(&format!("cat_{k}_")))
                .unwrap();
            let img = imagedata::load_rgb(&save_dir.join(name), &Default::default()).unwrap();
            assert_eq!(back[0], img);
        }
    }
    // No temporary files are left behind.
    assert!(
        std::fs::read_dir(&save_dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp"))
    );
}

#[test]
fn flow_checks_its_inputs() {
    let g = plain();
    let err = g
        .flow(
            vec![pattern(4, 4, 0), pattern(5, 4, 0)],
            None,
            FlowOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("same size"), "{err}");
    let err = g
        .flow(
            vec![pattern(4, 4, 0)],
            Some(vec![0, 1]),
            FlowOptions::default(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("2 labels for 1 images"), "{err}");
    assert!(g.flow(Vec::new(), None, FlowOptions::default()).is_err());
    let flow = g
        .flow(vec![pattern(4, 4, 0)], None, FlowOptions::default())
        .unwrap();
    assert!(flow.batch(0, 1).is_err());
}

#[test]
fn dropping_an_epoch_early_stops_the_worker() {
    let images: Vec<_> = (0..64).map(|i| pattern(32, 32, i)).collect();
    let g = ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::default()).unwrap();
    let flow = g
        .flow(
            images,
            None,
            FlowOptions {
                batch_size: 4,
                prefetch: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let mut epoch = flow.epoch(0);
    assert_eq!(epoch.batches(), 16);
    assert!(epoch.next().unwrap().is_ok());
    drop(epoch); // joins the worker; must not hang
    assert_eq!(flow.epoch(1).count(), 16);
}
