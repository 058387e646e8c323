//! `evaluate --json` is a cached step: a rerun with nothing changed reads the stored report
//! back without loading the model; a changed image, model file or option evaluates again.

mod common;

use std::cell::Cell;
use std::path::Path;

use candle_core::Device;
use classify::{Cached, EvalOptions, LoadedModel, evaluate_cached};
use common::*;
use testkit::cli::{expect_success, output_text};

/// The fixture: data, the hand-set model, and where the report goes.
struct Fixture {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    model: std::path::PathBuf,
    json: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_fixture(&data);
    let model = dir.path().join("model");
    write_brightness_model(&model);
    let json = dir.path().join("model/evaluation/validation.json");
    Fixture {
        data,
        model,
        json,
        _dir: dir,
    }
}

fn options(tta: bool) -> EvalOptions {
    EvalOptions {
        batch_size: 3,
        tta,
        progress: false,
        calibrated: true,
        ..EvalOptions::default()
    }
}

/// [`evaluate_cached`] on the fixture, counting how often the model is loaded.
fn evaluate(f: &Fixture, tta: bool, force: bool, loads: &Cell<usize>) -> Cached {
    let load = |file: &Path| -> classify::Result<LoadedModel> {
        loads.set(loads.get() + 1);
        classify::load_model(file, None, &Device::Cpu)
    };
    evaluate_cached(&f.model, &f.data, &f.json, &options(tta), force, load).unwrap()
}

fn evaluated_because(outcome: &Cached) -> Option<String> {
    match outcome {
        Cached::Evaluated { reason, .. } => reason.clone(),
        Cached::UpToDate(_) => panic!("expected an evaluation, got the stored report"),
    }
}

#[test]
fn a_rerun_reads_the_stored_report_and_changes_evaluate_again() {
    let f = fixture();
    let loads = Cell::new(0);
    let first = evaluate(&f, false, false, &loads);
    assert_eq!(evaluated_because(&first), None);
    assert_eq!(loads.get(), 1);
    let provenance = first.report().provenance.clone().unwrap();
    assert_eq!(provenance.model_sha256.len(), 64);
    assert!(!provenance.tta);
    assert_eq!(first.report().correct, 4);
    let bytes = std::fs::read(&f.json).unwrap();
    let modified = std::fs::metadata(&f.json).unwrap().modified().unwrap();

    // Nothing changed: the stored report, the model never loaded, the file untouched.
    let again = evaluate(&f, false, false, &loads);
    assert!(matches!(again, Cached::UpToDate(_)), "{again:?}");
    assert_eq!(again.report(), first.report());
    assert_eq!(loads.get(), 1);
    assert_eq!(std::fs::read(&f.json).unwrap(), bytes);
    assert_eq!(
        std::fs::metadata(&f.json).unwrap().modified().unwrap(),
        modified
    );

    // `force` evaluates anyway.
    let forced = evaluate(&f, false, true, &loads);
    assert_eq!(evaluated_because(&forced).as_deref(), Some("--force"));
    assert_eq!(loads.get(), 2);

    // Test-time augmentation is another evaluation.
    let tta = evaluate(&f, true, false, &loads);
    assert!(
        evaluated_because(&tta)
            .unwrap()
            .contains("test-time augmentation")
    );
    assert!(tta.report().provenance.as_ref().unwrap().tta);
    assert!(matches!(
        evaluate(&f, true, false, &loads),
        Cached::UpToDate(_)
    ));
    assert_eq!(loads.get(), 3);

    // Rewriting an image with the same pixels changes nothing; other pixels do.
    write_uniform(&f.data.join("dark/025.png"), 25);
    assert!(
        matches!(evaluate(&f, true, false, &loads), Cached::UpToDate(_)),
        "the same bytes rewritten are the same images"
    );
    write_uniform(&f.data.join("dark/025.png"), 26);
    let changed = evaluate(&f, true, false, &loads);
    assert_eq!(
        evaluated_because(&changed).as_deref(),
        Some("the images changed")
    );
    assert_eq!(loads.get(), 4);

    // A changed model: the output bias moves every prediction towards `dark`.
    let mut weights = brightness_weights();
    weights.insert(
        "dense2.bias".into(),
        candle_core::Tensor::new(&[0.9f32], &Device::Cpu).unwrap(),
    );
    save(
        &f.model.join("model.safetensors"),
        &weights,
        &model_metadata(&brightness_spec()),
    );
    let retrained = evaluate(&f, true, false, &loads);
    assert_eq!(
        evaluated_because(&retrained).as_deref(),
        Some("the model file changed")
    );
    assert_eq!(loads.get(), 5);
    assert_ne!(
        retrained.report().confusion_matrix,
        changed.report().confusion_matrix
    );
    let stored: classify::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(&f.json).unwrap()).unwrap();
    assert_eq!(&stored, retrained.report());
}

#[test]
fn a_foreign_or_unreadable_report_is_replaced() {
    let f = fixture();
    let loads = Cell::new(0);
    std::fs::create_dir_all(f.json.parent().unwrap()).unwrap();
    std::fs::write(&f.json, b"{ not json").unwrap();
    let outcome = evaluate(&f, false, false, &loads);
    assert!(
        evaluated_because(&outcome)
            .unwrap()
            .contains("not an evaluation report")
    );

    // A report without provenance (written by an older version) is evaluated again.
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f.json).unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("provenance");
    std::fs::write(&f.json, old.to_string()).unwrap();
    let outcome = evaluate(&f, false, false, &loads);
    assert_eq!(
        evaluated_because(&outcome).as_deref(),
        Some("it records no provenance")
    );
    assert_eq!(loads.get(), 2);
}

#[test]
fn the_binary_says_up_to_date_and_prints_the_stored_report() {
    let f = fixture();
    let args = [
        "evaluate",
        "--model",
        f.model.to_str().unwrap(),
        "--data",
        f.data.to_str().unwrap(),
        "--json",
        f.json.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let first = run_ok(&args);
    assert!(!first.contains("up to date"), "{first}");
    let out = run(&args, &[]);
    let again = expect_success(&args, &out);
    let (_, stderr) = output_text(&out);
    assert_eq!(
        again.lines().last(),
        Some(format!("{}: up to date", f.json.display()).as_str())
    );
    assert!(
        again.starts_with(&first),
        "the stored report is printed as the first run printed it:\n{first}\n---\n{again}"
    );
    assert!(
        !stderr.contains("model:"),
        "the model is not loaded: {stderr}"
    );

    // --force needs --json.
    let forced = run_ok(&[args.as_slice(), &["--force"]].concat());
    assert_eq!(forced, first);
    let out = run(
        &["evaluate", "--model", f.model.to_str().unwrap(), "--force"],
        &[],
    );
    let (_, stderr) = output_text(&out);
    assert!(
        !out.status.success() && stderr.contains("--json"),
        "{stderr}"
    );
}
