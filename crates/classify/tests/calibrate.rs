//! `classify calibrate` on the hand-set model, whose logits are known in closed form: the
//! temperature it stores is the NLL minimum computed here independently, `predict`,
//! `evaluate` and the library apply it (and `--uncalibrated` does not), the accuracy is
//! unchanged, reruns are cached, and a calibration of another model file is not applied.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use engine::calibration::{fit_temperature, softmax_logits};

/// Dark images 0, 10, …, 110 plus two mislabelled bright ones (140, 150); bright images
/// 250, 240, …, 140 plus two mislabelled dark ones (100, 115). Returns the labelled folder
/// and every (level, label) pair (0 = bright, 1 = dark).
fn write_data(dir: &Path) -> (PathBuf, Vec<(u8, u32)>) {
    let mut levels = Vec::new();
    for v in (0..=110).step_by(10).chain([140, 150]) {
        write_uniform(&dir.join("dark").join(format!("{v:03}.png")), v as u8);
        levels.push((v as u8, 1));
    }
    for v in (140..=250).step_by(10).chain([100, 115]) {
        write_uniform(&dir.join("bright").join(format!("{v:03}.png")), v as u8);
        levels.push((v as u8, 0));
    }
    (dir.to_path_buf(), levels)
}

/// Runs `classify calibrate` of the model folder `model` on `data` with `seed`; returns stdout.
fn calibrate(model: &str, data: &str, seed: &str) -> String {
    run_ok(&[
        "calibrate",
        "--model",
        model,
        "--data",
        data,
        "--seed",
        seed,
        "--device",
        "cpu",
    ])
}

/// The probability printed by `predict` for one image: `path: class (0.1234)`.
fn printed_probability(line: &str) -> f64 {
    let line = line.trim();
    let open = line.rfind('(').unwrap();
    line[open + 1..line.len() - 1].parse().unwrap()
}

#[test]
fn the_stored_temperature_is_the_nll_minimum_and_every_command_applies_it() {
    let root = tempfile::tempdir().unwrap();
    let (data, levels) = write_data(&root.path().join("validation"));
    let model = write_brightness_model(&root.path().join("model"));
    let model_dir = model.parent().unwrap().to_str().unwrap().to_string();
    let data_arg = data.to_str().unwrap();

    let out = calibrate(&model_dir, data_arg, "3");
    assert!(
        out.contains("wrote") && out.contains("calibration.safetensors"),
        "{out}"
    );

    // The independent fit on the closed-form logits.
    let logits: Vec<Vec<f32>> = levels.iter().map(|&(v, _)| vec![logit(v) as f32]).collect();
    let labels: Vec<u32> = levels.iter().map(|&(_, y)| y).collect();
    let t = fit_temperature(&softmax_logits(&logits), &labels);
    assert!(t < 1.0, "the hand-set model is underconfident: {t}");
    let file = model.parent().unwrap().join("calibration.safetensors");
    let stored = classify::Calibration::read(&file).unwrap();
    assert!(
        (stored.temperature - t).abs() < 1e-4 * t,
        "{} vs {t}",
        stored.temperature
    );
    assert_eq!(stored.samples, levels.len());
    assert!((stored.accuracy - 24.0 / 28.0).abs() < 1e-12);
    assert_eq!(stored.bins, 15);
    assert_eq!(stored.reliability_before.len(), 15);
    assert_eq!(
        stored
            .reliability_after
            .iter()
            .map(|b| b.count)
            .sum::<usize>(),
        levels.len()
    );
    assert_eq!(stored.model_sha256, artifact::sha256_file(&model).unwrap());
    assert!(stored.ece_before > 0.0 && stored.nll_after.is_finite());
    // Each half's own fit differs from the whole set's but is of the same kind.
    assert!(stored.fold_temperatures.iter().all(|&f| f > 0.0 && f < 1.0));

    // A rerun finds it up to date, and writes nothing.
    let before = std::fs::read(&file).unwrap();
    let out = calibrate(&model_dir, data_arg, "3");
    assert!(out.trim_end().ends_with("up to date"), "{out}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // predict applies it; --uncalibrated does not.
    let image = data.join("dark").join("040.png");
    let image_arg = image.to_str().unwrap();
    let line = run_ok(&["predict", "--model", &model_dir, image_arg]);
    let calibrated = sigmoid(logit(40) / t);
    assert!(
        (printed_probability(&line) - calibrated).abs() < 1e-4,
        "{line} vs {calibrated}"
    );
    let line = run_ok(&[
        "predict",
        "--model",
        &model_dir,
        "--uncalibrated",
        image_arg,
    ]);
    assert!(
        (printed_probability(&line) - sigmoid(logit(40))).abs() < 1e-4,
        "{line}"
    );

    // So does the library.
    let classifier = classify::Classifier::load(model.parent().unwrap()).unwrap();
    let scores = classifier.predict_file(&image).unwrap();
    assert!((f64::from(scores.probabilities[1]) - calibrated).abs() < 1e-5);

    // evaluate: the same accuracy, the calibrated loss, the temperature recorded.
    let json = root.path().join("eval.json");
    let json_arg = json.to_str().unwrap();
    let eval = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["evaluate", "--model", &model_dir, "--data", data_arg];
        args.extend(extra);
        run_ok(&args);
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
    };
    let with = eval(&["--json", json_arg]);
    let without = eval(&["--json", json_arg, "--uncalibrated"]);
    assert_eq!(with["accuracy"], without["accuracy"]);
    assert!((with["temperature"].as_f64().unwrap() - stored.temperature).abs() < 1e-12);
    assert!(without.get("temperature").is_none());
    assert!(with["loss"].as_f64().unwrap() < without["loss"].as_f64().unwrap());
    // The stored report is reused only for the same calibration.
    let out = run_ok(&[
        "evaluate", "--model", &model_dir, "--data", data_arg, "--json", json_arg,
    ]);
    assert!(
        !out.contains("up to date"),
        "the stored report was uncalibrated: {out}"
    );
    let out = run_ok(&[
        "evaluate", "--model", &model_dir, "--data", data_arg, "--json", json_arg,
    ]);
    assert!(out.trim_end().ends_with("up to date"), "{out}");
    calibrate(&model_dir, data_arg, "4");
    assert_ne!(
        std::fs::read(&file).unwrap(),
        before,
        "other halves, another file"
    );
    let out = run_ok(&[
        "evaluate", "--model", &model_dir, "--data", data_arg, "--json", json_arg,
    ]);
    assert!(
        !out.contains("up to date"),
        "the calibration changed: {out}"
    );
}

#[test]
fn a_calibration_of_another_model_file_is_not_applied() {
    let root = tempfile::tempdir().unwrap();
    let (data, _) = write_data(&root.path().join("validation"));
    let model = write_brightness_model(&root.path().join("model"));
    let model_dir = model.parent().unwrap().to_str().unwrap().to_string();
    calibrate(&model_dir, data.to_str().unwrap(), "42");
    // The model is retrained (here: rewritten with other metadata, so other bytes).
    let mut meta = model_metadata(&brightness_spec());
    meta.insert("note".into(), "retrained".into());
    save(&model, &brightness_weights(), &meta);

    let image = data.join("dark").join("040.png");
    let out = run(
        &["predict", "--model", &model_dir, image.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("uncalibrated") && stderr.contains("another model file"),
        "{stderr}"
    );
    let line = String::from_utf8_lossy(&out.stdout);
    assert!((printed_probability(line.trim()) - sigmoid(logit(40))).abs() < 1e-4);
    let classifier = classify::Classifier::load(model.parent().unwrap()).unwrap();
    assert!(classifier.model().calibration.is_none());
    assert!(classifier.info().calibration_skipped.is_some());
}

#[test]
fn a_temperature_that_does_not_help_out_of_sample_is_not_applied() {
    // Four photos, half of them mislabelled: a half's fit is extreme (both photos right, or
    // both wrong, or an even split), and scored on the other half it is worse than nothing.
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("validation");
    for (class, v) in [
        ("dark", 0u8),
        ("dark", 140),
        ("bright", 250),
        ("bright", 100),
    ] {
        write_uniform(&data.join(class).join(format!("{v:03}.png")), v);
    }
    let model = write_brightness_model(&root.path().join("model"));
    let model_dir = model.parent().unwrap().to_str().unwrap().to_string();
    let out = calibrate(
        &model_dir,
        data.to_str().unwrap(),
        SEED_SPLITTING_RIGHT_FROM_WRONG,
    );
    let stored =
        classify::Calibration::read(&model.parent().unwrap().join("calibration.safetensors"))
            .unwrap();
    assert!(
        !stored.applied && stored.nll_after >= stored.nll_before,
        "{stored:?}"
    );
    assert!(out.contains("not applied"), "{out}");
    assert_eq!(stored.applied_temperature(), 1.0);

    let image = data.join("dark").join("000.png");
    let out = run(
        &["predict", "--model", &model_dir, image.to_str().unwrap()],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not calibrated"), "{stderr}");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        (printed_probability(&line) - sigmoid(logit(0))).abs() < 1e-4,
        "{line}"
    );
    let classifier = classify::Classifier::load(model.parent().unwrap()).unwrap();
    assert_eq!(classifier.model().temperature(), 1.0);
    let info = classifier.info().calibration.unwrap();
    assert!(!info.applied);
}

/// The seed of the cross-fitting halves in the test above (any seed would do: the fit of two
/// photos never carries to the other two here; the assertions check it for this one).
const SEED_SPLITTING_RIGHT_FROM_WRONG: &str = "1";
