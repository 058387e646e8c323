//! The `report` binary on an artifacts folder where nothing has run yet: it still writes the
//! report, saying what to run, and prints where the page is. (Whole runs are reported in the
//! `e2e` crate's tests.)

use std::path::Path;

fn run(dir: &Path, pipeline: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("--pipeline")
        .arg(pipeline)
        .current_dir(dir)
        .env_remove("LITTLEDATA_PIPELINE")
        .output()
        .unwrap()
}

#[test]
fn an_empty_artifacts_folder_gives_a_report_of_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let artifacts = dir.path().join("artifacts");
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[data]\ndir = {:?}\nartifacts = {:?}\n",
            dir.path().join("data").to_str().unwrap(),
            artifacts.to_str().unwrap()
        ),
    )
    .unwrap();
    let stdout = testkit::cli::expect_success(&"report", &run(dir.path(), &pipeline));
    let html = artifacts.join("report/report.html");
    assert_eq!(stdout.lines().last().unwrap(), html.display().to_string());
    let md = std::fs::read_to_string(artifacts.join("report/report.md")).unwrap();
    assert!(md.contains("## Not run yet"), "{md}");
    assert!(md.contains("just train-small"), "{md}");

    // A pipeline file that does not parse is an error naming it, not a panic.
    std::fs::write(&pipeline, "[data\n").unwrap();
    let (_, stderr) = testkit::cli::expect_failure(&"report", &run(dir.path(), &pipeline));
    assert!(stderr.contains(&pipeline.display().to_string()), "{stderr}");
}
