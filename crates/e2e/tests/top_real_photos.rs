//! The whole method on a tiny real-photo fixture: 20 + 20 training and 10 + 10 validation
//! Kaggle photos at 150×150, the real ImageNet VGG16 weights, bottleneck features, a top
//! model. It must beat chance clearly, and the saved model, rebuilt from its artifact on top of
//! the conv base, must classify raw images exactly as it classified their features.

mod top_fixture;

use candle_core::Device;
use imagedata::{Interpolation, TargetSize, load_resized};
use models::{Backbone, ModelSpec, Network, Vgg16, load_from_spec};
use stage::StageOutcome;
use testkit::fixtures::{load, synthetic_pipeline};
use testkit::{link_cats_and_dogs, max_abs_diff, shared_dir, shared_weights};
use top_fixture::{extract_features, top_options};

#[test]
fn a_top_model_on_real_photos_beats_chance_and_classifies_raw_images() {
    let Some(shared) =
        shared_dir("a_top_model_on_real_photos_beats_chance_and_classifies_raw_images")
    else {
        return;
    };
    let weights = shared_weights(&shared);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    link_cats_and_dogs(&shared, &data, 0..20, 1000..1010);
    let artifacts = dir.path().join("artifacts");
    let p = synthetic_pipeline(
        &data,
        &artifacts,
        &[
            "bottleneck.target_size=[150, 150]",
            "bottleneck.batch_size=8",
            "top.epochs=15",
            "top.batch_size=8",
        ],
    );
    let started = std::time::Instant::now();
    let report = extract_features(&p, &weights, false);
    let (rows, seconds) = report.computed();
    eprintln!(
        "extracted {rows} real photos in {seconds:.1} s ({:.2} images/s)",
        rows as f64 / seconds
    );
    let (features, _) = load(&artifacts.join("bottleneck/train.safetensors"));
    assert_eq!(features["features"].dims(), [40, 512, 4, 4]);

    let r = train_top::train_top(&p, &top_options()).unwrap();
    let StageOutcome::Trained(m) = &r.outcome else {
        panic!("expected a trained model, got {:?}", r.outcome);
    };
    eprintln!(
        "top model: val_acc {:.3} (epoch {}), final epoch {}; {:.1} s in all",
        m.summary.saved_val_acc,
        m.summary.saved_epoch,
        m.summary.final_epoch.metrics_line(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        m.summary.saved_val_acc >= 0.85,
        "validation accuracy {} is not clearly above chance (0.5)",
        m.summary.saved_val_acc
    );
    let last = &m.summary.final_epoch;
    assert!(last.val_acc.unwrap() >= 0.8, "{last:?}");

    // The artifact alone (spec + weights) on top of the conv base classifies raw photos as the
    // top model classified their cached features.
    let model_path = r.model.clone();
    let (tensors, meta) = load(&model_path);
    let spec = ModelSpec::from_metadata(&meta, &model_path).unwrap();
    let vgg = Backbone::Vgg16(Vgg16::load(&weights, &Device::Cpu).unwrap());
    let (classifier, _) =
        load_from_spec(&spec, &tensors, &model_path, Some(&vgg), &Device::Cpu).unwrap();
    let files: Vec<_> = ["cats/cat.1003.jpg", "dogs/dog.1007.jpg"]
        .iter()
        .map(|f| data.join("validation").join(f))
        .collect();
    let images: Vec<_> = files
        .iter()
        .map(|f| {
            load_resized(
                f,
                TargetSize::new(150, 150),
                Interpolation::Nearest,
                &Default::default(),
            )
            .unwrap()
        })
        .collect();
    let x = imagedata::images_to_tensor(&images, &spec.preprocessing, &Device::Cpu).unwrap();
    let from_images = classifier.predict_proba(&x).unwrap();
    let (val, _) = load(&artifacts.join("bottleneck/validation.safetensors"));
    let rows = candle_core::Tensor::new(&[3u32, 17], &Device::Cpu).unwrap();
    let cached = val["features"].index_select(&rows, 0).unwrap();
    let top = match &classifier {
        models::Model::Pretrained(c) => match c.head() {
            models::Head::Top(t) => t.clone(),
            other => panic!("expected a top head, got {other:?}"),
        },
        other => panic!("expected a model on a backbone, got {other:?}"),
    };
    let from_features = top.predict_proba(&cached).unwrap();
    let diff = max_abs_diff(&from_images, &from_features);
    assert!(
        diff < 1e-4,
        "raw-image and cached-feature probabilities differ by {diff}"
    );
}
