//! The caches of blocks 1–4: they reproduce the live forward pass, are rebuilt when anything
//! they depend on changes, and an interrupted build continues from its finished parts.

mod finetune_fixture;

use artifact::Freshness;
use candle_core::{Device, Tensor};
use finetune::{CacheKind, CacheOutcome, CachePlan, FinetuneError};
use finetune_fixture::Fixture;
use imagedata::{ImageDataGenerator, Limits, TargetSize, load_resized};
use imagedata::{Split, SplitData};
use indicatif::ProgressBar;
use models::{Backbone, Vgg16};
use testkit::fixtures::load;
use testkit::values;

/// Whether `a` and `b` agree within `tol` relative to the larger magnitude (absolute near 0).
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale.max(x.abs()),
            "{what}: element {i}: {x} vs {y} (scale {scale})"
        );
    }
}

#[test]
fn the_view_cache_reproduces_the_live_forward_pass() {
    let Some(f) = Fixture::new("the_view_cache_reproduces_the_live_forward_pass") else {
        return;
    };
    let p = f.pipeline(&[]);
    let train = SplitData::scan(&f.data, Split::Train).unwrap();
    let validation = SplitData::scan(&f.data, Split::Validation).unwrap();
    let sha = artifact::sha256_file(&f.weights).unwrap();
    let vgg = Vgg16::load(&f.weights, &Device::Cpu).unwrap();
    let backbone = Backbone::Vgg16(vgg.clone());
    let views = CachePlan::new(CacheKind::Views, &p, &train, &sha, 100).unwrap();
    assert_eq!((views.parts(), views.rows()), (1, 36));
    assert!(matches!(
        views.build(&backbone, false, None).unwrap(),
        CacheOutcome::Built(_)
    ));
    let (cached, labels) = views.load(&Device::Cpu).unwrap();
    assert_eq!(cached.dims(), [36, 512, 2, 2]);
    assert_eq!(labels.to_vec1::<u32>().unwrap()[..4], [0, 0, 0, 0]);

    // View v of image i: the transform drawn from its own stream, applied to the decoded,
    // resized image as a live batch applies it, then blocks 1–4.
    let generator = ImageDataGenerator::new(
        p.finetune.augment.clone(),
        p.bottleneck.pixel_preprocessing(),
    )
    .unwrap();
    let size = TargetSize::new(32, 32);
    let mut distinct = Vec::new();
    for (i, v) in [(0usize, 0usize), (0, 2), (5, 1), (11, 0), (11, 2)] {
        let img = load_resized(
            &train.files[i],
            size,
            p.data.interpolation,
            &Limits::default(),
        )
        .unwrap();
        let key = ((i as u64) << 32) | v as u64;
        let mut rng = imagedata::rng::substream(p.data.seed, imagedata::rng::names::VIEWS, key);
        let t = generator.random_transform(32, 32, &mut rng);
        let mut x = vec![0f32; 3 * 32 * 32];
        generator.transform_into(img.as_raw(), 32, 32, &t, &mut x);
        let x = Tensor::from_vec(x, (1, 3, 32, 32), &Device::Cpu).unwrap();
        let live = values(&vgg.forward_blocks(&x, 1, 4).unwrap());
        let row = values(&cached.narrow(0, i * 3 + v, 1).unwrap());
        // f16 storage: about 3 significant decimal digits.
        assert_close(&live, &row, 1e-3, &format!("image {i} view {v}"));
        distinct.push(row);
    }
    assert_ne!(distinct[0], distinct[1], "two views of one image differ");

    // Validation: the plain images, stored in f32.
    let plan = CachePlan::new(CacheKind::Validation, &p, &validation, &sha, 100).unwrap();
    plan.build(&backbone, false, None).unwrap();
    let (cached, _) = plan.load(&Device::Cpu).unwrap();
    assert_eq!(cached.dtype(), candle_core::DType::F32);
    let img = load_resized(
        &validation.files[4],
        size,
        p.data.interpolation,
        &Limits::default(),
    )
    .unwrap();
    let mut x = vec![0f32; 3 * 32 * 32];
    generator.standardize_into(img.as_raw(), &mut x);
    let x = Tensor::from_vec(x, (1, 3, 32, 32), &Device::Cpu).unwrap();
    let live = values(&vgg.forward_blocks(&x, 1, 4).unwrap());
    assert_close(
        &live,
        &values(&cached.narrow(0, 4, 1).unwrap()),
        1e-5,
        "validation",
    );
}

#[test]
fn a_cache_from_other_settings_or_data_is_rebuilt() {
    let Some(f) = Fixture::new("a_cache_from_other_settings_or_data_is_rebuilt") else {
        return;
    };
    let sha = artifact::sha256_file(&f.weights).unwrap();
    let vgg = Vgg16::load(&f.weights, &Device::Cpu).unwrap();
    let backbone = Backbone::Vgg16(vgg.clone());
    let p = f.pipeline(&[]);
    let train = SplitData::scan(&f.data, Split::Train).unwrap();
    let plan = CachePlan::new(CacheKind::Views, &p, &train, &sha, 100).unwrap();
    assert_eq!(plan.freshness().unwrap(), Freshness::Missing);
    plan.build(&backbone, false, None).unwrap();
    assert_eq!(plan.freshness().unwrap(), Freshness::UpToDate);
    assert_eq!(
        plan.build(&backbone, false, None).unwrap(),
        CacheOutcome::UpToDate
    );
    let (first, _) = load(plan.path());

    // Other augmentation, view count, seed, preprocessing or image size: stale, rebuilt.
    for change in [
        "finetune.augment.zoom_range=0.3",
        "finetune.views=2",
        "data.seed=8",
        "bottleneck.preprocessing={ kind = \"rescale\", scale = 0.00392156862745098 }",
        "bottleneck.target_size=[48, 32]",
    ] {
        let q = f.pipeline(&[change]);
        let other = CachePlan::new(CacheKind::Views, &q, &train, &sha, 100).unwrap();
        assert_eq!(
            other.freshness().unwrap(),
            Freshness::Stale("settings changed".into()),
            "{change}"
        );
        // A stale cache is never read.
        let err = other.load(&Device::Cpu).unwrap_err().to_string();
        assert!(
            err.contains("views.safetensors") && err.contains("out of date"),
            "{err}"
        );
    }
    let q = f.pipeline(&["finetune.augment.zoom_range=0.3"]);
    let other = CachePlan::new(CacheKind::Views, &q, &train, &sha, 100).unwrap();
    assert!(matches!(
        other.build(&backbone, false, None).unwrap(),
        CacheOutcome::Built(_)
    ));
    let (rebuilt, _) = load(plan.path());
    assert_ne!(values(&first["features"]), values(&rebuilt["features"]));
    assert_eq!(
        plan.freshness().unwrap(),
        Freshness::Stale("settings changed".into())
    );

    // Other data: one more training image.
    std::os::unix::fs::symlink(
        std::fs::canonicalize(&train.files[0]).unwrap(),
        f.data.join("train/cats/extra.jpg"),
    )
    .unwrap();
    let more = SplitData::scan(&f.data, Split::Train).unwrap();
    let plan = CachePlan::new(CacheKind::Views, &q, &more, &sha, 100).unwrap();
    assert_eq!(
        plan.freshness().unwrap(),
        Freshness::Stale("input `data` changed".into())
    );
    // Other weights.
    let plan = CachePlan::new(CacheKind::Views, &q, &train, &"0".repeat(64), 100).unwrap();
    assert_eq!(
        plan.freshness().unwrap(),
        Freshness::Stale("input `weights` changed".into())
    );
    // Not a cache at all.
    std::fs::write(plan.path(), b"not a safetensors file").unwrap();
    let plan = CachePlan::new(CacheKind::Views, &q, &train, &sha, 100).unwrap();
    assert!(matches!(plan.freshness().unwrap(), Freshness::Stale(_)));
    assert!(matches!(
        plan.build(&backbone, false, None).unwrap(),
        CacheOutcome::Built(_)
    ));
    assert_eq!(plan.freshness().unwrap(), Freshness::UpToDate);
}

#[test]
fn an_interrupted_build_continues_from_its_finished_parts() {
    let Some(f) = Fixture::new("an_interrupted_build_continues_from_its_finished_parts") else {
        return;
    };
    let sha = artifact::sha256_file(&f.weights).unwrap();
    let vgg = Vgg16::load(&f.weights, &Device::Cpu).unwrap();
    let backbone = Backbone::Vgg16(vgg.clone());
    let p = f.pipeline(&[]);
    let train = SplitData::scan(&f.data, Split::Train).unwrap();
    // 12 images in parts of 4.
    let plan = CachePlan::new(CacheKind::Views, &p, &train, &sha, 4).unwrap();
    assert_eq!(plan.parts(), 3);
    let extractor = plan.extractor(&backbone).unwrap();
    plan.build_part(&extractor, 1, &ProgressBar::hidden(), None)
        .unwrap();
    assert!(plan.part_is_done(1).unwrap() && !plan.part_is_done(2).unwrap());

    // Stopped during part 2: an error, no cache, part 1 kept, nothing half-written.
    let interrupt = engine::Interrupt::new();
    interrupt.trigger();
    let err = plan.build(&backbone, false, Some(&interrupt)).unwrap_err();
    assert!(matches!(err, FinetuneError::Interrupted { .. }), "{err}");
    assert!(!plan.path().exists());
    let parts = testkit::listing(&plan.parts_dir());
    assert_eq!(parts, ["train_augmented.shard-1-of-3.safetensors"]);
    assert_eq!(plan.freshness().unwrap(), Freshness::Missing);

    // A stale part of another build is dropped, not merged.
    let stale = plan
        .parts_dir()
        .join("train_augmented.shard-1-of-2.safetensors");
    std::fs::copy(plan.part_path(1), &stale).unwrap();

    let CacheOutcome::Built(stats) = plan.build(&backbone, false, None).unwrap() else {
        panic!("expected a build");
    };
    assert_eq!((stats.parts_reused, stats.rows), (1, 24));
    assert!(
        !plan.parts_dir().exists(),
        "parts are removed after the merge"
    );
    assert_eq!(plan.freshness().unwrap(), Freshness::UpToDate);
    let (parted, meta) = load(plan.path());
    assert!(!meta.contains_key("bottleneck.shard") || meta["bottleneck.shard"] == "null");

    // The same cache as one built in one go.
    let elsewhere = f.dir.path().join("elsewhere");
    let q = f.pipeline_in(&elsewhere, &[]);
    let whole = CachePlan::new(CacheKind::Views, &q, &train, &sha, 100).unwrap();
    assert_eq!(whole.parts(), 1);
    whole.build(&backbone, false, None).unwrap();
    let (one_go, _) = load(whole.path());
    assert_eq!(
        parted["labels"].to_vec1::<u32>().unwrap(),
        one_go["labels"].to_vec1::<u32>().unwrap()
    );
    let (a, b) = (values(&parted["features"]), values(&one_go["features"]));
    assert_close(&a, &b, 1e-3, "parted vs one go");
}
