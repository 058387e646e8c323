//! Training the top model: outputs, the cache, augmented views, interruption and resume,
//! k-fold cross-validation.

mod top_fixture;

use candle_core::Device;
use models::{Architecture, ModelSpec};
use stage::StageOutcome;
use testkit::fixtures::load;
use testkit::{bytes, listing};
use top_fixture::{Fixture, extract_features, top_options};
use train_top::KFoldOptions;

fn trained(outcome: &StageOutcome) -> &stage::Metrics {
    match outcome {
        StageOutcome::Trained(m) => m,
        other => panic!("expected a trained model, got {other:?}"),
    }
}

#[test]
fn trains_writes_a_complete_model_folder_and_caches_it() {
    let f = Fixture::new();
    let p = f.pipeline(&[]);
    extract_features(&p, &f.weights, false);
    let report = train_top::train_top(&p, &top_options()).unwrap();
    let m = trained(&report.outcome);
    assert_eq!((m.train_samples, m.validation_samples), (12, 6));
    assert_eq!(m.summary.final_epoch.epoch, 3);
    assert_eq!(m.status, "completed");
    assert_eq!(m.classes, ["cats", "dogs"]);
    let best = m.summary.best.unwrap();
    assert_eq!(best.metric, engine::Metric::ValAcc);
    assert_eq!(m.summary.saved_epoch, best.epoch);
    assert!((m.summary.saved_val_acc - best.value).abs() < 1e-12);
    assert_eq!(
        m.summary.confusion_matrix.iter().flatten().sum::<usize>(),
        6
    );

    let top = f.artifacts.join("top");
    assert_eq!(
        listing(&top),
        [
            "checkpoints/best.safetensors",
            "checkpoints/last.safetensors",
            "curves.png",
            "history.csv",
            "history.json",
            "metrics.json",
            "model.safetensors"
        ]
    );
    let (t, meta) = load(&top.join("model.safetensors"));
    assert_eq!(t["top.dense1.weight"].dims(), [256, 1024]);
    assert_eq!(t["top.dense2.weight"].dims(), [1, 256]);
    let spec = ModelSpec::from_metadata(&meta, &top.join("model.safetensors")).unwrap();
    assert_eq!(spec.architecture, Architecture::Top);
    assert_eq!(spec.classes, ["cats", "dogs"]);
    assert_eq!(spec.target_size, (64, 48));
    assert_eq!(spec.preprocessing, imagedata::Preprocessing::imagenet());
    let backbone = spec.backbone.as_ref().unwrap();
    assert_eq!(backbone.kind, models::BackboneKind::Vgg16);
    assert_eq!(backbone.sha256, artifact::sha256_file(&f.weights).unwrap());
    // The model records the resize filter of its images.
    assert_eq!(meta["data.interpolation"], "\"nearest\"");
    let prov = artifact::Provenance::from_metadata(&meta).unwrap();
    assert_eq!(prov.stage, "train-top");
    // The saved weights are the best epoch's: the same as the engine's keep-best file.
    let (best_t, _) = load(&top.join("checkpoints/best.safetensors"));
    assert_eq!(
        bytes(&best_t["top.dense1.weight"]),
        bytes(&t["top.dense1.weight"])
    );
    let history = std::fs::read_to_string(top.join("history.csv")).unwrap();
    assert_eq!(history.lines().count(), 4);

    // Nothing changed: up to date, with the stored metrics.
    let again = train_top::train_top(&p, &top_options()).unwrap();
    assert_eq!(again.outcome, StageOutcome::UpToDate(Some(m.clone())));

    // Another [top] setting retrains; the kfold count does not matter to the model.
    let kfold = f.pipeline(&["top.kfold=4"]);
    assert!(matches!(
        train_top::train_top(&kfold, &top_options())
            .unwrap()
            .outcome,
        StageOutcome::UpToDate(_)
    ));
    let longer = f.pipeline(&["top.epochs=4"]);
    let m4 = train_top::train_top(&longer, &top_options()).unwrap();
    assert_eq!(trained(&m4.outcome).summary.final_epoch.epoch, 4);

    // Features written again (even identical ones) retrain the model.
    extract_features(&longer, &f.weights, true);
    assert!(matches!(
        train_top::train_top(&longer, &top_options())
            .unwrap()
            .outcome,
        StageOutcome::Trained(_)
    ));
    // --force retrains, reproducibly.
    let mut force = top_options();
    force.stage.force = true;
    let before = load(&top.join("model.safetensors")).0;
    train_top::train_top(&longer, &force).unwrap();
    let after = load(&top.join("model.safetensors")).0;
    assert_eq!(
        bytes(&before["top.dense1.weight"]),
        bytes(&after["top.dense1.weight"])
    );
}

#[test]
fn an_interrupted_run_writes_no_model_and_resumes_to_the_same_weights() {
    let f = Fixture::new();
    let p = f.pipeline(&[]);
    extract_features(&p, &f.weights, false);
    let model = f.artifacts.join("top/model.safetensors");

    let stop = engine::Interrupt::new();
    stop.trigger();
    let mut o = top_options();
    o.stage.interrupt = Some(stop);
    let r = train_top::train_top(&p, &o).unwrap();
    assert_eq!(r.outcome, StageOutcome::Interrupted { epoch: 1, batch: 1 });
    assert!(!model.exists());
    let mut resume = top_options();
    resume.stage.resume = true;
    trained(&train_top::train_top(&p, &resume).unwrap().outcome);
    let resumed = load(&model).0;

    let mut force = top_options();
    force.stage.force = true;
    trained(&train_top::train_top(&p, &force).unwrap().outcome);
    let straight = load(&model).0;
    for name in ["top.dense1.weight", "top.dense2.bias"] {
        assert_eq!(bytes(&resumed[name]), bytes(&straight[name]), "{name}");
    }
}

#[test]
fn augmented_views_train_one_view_per_image_per_epoch() {
    let f = Fixture::new();
    let plain = f.pipeline(&[]);
    extract_features(&plain, &f.weights, false);
    let mut o = top_options();
    o.use_augmented = true;
    let err = train_top::train_top(&plain, &o).unwrap_err().to_string();
    assert!(err.contains("bottleneck.augmented_views"), "{err}");

    let p = f.pipeline(&["bottleneck.augmented_views=2"]);
    // Views not extracted yet.
    let err = train_top::train_top(&p, &o).unwrap_err().to_string();
    assert!(
        err.contains("train_augmented.safetensors") && err.contains("just extract-bottlenecks"),
        "{err}"
    );
    extract_features(&p, &f.weights, false);
    let r = train_top::train_top(&p, &o).unwrap();
    let m = trained(&r.outcome);
    assert_eq!(m.details["use_augmented"], serde_json::json!(true));
    assert_eq!(m.train_samples, 12, "one view per image per epoch");
    // The plain model is another model: switching back retrains.
    assert!(matches!(
        train_top::train_top(&p, &top_options()).unwrap().outcome,
        StageOutcome::Trained(_)
    ));
}

#[test]
fn kfold_reports_every_fold_and_caches_the_report() {
    let f = Fixture::new();
    let p = f.pipeline(&["top.epochs=2"]);
    extract_features(&p, &f.weights, false);
    let options = KFoldOptions {
        k: 3,
        force: false,
        device: Device::Cpu,
        interrupt: None,
    };
    let mut seen = Vec::new();
    let (report, up_to_date) =
        train_top::run_kfold(&p, &options, &mut |r| seen.push(r.fold)).unwrap();
    assert!(!up_to_date);
    assert_eq!(seen, [1, 2, 3]);
    assert_eq!(report.samples, 18);
    assert_eq!(report.folds.len(), 3);
    assert_eq!(
        report
            .folds
            .iter()
            .map(|r| r.validation_samples)
            .sum::<usize>(),
        18
    );
    for r in &report.folds {
        assert_eq!(r.train_samples + r.validation_samples, 18);
        assert_eq!(r.epochs, 2);
        assert!((0.0..=1.0).contains(&r.acc));
        assert!(r.best_acc >= r.acc);
    }
    let mean = report.folds.iter().map(|r| r.acc).sum::<f64>() / 3.0;
    assert!((report.mean_acc - mean).abs() < 1e-12);
    let path = f.artifacts.join("top/kfold.json");
    let stored: stage::KFoldReport =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(stored, report);
    assert!(f.artifacts.join("top/kfold/fold-3/history.csv").exists());
    assert!(f.artifacts.join("top/kfold/fold-1/curves.png").exists());

    let (again, up_to_date) = train_top::run_kfold(&p, &options, &mut |_| {}).unwrap();
    assert!(up_to_date);
    assert_eq!(again, report);
    let four = KFoldOptions {
        k: 4,
        ..options.clone()
    };
    let (r4, up_to_date) = train_top::run_kfold(&p, &four, &mut |_| {}).unwrap();
    assert!(!up_to_date);
    assert_eq!(r4.folds.len(), 4);
    // More folds than a class has images is refused.
    let ten = KFoldOptions { k: 10, ..options };
    let err = train_top::run_kfold(&p, &ten, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("fewer than the 10 folds"), "{err}");
}
