//! The `prep split` command line: output, exit status and messages.

mod common;

use std::process::Command;

use common::*;

fn prep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prep"));
    cmd.env_remove("LITTLEDATA_SOURCE");
    cmd
}

#[test]
fn split_prints_the_table_and_a_rerun_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..5);
    let args = [
        "split",
        "--source",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--train",
        "3",
        "--validation",
        "1",
        "--test",
        "1",
    ];
    let run = prep().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        rows.contains(&vec!["split", "cats", "dogs", "total"]),
        "{stdout}"
    );
    assert!(rows.contains(&vec!["train", "3", "3", "6"]), "{stdout}");
    assert!(
        rows.contains(&vec!["validation", "1", "1", "2"]),
        "{stdout}"
    );
    assert!(rows.contains(&vec!["test", "1", "1", "2"]), "{stdout}");
    assert!(stdout.contains("10 hard links"), "{stdout}");

    let again = prep().args(args).output().unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("up to date"));

    let mut different = args.to_vec();
    different[6] = "2";
    let refused = prep().args(&different).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
}

#[test]
fn a_missing_source_fails_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-folder");
    let run = prep()
        .args(["split", "--source", missing.to_str().unwrap(), "--out"])
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("no-such-folder") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn the_source_can_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..3);
    let run = prep()
        .env("LITTLEDATA_SOURCE", &src)
        .args(["split", "--train", "2", "--validation", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(names(&out.join("train/cats")), ["cat.0.jpg", "cat.1.jpg"]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("LITTLEDATA_SOURCE"));
}

#[test]
fn seed_requires_shuffle() {
    let run = prep().args(["split", "--seed", "3"]).output().unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--shuffle"));
}
