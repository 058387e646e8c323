//! A run stopped after its first batch resumes exactly where it stopped.

mod common;

use common::*;
use engine::{Interrupt, Verbosity};
use stage::{StageOptions, StageOutcome as TrainOutcome};
use train_small::train_small;

fn options() -> StageOptions {
    let mut o = StageOptions::new(candle_core::Device::Cpu);
    o.verbosity = Verbosity::Quiet;
    o
}

fn load(path: &std::path::Path, artifacts: &std::path::Path) -> pipeline::Pipeline {
    let set = format!("data.artifacts={:?}", artifacts.display().to_string());
    pipeline::Pipeline::load(path, &[set]).unwrap()
}

#[test]
fn interrupted_mid_epoch_then_resumed_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // 20 images per class in batches of 8: five batches per epoch.
    write_data(&root.join("data"), &BRIGHT_DARK, 20, 6);
    let file = write_pipeline(root, 2, "");
    let straight = load(&file, &root.join("straight"));
    let stopped = load(&file, &root.join("stopped"));

    let report = train_small(&straight, &options()).unwrap();
    assert!(matches!(report.outcome, TrainOutcome::Trained(_)));

    // A stop requested before the start ends the run after its first batch.
    let interrupt = Interrupt::new();
    interrupt.trigger();
    let mut o = options();
    o.interrupt = Some(interrupt);
    let report = train_small(&stopped, &o).unwrap();
    assert_eq!(
        report.outcome,
        TrainOutcome::Interrupted { epoch: 1, batch: 1 }
    );
    let out = report.dir.clone();
    assert!(out.join("checkpoints/last.safetensors").is_file());
    assert!(
        !report.model.exists(),
        "no model is written by an interrupted run"
    );

    let mut o = options();
    o.resume = true;
    let report = train_small(&stopped, &o).unwrap();
    let TrainOutcome::Trained(m) = &report.outcome else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!(m.epochs, 2);
    let a = root.join("straight/small_cnn");
    for f in ["model.safetensors", "checkpoints/last.safetensors"] {
        assert_eq!(tensors(&a.join(f)), tensors(&out.join(f)), "{f}");
    }
    assert_eq!(history_figures(&a), history_figures(&out));

    // Up to date now, even when asked to resume.
    let report = train_small(&stopped, &o).unwrap();
    assert!(matches!(report.outcome, TrainOutcome::UpToDate(Some(_))));
}
