//! Integration on real Kaggle photos from `$LITTLEDATA_SHARED/data/dogs-vs-cats/train`.

use imagedata::{
    AugmentConfig, ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, Interpolation,
    Limits, Preprocessing, TargetSize, load_rgb,
};

#[test]
fn flow_from_directory_on_real_photos() {
    let Some(shared) = testkit::shared_dir("flow_from_directory_on_real_photos") else {
        return;
    };
    let train = testkit::kaggle_photos(&shared);
    let dir = tempfile::tempdir().unwrap();
    for (class, prefix) in [("cats", "cat"), ("dogs", "dog")] {
        std::fs::create_dir_all(dir.path().join(class)).unwrap();
        for i in 0..4 {
            let name = format!("{prefix}.{i}.jpg");
            std::fs::copy(train.join(&name), dir.path().join(class).join(&name)).unwrap();
        }
    }
    let directory = DirectoryOptions {
        target_size: TargetSize::new(150, 150),
        class_mode: ClassMode::Binary,
        ..Default::default()
    };
    let options = FlowOptions {
        batch_size: 4,
        shuffle: false,
        seed: 1,
        ..Default::default()
    };
    let plain = ImageDataGenerator::preprocessing_only(Preprocessing::rescale(1.0 / 255.0));
    let (flow, report) = plain
        .flow_from_directory(dir.path(), &directory, options.clone(), None)
        .unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(flow.classes(), ["cats", "dogs"]);
    let batches: Vec<_> = flow.epoch(0).map(Result::unwrap).collect();
    assert_eq!(batches.len(), 2);
    for (k, b) in batches.iter().enumerate() {
        assert_eq!(b.images.dims(), &[4, 3, 150, 150]);
        assert_eq!(
            b.labels.as_ref().unwrap().to_vec1::<u32>().unwrap(),
            vec![k as u32; 4]
        );
        let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!((0.15..0.85).contains(&mean), "mean {mean}");
    }

    // The cache holds the nearest-neighbour resize of the decoded photo, pixel for pixel.
    let original = load_rgb(&dir.path().join("cats/cat.0.jpg"), &Limits::default()).unwrap();
    let cached = flow.image_set().image(0);
    let (w, h) = original.dimensions();
    assert!(w > 150 && h > 150, "the photo is larger than the target");
    for (y, x) in [(0u32, 0u32), (75, 75), (149, 149), (10, 140), (133, 7)] {
        let sx = ((f64::from(x) + 0.5) * f64::from(w) / 150.0) as u32;
        let sy = ((f64::from(y) + 0.5) * f64::from(h) / 150.0) as u32;
        assert_eq!(
            cached.get_pixel(x, y),
            original.get_pixel(sx, sy),
            "at ({y}, {x})"
        );
    }

    // The post's augmentation changes the images but keeps shapes and ranges; ImageNet
    // preprocessing centres them.
    let augmented =
        ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::imagenet()).unwrap();
    let (aflow, _) = augmented
        .flow_from_directory(
            dir.path(),
            &DirectoryOptions {
                interpolation: Interpolation::Bilinear,
                ..directory
            },
            options,
            None,
        )
        .unwrap();
    let b = aflow.batch(0, 0).unwrap();
    assert_eq!(b.images.dims(), &[4, 3, 150, 150]);
    let v: Vec<f32> = b.images.flatten_all().unwrap().to_vec1().unwrap();
    assert!(v.iter().all(|x| (-2.2..=2.7).contains(x)));
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    assert!(mean.abs() < 1.0, "mean {mean}");
    let back = imagedata::batch_to_images(&b.images, &augmented.preprocessing).unwrap();
    let unaugmented = flow.image_set().image(b.indices[0]);
    assert_ne!(back[0], unaugmented);
}
