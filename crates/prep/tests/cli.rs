//! The `prep split` command line: output, exit status and messages.

mod common;

use std::path::Path;
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

#[test]
fn exclude_files_from_flags_or_the_pipeline_file() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat", "dog"], 0..6);
    let audit = tmp.path().join("audit.json");
    std::fs::write(
        &audit,
        r#"{"format": 1, "flagged": [{"path": "data/train/cats/cat.0.jpg", "split": "train",
            "file": "cats/cat.0.jpg", "kind": "label_issue", "score": 0.97, "given": "cats",
            "suggested": "dogs"}]}"#,
    )
    .unwrap();
    let list = tmp.path().join("bad.txt");
    std::fs::write(&list, "# checked by hand\ndog.1.jpg\nfish.3.jpg\n").unwrap();
    let args = [
        "split",
        "--source",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--train",
        "2",
        "--validation",
        "1",
        "--exclude",
        audit.to_str().unwrap(),
        "--exclude",
        list.to_str().unwrap(),
    ];
    let run = prep().args(args).output().unwrap();
    let stdout = expect_success(&args, &run);
    assert!(stdout.contains("excluded 2 file(s)"), "{stdout}");
    let (_, stderr) = testkit::cli::output_text(&run);
    assert!(
        stderr.contains("warning: 1 of the 2 entries of") && stderr.contains("fish.3.jpg"),
        "{stderr}"
    );
    assert_eq!(names(&out.join("train/cats")), ["cat.1.jpg", "cat.2.jpg"]);
    assert_eq!(names(&out.join("train/dogs")), ["dog.0.jpg", "dog.2.jpg"]);

    // The pipeline file's `[split] exclude` gives the same split; without it, another one.
    let pipeline = tmp.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!("[split]\nexclude = [{audit:?}, {list:?}]\n"),
    )
    .unwrap();
    let same = prep()
        .args(&args[..9])
        .arg("--pipeline")
        .arg(&pipeline)
        .output()
        .unwrap();
    let again = expect_success(&"split with split.exclude", &same);
    assert!(again.contains("up to date"), "{again}");
    let (_, stderr) = expect_failure(
        &"split without exclusions",
        &prep().args(&args[..9]).output().unwrap(),
    );
    assert!(
        stderr.contains("with 2 photo(s) excluded, not with no photo excluded")
            && stderr.contains("--force"),
        "{stderr}"
    );

    // --strict makes the unmatched entry an error.
    let mut strict = args.to_vec();
    strict.push("--strict");
    let (_, stderr) = expect_failure(&strict, &prep().args(&strict).output().unwrap());
    assert!(
        stderr.contains("--strict") && stderr.contains("fish.3.jpg"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_exclude_file_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let out = tmp.path().join("data");
    flat_source(&src, &["cat"], 0..3);
    let audit = tmp.path().join("audit.json");
    std::fs::write(&audit, "{\"flagged\": [\n  {\"path\": \"cat.0.jpg\"\n]}\n").unwrap();
    let run = prep()
        .args(["split", "--train", "1", "--validation", "1", "--source"])
        .args([
            &src,
            Path::new("--out"),
            &out,
            Path::new("--exclude"),
            &audit,
        ])
        .output()
        .unwrap();
    let (_, stderr) = expect_failure(&"split with a malformed --exclude", &run);
    assert!(
        stderr.contains("audit.json")
            && stderr.contains("not valid JSON")
            && stderr.contains("line 3"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}
