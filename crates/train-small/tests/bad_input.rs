//! Bad data, settings and checkpoints give a clear message naming the problem, never a panic.

mod common;

use common::*;

#[test]
fn validation_classes_that_differ_from_the_training_classes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_split(&root.join("data/train"), &BRIGHT_DARK, 2, 1);
    write_split(
        &root.join("data/validation"),
        &[("bright", [200; 3]), ("grey", [100; 3])],
        2,
        2,
    );
    let p = write_pipeline(root, 1, "");
    let err = run_err(&["--pipeline", p.to_str().unwrap()]);
    assert!(err.contains("validation") && err.contains("grey"), "{err}");
}

#[test]
fn an_undecodable_training_image_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_data(&root.join("data"), &BRIGHT_DARK, 3, 2);
    let bad = root.join("data/train/dark/zz.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n but then nothing").unwrap();
    let p = write_pipeline(root, 1, "");
    let err = run_err(&["--pipeline", p.to_str().unwrap()]);
    assert!(err.contains("zz.png"), "{err}");
}

#[test]
fn missing_corrupt_and_foreign_checkpoints_are_refused_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Twelve training images, as the three-class set below has.
    write_data(&root.join("data"), &BRIGHT_DARK, 6, 2);
    let p = write_pipeline(root, 1, "");
    let p = p.to_str().unwrap();

    let err = run_err(&["--pipeline", p, "--resume"]);
    assert!(
        err.contains("last.safetensors") && err.contains("no checkpoint"),
        "{err}"
    );

    run_ok(&["--pipeline", p]);
    let last = out_dir(root).join("checkpoints/last.safetensors");
    let bytes = std::fs::read(&last).unwrap();

    // Truncated.
    std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
    let err = run_err(&["--pipeline", p, "--resume", "--set", "small_cnn.epochs=2"]);
    assert!(err.contains("last.safetensors"), "{err}");

    // Trained on other images.
    std::fs::write(&last, &bytes).unwrap();
    write_image(&root.join("data/train/bright/new.png"), [220; 3], 30, 5);
    let err = run_err(&["--pipeline", p, "--resume", "--set", "small_cnn.epochs=2"]);
    assert!(
        err.contains("cannot resume") && err.contains("other images"),
        "{err}"
    );

    // A checkpoint of another run (other images, three classes) is refused before its tensors
    // are read.
    std::fs::remove_file(root.join("data/train/bright/new.png")).unwrap();
    let other = tempfile::tempdir().unwrap();
    write_data(&other.path().join("data"), &RGB, 4, 2);
    let q = write_pipeline(other.path(), 1, "");
    run_ok(&["--pipeline", q.to_str().unwrap()]);
    let foreign = out_dir(other.path()).join("checkpoints/last.safetensors");
    std::fs::copy(foreign, &last).unwrap();
    let err = run_err(&["--pipeline", p, "--resume", "--set", "small_cnn.epochs=2"]);
    assert!(
        err.contains("last.safetensors") && err.contains("changed"),
        "{err}"
    );
}
