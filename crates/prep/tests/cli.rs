//! The `prep split` command line: output, exit status and messages.

mod common;

use std::process::Command;

use common::*;
use testkit::cli::{expect_failure, expect_success};

fn prep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prep"));
    cmd.env_remove("LITTLEDATA_SOURCE").env(
        "LITTLEDATA_PIPELINE",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../pipelines/blog.toml"),
    );
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
    let stdout = expect_success(&args, &prep().args(args).output().unwrap());
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

    let again = expect_success(&args, &prep().args(args).output().unwrap());
    assert!(again.contains("up to date"), "{again}");

    let mut different = args.to_vec();
    different[6] = "2";
    let (_, stderr) = expect_failure(&different, &prep().args(&different).output().unwrap());
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
    let (_, stderr) = expect_failure(&"split with a missing --source", &run);
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
    expect_success(&"split with LITTLEDATA_SOURCE", &run);
    assert_eq!(names(&out.join("train/cats")), ["cat.0.jpg", "cat.1.jpg"]);
    let (_, stderr) = testkit::cli::output_text(&run);
    assert!(stderr.contains("LITTLEDATA_SOURCE"), "{stderr}");
}

#[test]
fn defaults_come_from_the_pipeline_file_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("elsewhere");
    flat_source(&src, &["cat", "dog"], 0..6);
    let pipeline = tmp.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[data]\ndir = {:?}\n[split]\ntrain = 2\nvalidation = 1\ntest = 1\n",
            out.to_str().unwrap()
        ),
    )
    .unwrap();
    let run = prep()
        .args(["split", "--source", src.to_str().unwrap(), "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    expect_success(&"split with the pipeline file's defaults", &run);
    assert_eq!(names(&out.join("train/cats")), ["cat.0.jpg", "cat.1.jpg"]);
    assert_eq!(names(&out.join("test/dogs")), ["dog.3.jpg"]);

    let run = prep()
        .args([
            "split",
            "--source",
            src.to_str().unwrap(),
            "--force",
            "--train",
            "3",
        ])
        .args(["--set", "split.test=0", "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    expect_success(&"split with flags over the pipeline file", &run);
    assert_eq!(names(&out.join("train/cats")).len(), 3);
    assert!(!out.join("test").exists());

    let bad = prep()
        .args(["split", "--set", "split.trian=3", "--pipeline"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let (_, stderr) = expect_failure(&"split --set split.trian=3", &bad);
    assert!(stderr.contains("trian"), "{stderr}");
}
