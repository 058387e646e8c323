//! `--shard i/n` + `merge` equals a single run, bit for bit; incomplete, mixed or foreign
//! shard sets are refused.

use std::path::Path;

use candle_core::Device;
use extract::{ExtractOptions, Outcome};
use features::{MergeOptions, MergeOutcome, Shard};
use testkit::fixtures::{load, synthetic_pipeline, write_random_vgg16, write_split};
use testkit::{bytes, listing};

fn options(weights: &Path, shard: Option<Shard>) -> ExtractOptions {
    let mut o = ExtractOptions::new(Device::Cpu);
    o.weights = Some(weights.to_path_buf());
    o.progress = false;
    o.shard = shard;
    o
}

fn shard(index: usize, count: usize) -> Option<Shard> {
    Some(Shard { index, count })
}

/// Metadata without the creation time and the file digest (which covers the header, creation
/// time included).
fn timeless(meta: artifact::Metadata) -> artifact::Metadata {
    meta.into_iter()
        .filter(|(k, _)| k != artifact::fresh::KEY_CREATED && k != artifact::fresh::KEY_DATA_DIGEST)
        .collect()
}

#[test]
fn shards_then_merge_equal_a_single_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_split(&data, "train", &[("cats", 4), ("dogs", 3)], 1);
    write_split(&data, "validation", &[("cats", 3), ("dogs", 2)], 2);
    let weights = dir.path().join("w.safetensors");
    write_random_vgg16(&weights, 5);
    let whole = dir.path().join("whole");
    let sharded = dir.path().join("sharded");
    let extra = ["bottleneck.augmented_views=2"];

    extract::extract(
        &synthetic_pipeline(&data, &whole, &extra),
        &options(&weights, None),
    )
    .unwrap();

    let p = synthetic_pipeline(&data, &sharded, &extra);
    for i in 1..=3 {
        let r = extract::extract(&p, &options(&weights, shard(i, 3))).unwrap();
        assert!(
            r.files
                .iter()
                .all(|f| matches!(f.outcome, Outcome::Written(_)))
        );
        // A shard run again is up to date.
        assert!(
            extract::extract(&p, &options(&weights, shard(i, 3)))
                .unwrap()
                .up_to_date()
        );
    }
    // The shard of 7 training images: 2, 2, 3 rows (3 views each in the augmented file).
    let (s1, _) = load(&sharded.join("bottleneck/train.shard-1-of-3.safetensors"));
    assert_eq!(s1["features"].dims()[0], 2);
    let (s3, _) = load(&sharded.join("bottleneck/train_augmented.shard-3-of-3.safetensors"));
    assert_eq!(s3["features"].dims()[0], 6);

    let report = features::merge(&p, &MergeOptions::default()).unwrap();
    assert_eq!(report.files.len(), 3);
    assert!(
        report
            .files
            .iter()
            .all(|f| f.outcome == MergeOutcome::Merged && f.shards == 3)
    );
    for stem in ["train", "validation", "train_augmented"] {
        let name = format!("bottleneck/{stem}.safetensors");
        let (a, ma) = load(&whole.join(&name));
        let (b, mb) = load(&sharded.join(&name));
        for t in ["features", "labels"] {
            assert_eq!(a[t].dims(), b[t].dims(), "{stem} {t}");
            assert_eq!(bytes(&a[t]), bytes(&b[t]), "{stem} {t} differ");
        }
        assert_eq!(timeless(ma), timeless(mb), "{stem} metadata");
    }
    // The shards are gone, and the merged files count as an up-to-date single run.
    assert_eq!(
        listing(&sharded.join("bottleneck")),
        [
            "train.safetensors",
            "train_augmented.safetensors",
            "validation.safetensors"
        ]
    );
    assert!(
        extract::extract(&p, &options(&weights, None))
            .unwrap()
            .up_to_date()
    );
    // Merging again finds no shards and leaves the files alone.
    let again = features::merge(&p, &MergeOptions::default()).unwrap();
    assert!(
        again
            .files
            .iter()
            .all(|f| f.outcome == MergeOutcome::NoShards)
    );
}

#[test]
fn incomplete_mixed_or_foreign_shard_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_split(&data, "train", &[("cats", 3), ("dogs", 3)], 1);
    write_split(&data, "validation", &[("cats", 2), ("dogs", 2)], 2);
    let weights = dir.path().join("w.safetensors");
    write_random_vgg16(&weights, 5);
    let artifacts = dir.path().join("artifacts");
    let bottleneck = artifacts.join("bottleneck");
    let p = synthetic_pipeline(&data, &artifacts, &[]);

    // Nothing at all.
    let err = features::merge(&p, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.shard-*-of-*") && err.contains("no shard files"),
        "{err}"
    );

    // An incomplete set names the missing shard.
    extract::extract(&p, &options(&weights, shard(1, 3))).unwrap();
    extract::extract(&p, &options(&weights, shard(3, 3))).unwrap();
    let err = features::merge(&p, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("incomplete") && err.contains("train.shard-2-of-3.safetensors"),
        "{err}"
    );
    assert!(!bottleneck.join("train.safetensors").exists());

    // Two sets of different counts.
    extract::extract(&p, &options(&weights, shard(1, 2))).unwrap();
    let err = features::merge(&p, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("of-2, of-3"), "{err}");
    for i in 1..=2 {
        std::fs::remove_file(bottleneck.join(format!("train.shard-{i}-of-2.safetensors"))).ok();
        std::fs::remove_file(bottleneck.join(format!("validation.shard-{i}-of-2.safetensors")))
            .ok();
    }

    // Shard 2 made from other images (one training image replaced in between).
    let victim = data.join("train/dogs/img01.jpg");
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    testkit::fixtures::random_image(44, 55, 0, &mut rng)
        .save(&victim)
        .unwrap();
    extract::extract(&p, &options(&weights, shard(2, 3))).unwrap();
    let err = features::merge(&p, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("shard-2-of-3") && err.contains("other images"),
        "{err}"
    );
    assert!(!bottleneck.join("train.safetensors").exists());

    // Shards made with other settings than the pipeline's now.
    for i in [1, 3] {
        let mut forced = options(&weights, shard(i, 3));
        forced.force = true;
        extract::extract(&p, &forced).unwrap();
    }
    let other = synthetic_pipeline(&data, &artifacts, &["data.interpolation=\"bilinear\""]);
    let err = features::merge(&other, &MergeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("other settings"), "{err}");

    // A consistent set merges; --keep-shards keeps them.
    let report = features::merge(
        &p,
        &MergeOptions {
            force: false,
            keep_shards: true,
        },
    )
    .unwrap();
    assert!(
        report
            .files
            .iter()
            .all(|f| f.outcome == MergeOutcome::Merged)
    );
    assert!(bottleneck.join("train.shard-1-of-3.safetensors").exists());
    let again = features::merge(&p, &MergeOptions::default()).unwrap();
    assert!(
        again
            .files
            .iter()
            .all(|f| f.outcome == MergeOutcome::UpToDate)
    );
    assert!(!listing(&bottleneck).iter().any(|f| f.contains(".tmp-")));
}
