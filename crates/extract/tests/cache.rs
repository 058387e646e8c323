//! The features files: contents, the cache (no work when nothing changed) and its
//! invalidation (a changed image, image size, preprocessing or weights file).

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use extract::{ExtractOptions, Outcome};
use features::{FeatureFile, FeatureMeta};
use imagedata::Split;
use imagedata::{Interpolation, Preprocessing, TargetSize, load_resized};
use models::Vgg16;
use testkit::bytes;
use testkit::fixtures::{load, synthetic_pipeline, write_random_vgg16, write_split};

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    artifacts: PathBuf,
    weights: PathBuf,
    train: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let train = write_split(&data, "train", &[("cats", 4), ("dogs", 3)], 1);
    write_split(&data, "validation", &[("cats", 2), ("dogs", 2)], 2);
    let weights = dir.path().join("vgg16.safetensors");
    write_random_vgg16(&weights, 11);
    Fixture {
        artifacts: dir.path().join("artifacts"),
        _dir: dir,
        data,
        weights,
        train,
    }
}

fn options(weights: &Path) -> ExtractOptions {
    let mut o = ExtractOptions::new(Device::Cpu);
    o.weights = Some(weights.to_path_buf());
    o.progress = false;
    o
}

/// Which files were computed, by stem.
fn written(report: &extract::ExtractReport) -> Vec<&'static str> {
    report
        .files
        .iter()
        .filter(|f| matches!(f.outcome, Outcome::Written(_)))
        .map(|f| f.file.stem())
        .collect()
}

#[test]
fn features_hold_the_conv_base_output_with_labels_and_description() {
    let f = fixture();
    let p = synthetic_pipeline(&f.data, &f.artifacts, &[]);
    let report = extract::extract(&p, &options(&f.weights)).unwrap();
    assert_eq!(written(&report), ["train", "validation"]);
    assert!(!report.up_to_date());
    assert_eq!(report.computed().0, 11);

    let path = f.artifacts.join("bottleneck/train.safetensors");
    let (t, raw) = load(&path);
    assert_eq!(t["features"].dims(), [7, 512, 2, 1]);
    assert_eq!(t["labels"].to_vec1::<u32>().unwrap(), [0, 0, 0, 0, 1, 1, 1]);
    let meta = FeatureMeta::from_metadata(&raw, &path).unwrap();
    assert_eq!(meta.split, Split::Train);
    assert_eq!(meta.classes, ["cats", "dogs"]);
    assert_eq!(meta.files[0], "cats/img00.png");
    assert_eq!(meta.files[6], "dogs/img02.png");
    assert_eq!(meta.settings.target_size, [64, 48]);
    assert_eq!(meta.settings.preprocessing, Preprocessing::imagenet());
    assert_eq!(
        meta.weights_sha256,
        artifact::sha256_file(&f.weights).unwrap()
    );
    assert_eq!(meta.feature_shape, [512, 2, 1]);
    assert!(meta.shard.is_none());
    let prov = artifact::Provenance::from_metadata(&raw).unwrap();
    assert_eq!(prov.stage, "extract");
    assert_eq!(prov.inputs["weights"], meta.weights_sha256);

    // Row 5 is the conv base applied to the sixth file, decoded, resized and normalised.
    let vgg = Vgg16::load(&f.weights, &Device::Cpu).unwrap();
    let img = load_resized(
        &f.train[5],
        TargetSize::new(64, 48),
        Interpolation::Nearest,
        &Default::default(),
    )
    .unwrap();
    let x = imagedata::images_to_tensor(&[img], &Preprocessing::imagenet(), &Device::Cpu).unwrap();
    let direct = vgg.forward(&x).unwrap();
    let row = t["features"].narrow(0, 5, 1).unwrap();
    let diff = testkit::max_abs_diff(&direct, &row);
    assert!(
        diff <= 1e-5,
        "row 5 differs from a direct forward pass by {diff}"
    );

    let (v, _) = load(&f.artifacts.join("bottleneck/validation.safetensors"));
    assert_eq!(v["features"].dims(), [4, 512, 2, 1]);
    assert_eq!(v["labels"].to_vec1::<u32>().unwrap(), [0, 0, 1, 1]);
}

#[test]
fn nothing_changed_means_no_work_and_each_change_recomputes_what_it_affects() {
    let f = fixture();
    let p = synthetic_pipeline(&f.data, &f.artifacts, &[]);
    let o = options(&f.weights);
    extract::extract(&p, &o).unwrap();
    let train_path = f.artifacts.join("bottleneck/train.safetensors");
    let first = load(&train_path).0;

    // Nothing changed.
    let again = extract::extract(&p, &o).unwrap();
    assert!(again.up_to_date(), "{:?}", again.files);
    assert!(written(&again).is_empty());

    // Touching an image (same bytes, new time) changes nothing.
    let bytes_before = std::fs::read(&f.train[2]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&f.train[2], &bytes_before).unwrap();
    assert!(extract::extract(&p, &o).unwrap().up_to_date());

    // Replacing an image recomputes the training features only.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(99);
    testkit::fixtures::random_image(50, 60, 1, &mut rng)
        .save(&f.train[2])
        .unwrap();
    let r = extract::extract(&p, &o).unwrap();
    assert_eq!(written(&r), ["train"]);
    let reason = r.files[0].reason.clone().unwrap();
    assert!(reason.contains("data"), "{reason}");
    let second = load(&train_path).0;
    let row = |t: &Tensor, i| bytes(&t.narrow(0, i, 1).unwrap());
    assert_ne!(row(&first["features"], 2), row(&second["features"], 2));
    assert_eq!(row(&first["features"], 3), row(&second["features"], 3));

    // Another preprocessing: both files.
    let rescale = synthetic_pipeline(
        &f.data,
        &f.artifacts,
        &["bottleneck.preprocessing={ kind = \"rescale\", scale = 0.00392156862745098 }"],
    );
    assert_eq!(
        written(&extract::extract(&rescale, &o).unwrap()),
        ["train", "validation"]
    );
    assert!(extract::extract(&rescale, &o).unwrap().up_to_date());

    // Another image size: both files.
    let bigger = synthetic_pipeline(&f.data, &f.artifacts, &["bottleneck.target_size=[64, 64]"]);
    let r = extract::extract(&bigger, &o).unwrap();
    assert_eq!(written(&r), ["train", "validation"]);
    assert_eq!(load(&train_path).0["features"].dims(), [7, 512, 2, 2]);

    // Another weights file at the same path: both files.
    write_random_vgg16(&f.weights, 12);
    let r = extract::extract(&bigger, &o).unwrap();
    assert_eq!(written(&r), ["train", "validation"]);
    assert!(r.files[0].reason.as_deref().unwrap().contains("weights"));

    // Settings that do not change the features (the batch size) keep the cache.
    let batch = synthetic_pipeline(
        &f.data,
        &f.artifacts,
        &["bottleneck.target_size=[64, 64]", "bottleneck.batch_size=5"],
    );
    assert!(extract::extract(&batch, &o).unwrap().up_to_date());

    // --force recomputes, giving identical tensors (batch composition does not matter).
    let before = load(&train_path).0;
    let mut forced = o.clone();
    forced.force = true;
    let r = extract::extract(&batch, &forced).unwrap();
    assert_eq!(written(&r), ["train", "validation"]);
    assert_eq!(r.files[0].reason.as_deref(), Some("--force"));
    let after = load(&train_path).0;
    assert_eq!(bytes(&before["features"]), bytes(&after["features"]));
}

#[test]
fn augmented_views_are_reproducible_distinct_and_image_major() {
    let f = fixture();
    let p = synthetic_pipeline(&f.data, &f.artifacts, &["bottleneck.augmented_views=3"]);
    let o = options(&f.weights);
    let r = extract::extract(&p, &o).unwrap();
    assert_eq!(written(&r), ["train", "validation", "train_augmented"]);
    let path = f.artifacts.join("bottleneck/train_augmented.safetensors");
    let (t, raw) = load(&path);
    assert_eq!(t["features"].dims(), [21, 512, 2, 1]);
    assert_eq!(
        t["labels"].to_vec1::<u32>().unwrap(),
        [0u32, 0, 0, 0, 1, 1, 1]
            .iter()
            .flat_map(|&l| [l; 3])
            .collect::<Vec<_>>()
    );
    let meta = FeatureMeta::from_metadata(&raw, &path).unwrap();
    let views = meta.settings.views.clone().unwrap();
    assert_eq!((views.count, views.seed), (3, 7));
    assert_eq!(meta.rows(), 21);

    let (plain, _) = load(&f.artifacts.join("bottleneck/train.safetensors"));
    let row = |t: &Tensor, i| bytes(&t.narrow(0, i, 1).unwrap());
    // Views of one image differ from each other and from the plain image.
    assert_ne!(row(&t["features"], 3), row(&t["features"], 4));
    assert_ne!(row(&t["features"], 3), row(&plain["features"], 1));

    // Changing the view count keeps the plain files and redraws only the augmented file; the
    // first views of every image stay the same (each view has its own random stream).
    let p2 = synthetic_pipeline(&f.data, &f.artifacts, &["bottleneck.augmented_views=2"]);
    let r = extract::extract(&p2, &o).unwrap();
    assert_eq!(written(&r), ["train_augmented"]);
    let (t2, _) = load(&path);
    assert_eq!(t2["features"].dims(), [14, 512, 2, 1]);
    for image in 0..7 {
        for view in 0..2 {
            assert_eq!(
                row(&t["features"], image * 3 + view),
                row(&t2["features"], image * 2 + view)
            );
        }
    }
    // Another seed redraws the views.
    let p3 = synthetic_pipeline(
        &f.data,
        &f.artifacts,
        &["bottleneck.augmented_views=2", "data.seed=8"],
    );
    let r = extract::extract(&p3, &o).unwrap();
    assert_eq!(written(&r), ["train_augmented"]);
    assert_ne!(bytes(&load(&path).0["features"]), bytes(&t2["features"]));
    assert!(FeatureFile::TrainAugmented.is_augmented());
}
