//! `train-small` end to end on tiny synthetic image folders.

mod common;

use common::*;
use std::path::Path;

fn pipeline_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn bright_versus_dark_trains_writes_every_artifact_and_reruns_as_up_to_date() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_data(&root.join("data"), &BRIGHT_DARK, 24, 10);
    let p = pipeline_arg(&write_pipeline(root, 4, ""));

    let stdout = run_ok(&["--pipeline", &p]);
    assert!(stdout.contains("Epoch 4/4"), "{stdout}");
    assert!(stdout.contains("training samples/s"), "{stdout}");
    let out = out_dir(root);
    for f in [
        "model.safetensors",
        "metrics.json",
        "history.csv",
        "history.json",
        "curves.png",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
    ] {
        assert!(out.join(f).is_file(), "{f} is missing");
    }
    let csv = std::fs::read_to_string(out.join("history.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.starts_with("epoch,loss,acc,val_loss,val_acc"), "{csv}");

    let m = metrics(root);
    assert_eq!(m["classes"], serde_json::json!(["bright", "dark"]));
    assert_eq!(m["class_mode"], "binary");
    assert_eq!(m["train_samples"], 48);
    assert_eq!(m["validation_samples"], 20);
    assert_eq!(m["epochs"], 4);
    let acc = m["saved_val_acc"].as_f64().unwrap();
    assert!(acc >= 0.95, "validation accuracy {acc}");
    let cm: Vec<Vec<usize>> = serde_json::from_value(m["confusion_matrix"].clone()).unwrap();
    let correct = cm[0][0] + cm[1][1];
    assert_eq!(cm.iter().flatten().sum::<usize>(), 20);
    assert!(
        (correct as f64 / 20.0 - acc).abs() < 1e-9,
        "{cm:?} vs {acc}"
    );
    let timing = &m["timing"];
    assert_eq!(timing["epochs"], 4);
    assert!(timing["train_samples_per_second"].as_f64().unwrap() > 0.0);
    assert!(timing["validation_seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert!(timing["seconds_per_epoch"].as_f64().unwrap() > 0.0);
    assert!(m["device"].as_str().unwrap().starts_with("cpu"));
    // The saved epoch is the best by val_acc.
    let best = m["best"]["value"].as_f64().unwrap();
    assert_eq!(m["best"]["metric"], "val_acc");
    assert_eq!(m["saved_epoch"], m["best"]["epoch"]);
    assert!((best - acc).abs() < 1e-9);

    // The model artifact describes itself.
    let model = out.join("model.safetensors");
    let meta = artifact::read_metadata(&model).unwrap();
    let spec = models::ModelSpec::from_metadata(&meta, &model).unwrap();
    assert_eq!(spec.architecture, models::Architecture::SmallCnn);
    assert_eq!(spec.classes, ["bright", "dark"]);
    assert_eq!(spec.target_size, (32, 32));
    assert_eq!(spec.units, 1);
    assert_eq!(
        spec.preprocessing,
        imagedata::Preprocessing::rescale(1.0 / 255.0)
    );
    assert_eq!(meta[engine::INTERPOLATION_KEY], "\"nearest\"");
    assert_eq!(meta["littledata.stage"], "train-small");
    let inputs: serde_json::Value = serde_json::from_str(&meta["littledata.inputs"]).unwrap();
    assert!(inputs["train_data"].is_string() && inputs["validation_data"].is_string());
    // It holds the best checkpoint's weights.
    let weights = tensors(&model);
    assert_eq!(weights, tensors(&out.join("checkpoints/best.safetensors")));
    assert_eq!(weights["dense2.weight"].len(), 64);

    // Nothing changed: up to date, nothing rewritten.
    let modified = std::fs::metadata(&model).unwrap().modified().unwrap();
    let stdout = run_ok(&["--pipeline", &p]);
    assert!(stdout.contains("up to date"), "{stdout}");
    assert!(!stdout.contains("Epoch 1/"), "{stdout}");
    assert_eq!(
        std::fs::metadata(&model).unwrap().modified().unwrap(),
        modified
    );

    // --force trains again, to the same weights (same seed, same build).
    let stdout = run_ok(&["--pipeline", &p, "--force"]);
    assert!(
        stdout.contains("--force") && stdout.contains("Epoch 4/4"),
        "{stdout}"
    );
    assert_eq!(tensors(&model), weights);

    // A changed image makes the model stale.
    write_image(
        &root.join("data/validation/dark/000.png"),
        [5, 5, 5],
        60,
        99,
    );
    let stdout = run_ok(&["--pipeline", &p, "--set", "small_cnn.epochs=1"]);
    assert!(stdout.contains("Epoch 1/1"), "{stdout}");
}

#[test]
fn resuming_a_shorter_run_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_data(&root.join("data"), &BRIGHT_DARK, 12, 6);
    let p = pipeline_arg(&write_pipeline(root, 3, ""));
    let straight = root.join("straight");
    let resumed = root.join("resumed");
    let art = |d: &Path| format!("data.artifacts={:?}", d.display().to_string());

    run_ok(&["--pipeline", &p, "--set", &art(&straight)]);
    let stdout = run_ok(&[
        "--pipeline",
        &p,
        "--set",
        &art(&resumed),
        "--set",
        "small_cnn.epochs=2",
    ]);
    assert!(stdout.contains("Epoch 2/2"), "{stdout}");
    let stdout = run_ok(&["--pipeline", &p, "--set", &art(&resumed), "--resume"]);
    assert!(stdout.contains("Resuming from"), "{stdout}");
    assert!(
        stdout.contains("Epoch 3/3") && !stdout.contains("Epoch 2/3"),
        "{stdout}"
    );

    let a = straight.join("small_cnn");
    let b = resumed.join("small_cnn");
    for f in [
        "model.safetensors",
        "checkpoints/last.safetensors",
        "checkpoints/best.safetensors",
    ] {
        assert_eq!(tensors(&a.join(f)), tensors(&b.join(f)), "{f}");
    }
    assert_eq!(history_figures(&a).len(), 3);
    assert_eq!(history_figures(&a), history_figures(&b));
}

#[test]
fn three_classes_train_end_to_end_with_softmax() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_data(&root.join("data"), &RGB, 16, 8);
    let p = pipeline_arg(&write_pipeline(root, 4, ""));
    run_ok(&["--pipeline", &p]);
    let m = metrics(root);
    assert_eq!(m["classes"], serde_json::json!(["blue", "green", "red"]));
    assert_eq!(m["class_mode"], "categorical");
    let cm: Vec<Vec<usize>> = serde_json::from_value(m["confusion_matrix"].clone()).unwrap();
    assert_eq!(cm.len(), 3);
    assert!(
        cm.iter()
            .all(|r| r.len() == 3 && r.iter().sum::<usize>() == 8),
        "{cm:?}"
    );
    let acc = m["saved_val_acc"].as_f64().unwrap();
    assert!(acc >= 0.9, "validation accuracy {acc}, {cm:?}");

    let model = out_dir(root).join("model.safetensors");
    let meta = artifact::read_metadata(&model).unwrap();
    let spec = models::ModelSpec::from_metadata(&meta, &model).unwrap();
    assert_eq!(spec.units, 3);
    assert_eq!(tensors(&model)["dense2.weight"].len(), 3 * 64);

    // `binary` cannot describe three classes.
    let err = run_err(&["--pipeline", &p, "--set", "data.class_mode=binary"]);
    assert!(
        err.contains("exactly 2 classes") && err.contains("blue, green, red"),
        "{err}"
    );
}
