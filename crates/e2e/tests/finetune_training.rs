//! The stage end to end on a tiny real-photo fixture: outputs, the model artifact as
//! `classify` loads it, freshness, live mode, and interruption and resume.

mod finetune_fixture;

use candle_core::{DType, Device, Tensor};
use finetune::{CacheKind, CacheOutcome, TrainingMode};
use finetune_fixture::{Fixture, options, trained};
use imagedata::{Limits, load_resized};
use models::{Architecture, Backbone, ModelSpec, Network, Vgg16, load_from_spec};
use stage::StageOutcome;
use testkit::fixtures::load;
use testkit::{bits, listing};

/// The names of the trainable parameters: block 5 and the top, nothing else.
const TRAINED: [&str; 10] = [
    "features.24.bias",
    "features.24.weight",
    "features.26.bias",
    "features.26.weight",
    "features.28.bias",
    "features.28.weight",
    "top.dense1.bias",
    "top.dense1.weight",
    "top.dense2.bias",
    "top.dense2.weight",
];

#[test]
fn view_cache_run_writes_a_complete_model_that_classify_can_load() {
    let Some(f) = Fixture::new("view_cache_run_writes_a_complete_model_that_classify_can_load")
    else {
        return;
    };
    let p = f.pipeline(&[]);
    f.train_top(&p);
    let report = finetune::finetune(&p, &options()).unwrap();
    assert_eq!(report.mode, TrainingMode::ViewCache);
    let m = trained(&report.outcome).clone();
    assert_eq!((m.train_samples, m.validation_samples), (12, 6));
    assert_eq!((m.epochs, m.summary.final_epoch.epoch), (2, 2));
    assert_eq!(m.details["views"], serde_json::json!(3));
    assert_eq!(m.details["mode"], serde_json::json!("view_cache"));
    assert_eq!(m.status, "completed");
    assert_eq!(m.summary.best.unwrap().metric, engine::Metric::ValAcc);
    let timing = m.timing.clone().unwrap();
    assert!(timing.seconds_per_epoch > 0.0 && timing.train_samples_per_second > 0.0);
    assert!(m.details["cache_seconds"].as_f64().unwrap() > 0.0);
    let kinds: Vec<_> = report.caches.iter().map(|c| (c.kind, c.rows)).collect();
    assert_eq!(kinds, [(CacheKind::Validation, 6), (CacheKind::Views, 36)]);
    assert!(
        report
            .caches
            .iter()
            .all(|c| matches!(c.outcome, CacheOutcome::Built(_)))
    );

    let dir = f.artifacts.join("finetune");
    assert_eq!(
        listing(&dir),
        [
            "checkpoints/best.safetensors",
            "checkpoints/last.safetensors",
            "curves.png",
            "history.csv",
            "history.json",
            "metrics.json",
            "model.safetensors",
            "validation_frozen.safetensors",
            "views.safetensors",
        ]
    );
    let (views, _) = load(&dir.join("views.safetensors"));
    assert_eq!(views["features"].dims(), [36, 512, 2, 2]);
    assert_eq!(views["features"].dtype(), DType::F16);
    assert_eq!(
        views["labels"].to_vec1::<u32>().unwrap(),
        [[0u32; 18], [1; 18]].concat()
    );

    // The model holds block 5 and the top only: the frozen blocks are neither saved nor
    // trained, and the optimizer kept no state for them.
    let model_path = dir.join("model.safetensors");
    let (tensors, meta) = load(&model_path);
    assert_eq!(
        tensors.keys().map(String::as_str).collect::<Vec<_>>(),
        TRAINED
    );
    let (checkpoint, _) = load(&dir.join("checkpoints/last.safetensors"));
    for name in checkpoint.keys() {
        let param = name
            .strip_prefix("param/")
            .or_else(|| name.strip_prefix("optimizer/"))
            .unwrap_or(name);
        assert!(
            TRAINED.iter().any(|t| param.starts_with(t)),
            "checkpoint entry `{name}` is not about a trained parameter"
        );
    }
    let spec = ModelSpec::from_metadata(&meta, &model_path).unwrap();
    assert_eq!(spec.architecture, Architecture::Finetune);
    assert_eq!(spec.classes, ["cats", "dogs"]);
    assert_eq!(spec.target_size, (32, 32));
    let prov = artifact::Provenance::from_metadata(&meta).unwrap();
    assert_eq!(prov.stage, "finetune");
    assert_eq!(
        prov.inputs.keys().collect::<Vec<_>>(),
        ["top_model", "train_data", "validation_data", "weights"]
    );
    // The saved weights are the best epoch's.
    let (best, _) = load(&dir.join("checkpoints/best.safetensors"));
    for name in TRAINED {
        assert_eq!(bits(&best[name]), bits(&tensors[name]), "{name}");
    }

    // Rebuilt from its artifact on the conv base, as `classify` does, the model scores the raw
    // validation images as training scored their cached block-4 outputs.
    let vgg = Vgg16::load(&f.weights, &Device::Cpu).unwrap();
    let (model, _) = load_from_spec(
        &spec,
        &tensors,
        &model_path,
        Some(&Backbone::Vgg16(vgg.clone())),
        &Device::Cpu,
    )
    .unwrap();
    let mut correct = 0;
    let mut count = 0;
    for (label, class) in ["cats", "dogs"].iter().enumerate() {
        for entry in std::fs::read_dir(f.data.join("validation").join(class)).unwrap() {
            let img = load_resized(
                &entry.unwrap().path(),
                imagedata::TargetSize::new(32, 32),
                imagedata::Interpolation::Nearest,
                &Limits::default(),
            )
            .unwrap();
            let mut x = vec![0f32; 3 * 32 * 32];
            imagedata::ImageDataGenerator::preprocessing_only(spec.preprocessing)
                .standardize_into(img.as_raw(), &mut x);
            let x = Tensor::from_vec(x, (1, 3, 32, 32), &Device::Cpu).unwrap();
            let p = model.predict_proba(&x).unwrap().to_vec2::<f32>().unwrap();
            correct += usize::from((p[0][1] > 0.5) == (label == 1));
            count += 1;
        }
    }
    assert_eq!(count, 6);
    assert!(
        (correct as f64 / 6.0 - m.summary.saved_val_acc).abs() < 1e-9,
        "raw images: {correct}/6, cached features: {}",
        m.summary.saved_val_acc
    );

    // Nothing changed: up to date, with the stored metrics.
    let again = finetune::finetune(&p, &options()).unwrap();
    assert_eq!(again.outcome, StageOutcome::UpToDate(Some(m.clone())));
    assert!(again.caches.is_empty());

    // Another view count rebuilds the view cache (not the validation cache) and retrains.
    let more = f.pipeline(&["finetune.views=2"]);
    let r = finetune::finetune(&more, &options()).unwrap();
    assert_eq!(r.caches[0].outcome, CacheOutcome::UpToDate);
    assert_eq!(r.caches[1].reason.as_deref(), Some("settings changed"));
    assert_eq!(trained(&r.outcome).details["views"], serde_json::json!(2));
    let (views, _) = load(&dir.join("views.safetensors"));
    assert_eq!(views["features"].dims(), [24, 512, 2, 2]);
}

#[test]
fn live_mode_trains_without_a_view_cache() {
    let Some(f) = Fixture::new("live_mode_trains_without_a_view_cache") else {
        return;
    };
    let p = f.pipeline(&["finetune.epochs=1"]);
    f.train_top(&p);
    let mut o = options();
    o.live = true;
    let report = finetune::finetune(&p, &o).unwrap();
    assert_eq!(report.mode, TrainingMode::Live);
    let m = trained(&report.outcome);
    assert_eq!(
        (&m.details["mode"], &m.details["views"], m.train_samples),
        (&serde_json::json!("live"), &serde_json::Value::Null, 12)
    );
    assert_eq!(report.caches.len(), 1, "only the validation cache");
    let dir = f.artifacts.join("finetune");
    assert!(!dir.join("views.safetensors").exists());
    assert!(dir.join("model.safetensors").exists());

    // The pipeline switch means the same as the flag; the view-cache model is another one.
    let switched = f.pipeline(&["finetune.epochs=1", "finetune.view_cache=false"]);
    let r = finetune::finetune(&switched, &options()).unwrap();
    assert!(matches!(r.outcome, StageOutcome::UpToDate(_)));
    let r = finetune::finetune(&p, &options()).unwrap();
    assert_eq!(
        trained(&r.outcome).details["mode"],
        serde_json::json!("view_cache")
    );
}

#[test]
fn resume_equals_an_uninterrupted_run() {
    let Some(f) = Fixture::new("resume_equals_an_uninterrupted_run") else {
        return;
    };
    let p = f.pipeline(&[]);
    f.train_top(&p);
    let dir = f.artifacts.join("finetune");
    let whole = finetune::finetune(&p, &options()).unwrap();
    let whole_metrics = trained(&whole.outcome).clone();
    let (whole_model, _) = load(&dir.join("model.safetensors"));
    let whole_figures = figures(&dir);

    // Interrupted after the first batch (the caches are up to date, so training starts at
    // once), then resumed.
    let mut o = options();
    o.stage.force = true;
    let interrupt = engine::Interrupt::new();
    interrupt.trigger();
    o.stage.interrupt = Some(interrupt);
    let stopped = finetune::finetune(&p, &o).unwrap();
    assert_eq!(
        stopped.outcome,
        StageOutcome::Interrupted { epoch: 1, batch: 1 }
    );

    // Resuming with other settings is refused; the epoch count may change.
    let mut resume = options();
    resume.stage.resume = true;
    let other = f.pipeline(&["finetune.batch_size=3"]);
    let err = finetune::finetune(&other, &resume).unwrap_err().to_string();
    assert!(
        err.contains("last.safetensors")
            && err.contains("settings changed")
            && err.contains("`batch_size` was 4, now 3"),
        "{err}"
    );
    let mut live = resume.clone();
    live.live = true;
    let err = finetune::finetune(&p, &live).unwrap_err().to_string();
    assert!(
        err.contains(r#"`mode` was "view_cache", now "live""#),
        "{err}"
    );

    let resumed = finetune::finetune(&p, &resume).unwrap();
    let resumed_metrics = trained(&resumed.outcome);
    let (resumed_model, _) = load(&dir.join("model.safetensors"));
    for name in whole_model.keys() {
        assert_eq!(
            bits(&whole_model[name]),
            bits(&resumed_model[name]),
            "{name} differs after resuming"
        );
    }
    assert_eq!(figures(&dir), whole_figures);
    assert_eq!(resumed_metrics.epochs, 2);
    let (r, w) = (&resumed_metrics.summary, &whole_metrics.summary);
    assert_eq!(r.saved_epoch, w.saved_epoch);
    assert_eq!(r.saved_val_acc, w.saved_val_acc);
    assert_eq!(r.saved_val_loss, w.saved_val_loss);
}

/// Every epoch's loss, accuracy, validation loss and validation accuracy in `history.json`.
fn figures(dir: &std::path::Path) -> Vec<[Option<f64>; 4]> {
    let history: engine::History =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    history
        .epochs
        .iter()
        .map(|e| [Some(e.loss), Some(e.acc), e.val_loss, e.val_acc])
        .collect()
}
