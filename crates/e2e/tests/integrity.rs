//! Artifact integrity across the stages, on a small project (noise images, random VGG16
//! weights, 32×32 images):
//!
//! - a flipped bit in the tensor data of every kind of artifact — bottleneck features, the
//!   models of the three methods, a training checkpoint, the fine-tuning caches — is caught by
//!   the stage (or `classify`) that reads it, with an error naming the file, and the freshness
//!   check takes the file for stale, so rerunning the stage that wrote it rebuilds it;
//! - an `extract` killed with SIGKILL while it writes leaves its temp file behind, and a rerun
//!   removes it and leaves no temp file anywhere under the artifacts folder;
//! - `classify evaluate` on a folder with undecodable images names every one of them (up to
//!   20, then a count).
//!
//! - an up-to-date `extract` still removes the temp file of a killed forced run, and a rerun
//!   of any writer removes what a killed writer of the same file left.
//!
//! Errors are checked as the binaries print them ([`pipeline::error_chain`], after `error: `).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::Device;
use common::Project;
use engine::Verbosity;
use extract::Outcome;
use finetune::{CacheKind, CacheOutcome, CachePlan, DEFAULT_PART_IMAGES};
use imagedata::SplitData;
use pipeline::Pipeline;
use stage::{StageOptions, StageOutcome, StageReport};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Flips one bit in the middle of the tensor data of the safetensors file at `path` (after the
/// 8-byte header length and the JSON header) and returns the byte offset changed.
fn flip_data_bit(path: &Path) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let start = 8 + header;
    assert!(
        start < bytes.len(),
        "{}: no tensor data after the {header}-byte header",
        path.display()
    );
    let at = start + (bytes.len() - start) / 2;
    bytes[at] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
    at
}

/// The message a binary prints for `e` (without the leading `error: `).
fn message<E: std::error::Error + Send + Sync + 'static>(e: E) -> String {
    pipeline::error_chain(&anyhow::Error::new(e))
}

/// Asserts that `msg` reports `path` as damaged by a digest mismatch, with the hint to rerun
/// `stage` (or the stage that wrote it, when the file records none).
fn assert_damaged(msg: &str, path: &Path, stage: Option<&str>) {
    let head = format!(
        "{}: damaged (data digest mismatch: recorded xxh3-128:",
        path.display()
    );
    assert!(msg.contains(&head), "expected {head:?} in:\n{msg}");
    assert!(msg.contains(", the bytes give xxh3-128:"), "{msg}");
    let hint = match stage {
        Some(s) => format!("remove it and rerun the `{s}` stage, which wrote it, to rebuild it"),
        None => "remove it and rerun the stage that wrote it to rebuild it".to_string(),
    };
    assert!(msg.contains(&hint), "expected {hint:?} in:\n{msg}");
}

/// Asserts that a freshness reason says the file was damaged (a digest mismatch).
fn assert_damaged_reason(reason: Option<&str>, what: &str) {
    let reason = reason.unwrap_or_else(|| panic!("{what}: no reason to rebuild"));
    assert!(
        reason.starts_with("damaged: data digest mismatch: recorded xxh3-128:"),
        "{what}: {reason}"
    );
}

/// Quiet stage options on the CPU.
fn quiet() -> StageOptions {
    let mut o = StageOptions::new(Device::Cpu);
    o.verbosity = Verbosity::Quiet;
    o
}

fn extract_quietly(p: &Pipeline) -> features::Result<extract::ExtractReport> {
    let mut o = extract::ExtractOptions::new(Device::Cpu);
    o.progress = false;
    extract::extract(p, &o)
}

fn train_top(p: &Pipeline, stage: StageOptions) -> stage::Result<StageReport> {
    let mut o = train_top::TopOptions::new(Device::Cpu);
    o.stage = stage;
    train_top::train_top(p, &o)
}

fn finetune(p: &Pipeline, stage: StageOptions) -> stage::Result<finetune::FinetuneReport> {
    let mut o = finetune::FinetuneOptions::new(Device::Cpu);
    o.stage = stage;
    finetune::finetune(p, &o)
}

/// The project's pipeline with `overrides` (`section.key=value`).
fn pipeline_with(p: &Project, overrides: &[&str]) -> Pipeline {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Pipeline::load(&p.pipeline_file, &o).unwrap()
}

/// Asserts that `report` trained a model, and returns why it did.
fn retrained(report: &StageReport) -> Option<&str> {
    assert!(
        matches!(report.outcome, StageOutcome::Trained(_)),
        "{:?}",
        report.outcome
    );
    report.reason.as_deref()
}

/// The temp files (`.tmp-*` / `*.partial`) anywhere under `dir`.
fn temps(dir: &Path) -> Vec<String> {
    testkit::listing(dir)
        .into_iter()
        .filter(|f| {
            let name = Path::new(f).file_name().unwrap().to_string_lossy();
            name.starts_with(".tmp-") || name.ends_with(".partial")
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. A flipped bit in every kind of artifact
// ---------------------------------------------------------------------------------------------

#[test]
fn damaged_bottleneck_features_are_refused_by_train_top_and_rebuilt_by_extract() {
    let p = Project::new();
    let pipe = p.pipeline();
    let first = extract_quietly(&pipe).unwrap();
    assert!(!first.up_to_date());
    let bottleneck = pipe.layout().bottleneck();
    let train = bottleneck.join("train.safetensors");
    let validation = bottleneck.join("validation.safetensors");
    artifact::verify(&train).unwrap();
    artifact::verify(&validation).unwrap();
    let validation_bytes = std::fs::read(&validation).unwrap();

    flip_data_bit(&train);
    assert_damaged(
        &message(artifact::verify(&train).unwrap_err()),
        &train,
        Some("extract"),
    );

    // The reader: train-top refuses the features, names the file and writes no model.
    let err = train_top(&pipe, quiet()).unwrap_err();
    assert_damaged(&message(err), &train, Some("extract"));
    let model = pipe.layout().top_model();
    assert!(!model.exists(), "a model was written from damaged features");

    // The freshness check: a rerun of `extract` rebuilds the damaged file (and only it).
    let rerun = extract_quietly(&pipe).unwrap();
    assert!(
        !rerun.up_to_date(),
        "extract took damaged features for up to date"
    );
    let by_name = |name: &str| {
        rerun
            .files
            .iter()
            .find(|f| f.path.file_name().unwrap() == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", rerun.files))
    };
    let t = by_name("train.safetensors");
    assert!(matches!(t.outcome, Outcome::Written(_)), "{t:?}");
    assert_damaged_reason(t.reason.as_deref(), "train.safetensors");
    let v = by_name("validation.safetensors");
    assert_eq!(v.outcome, Outcome::UpToDate, "{v:?}");
    assert_eq!(std::fs::read(&validation).unwrap(), validation_bytes);
    artifact::verify(&train).unwrap();

    // And what was refused now trains; a third extract has nothing to do.
    let report = train_top(&pipe, quiet()).unwrap();
    assert_eq!(retrained(&report), Some("no model yet"));
    assert!(extract_quietly(&pipe).unwrap().up_to_date());
}

#[test]
fn damaged_models_are_refused_by_classify_and_retrained_by_their_stage() {
    let p = Project::new();
    p.train_small();
    p.train_top();
    let pipe = p.pipeline();
    let validation = p.data.join("validation");
    let options = classify::EvalOptions {
        progress: false,
        ..Default::default()
    };

    for (stage_dir, stage_name) in [("small_cnn", "train-small"), ("top", "train-top")] {
        let dir = p.artifacts.join(stage_dir);
        let model = dir.join("model.safetensors");
        let json = dir.join("evaluation").join("validation.json");
        // Before the damage: it loads, and its evaluation is stored for reuse.
        let stored = classify::evaluate_cached(&dir, &validation, &json, &options, false, |f| {
            classify::load_model(f, Some(&p.weights), &Device::Cpu)
        })
        .unwrap();
        assert!(matches!(stored, classify::Cached::Evaluated { .. }));

        flip_data_bit(&model);

        // `classify evaluate` and `classify predict` both open the model first: refused.
        let err = classify::load_model(&dir, Some(&p.weights), &Device::Cpu).unwrap_err();
        assert_damaged(&message(err), &model, Some(stage_name));
        // `classify evaluate --json` does not hand back the report of the undamaged file.
        let err = classify::evaluate_cached(&dir, &validation, &json, &options, false, |f| {
            classify::load_model(f, Some(&p.weights), &Device::Cpu)
        })
        .unwrap_err();
        assert_damaged(&message(err), &model, Some(stage_name));

        // A rerun of the stage (no --force) takes the damaged model for stale and retrains.
        let report = match stage_dir {
            "small_cnn" => train_small::train_small(&pipe, &quiet()).unwrap(),
            _ => train_top(&pipe, quiet()).unwrap(),
        };
        assert_damaged_reason(retrained(&report), stage_dir);
        artifact::verify(&model).unwrap();
        classify::load_model(&dir, Some(&p.weights), &Device::Cpu).unwrap();
    }
}

#[test]
fn a_damaged_checkpoint_is_refused_by_resume_and_a_fresh_run_replaces_it() {
    let p = Project::new();
    p.train_top(); // 3 epochs
    let dir = p.artifacts.join("top");
    let checkpoint = dir.join("checkpoints").join("last.safetensors");
    let model = dir.join("model.safetensors");
    artifact::verify(&checkpoint).unwrap();
    let good = std::fs::read(&checkpoint).unwrap();
    let model_before = std::fs::read(&model).unwrap();

    // One more epoch, continuing the run from its checkpoint.
    let four = pipeline_with(&p, &["top.epochs=4"]);
    let resume = || {
        let mut o = quiet();
        o.resume = true;
        o
    };

    flip_data_bit(&checkpoint);
    let err = train_top(&four, resume()).unwrap_err();
    let msg = message(err);
    let head = format!(
        "{}: cannot resume from this checkpoint: damaged (data digest mismatch: recorded \
         xxh3-128:",
        checkpoint.display()
    );
    assert!(msg.contains(&head), "expected {head:?} in:\n{msg}");
    assert!(
        msg.contains("run without --resume to start the run over"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&model).unwrap(),
        model_before,
        "the model changed"
    );

    // The same resume from the undamaged checkpoint goes through: the damage was the reason.
    std::fs::write(&checkpoint, &good).unwrap();
    let report = train_top(&four, resume()).unwrap();
    retrained(&report);
    assert_eq!(p.metrics("top")["epochs"], 4);

    // Damaged again, a run without --resume starts afresh and writes a whole checkpoint.
    flip_data_bit(&checkpoint);
    let five = pipeline_with(&p, &["top.epochs=5"]);
    let report = train_top(&five, quiet()).unwrap();
    retrained(&report);
    artifact::verify(&checkpoint).unwrap();
    assert_eq!(p.metrics("top")["epochs"], 5);
}

#[test]
fn damaged_finetune_caches_and_models_are_refused_and_rebuilt() {
    let p = Project::new();
    p.train_top();
    let pipe = p.pipeline();
    let first = finetune(&pipe, quiet()).unwrap();
    assert_eq!(first.caches.len(), 2, "{:?}", first.caches);
    let dir = pipe.layout().finetune();
    let views = dir.join(CacheKind::Views.file_name());
    let frozen = dir.join(CacheKind::Validation.file_name());
    for f in [&views, &frozen] {
        artifact::verify(f).unwrap();
    }

    // The caches: the reader refuses each, naming it; the freshness check calls it stale.
    let (train_data, validation_data) = SplitData::scan_pair(&pipe.data.dir).unwrap();
    let weights = pipe.resolve_weights(None).unwrap();
    for (kind, data, path) in [
        (CacheKind::Views, &train_data, &views),
        (CacheKind::Validation, &validation_data, &frozen),
    ] {
        let plan = CachePlan::new(kind, &pipe, data, &weights.sha256, DEFAULT_PART_IMAGES).unwrap();
        assert_eq!(plan.path(), path.as_path());
        plan.load(&Device::Cpu).unwrap();
        flip_data_bit(path);
        let msg = message(plan.load(&Device::Cpu).unwrap_err());
        let head = format!(
            "{}: out of date (damaged: data digest mismatch: recorded xxh3-128:",
            path.display()
        );
        assert!(msg.contains(&head), "expected {head:?} in:\n{msg}");
        match plan.freshness().unwrap() {
            artifact::Freshness::Stale(why) => assert_damaged_reason(Some(&why), kind.label()),
            other => panic!("{}: {other:?}", kind.label()),
        }
    }
    // A forced rerun rebuilds both rather than reading them.
    let mut force = quiet();
    force.force = true;
    let rerun = finetune(&pipe, force.clone()).unwrap();
    assert!(matches!(rerun.outcome, StageOutcome::Trained(_)));
    assert_eq!(rerun.caches.len(), 2, "{:?}", rerun.caches);
    for c in &rerun.caches {
        assert!(matches!(c.outcome, CacheOutcome::Built(_)), "{c:?}");
        assert_damaged_reason(c.reason.as_deref(), c.kind.label());
    }
    for f in [&views, &frozen] {
        artifact::verify(f).unwrap();
    }

    // The fine-tuned model: refused by classify, retrained by a plain rerun (the caches, whole,
    // are reused).
    let model = dir.join("model.safetensors");
    flip_data_bit(&model);
    let err = classify::load_model(&dir, Some(&p.weights), &Device::Cpu).unwrap_err();
    assert_damaged(&message(err), &model, Some("finetune"));
    let again = finetune(&pipe, quiet()).unwrap();
    assert_damaged_reason(again.report.reason.as_deref(), "finetune model");
    assert_eq!(again.caches.len(), 2, "{:?}", again.caches);
    assert!(
        again
            .caches
            .iter()
            .all(|c| c.outcome == CacheOutcome::UpToDate),
        "{:?}",
        again.caches
    );
    classify::load_model(&dir, Some(&p.weights), &Device::Cpu).unwrap();

    // The top model it starts from: refused by finetune, naming it.
    let top = pipe.layout().top_model();
    flip_data_bit(&top);
    let err = finetune(&pipe, force).unwrap_err();
    assert_damaged(&message(err), &top, Some("train-top"));
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 in the middle of a write, then a rerun
// ---------------------------------------------------------------------------------------------

/// The environment variable naming the pipeline file [`extract_child_process`] runs.
const CHILD_PIPELINE: &str = "LITTLEDATA_INTEGRITY_CHILD_PIPELINE";
/// Set (to anything) to make [`extract_child_process`] run with `--force`.
const CHILD_FORCE: &str = "LITTLEDATA_INTEGRITY_CHILD_FORCE";

/// Not a test of its own: the `extract` stage run in a child process (this test executable,
/// started by [`extract_killed_mid_write`]) so that it can be killed with SIGKILL. It runs the
/// library as it is now, where `target/debug/extract` may be older or not built.
#[test]
#[ignore = "run as a child process by the kill tests"]
fn extract_child_process() {
    let Ok(file) = std::env::var(CHILD_PIPELINE) else {
        return;
    };
    let p = Pipeline::load(Path::new(&file), &[]).unwrap();
    let mut o = extract::ExtractOptions::new(Device::Cpu);
    o.progress = false;
    o.force = std::env::var_os(CHILD_FORCE).is_some();
    extract::extract(&p, &o).unwrap();
}

/// A project for the kill tests: 20 + 20 training images (enough that extracting them takes a
/// while), 2 + 2 validation images, 64×64, random VGG16 weights, a pipeline file.
#[cfg(unix)]
struct KillProject {
    dir: tempfile::TempDir,
    file: PathBuf,
    artifacts: PathBuf,
}

#[cfg(unix)]
impl KillProject {
    fn new() -> Self {
        use testkit::fixtures::{data_section, write_random_vgg16, write_split};
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_split(&data, "train", &[("cats", 20), ("dogs", 20)], 1);
        write_split(&data, "validation", &[("cats", 2), ("dogs", 2)], 2);
        let weights = dir.path().join("vgg16.safetensors");
        write_random_vgg16(&weights, 11);
        let artifacts = dir.path().join("artifacts");
        let file = dir.path().join("pipeline.toml");
        std::fs::write(
            &file,
            format!(
                "{}[bottleneck]\nweights = {:?}\nbatch_size = 2\ntarget_size = [64, 64]\n",
                data_section(&data, &artifacts, [64, 64]),
                weights.to_str().unwrap()
            ),
        )
        .unwrap();
        Self {
            dir,
            file,
            artifacts,
        }
    }

    fn pipeline(&self) -> Pipeline {
        Pipeline::load(&self.file, &[]).unwrap()
    }

    fn bottleneck(&self) -> PathBuf {
        self.pipeline().layout().bottleneck()
    }
}

/// Starts `extract` (with `--force` when `force`) in a child process on `project`, waits until
/// a temp file appears in the bottleneck folder, kills the child with SIGKILL and returns its
/// pid. Fails when the child ends first.
#[cfg(unix)]
fn extract_killed_mid_write(project: &KillProject, force: bool) -> u32 {
    use std::os::unix::process::ExitStatusExt;

    let bottleneck = project.bottleneck();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "extract_child_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .current_dir(project.dir.path())
        .env(CHILD_PIPELINE, &project.file)
        .env_remove(CHILD_FORCE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if force {
        command.env(CHILD_FORCE, "1");
    }
    let mut child = command.spawn().unwrap();
    let pid = child.id();
    let started = Instant::now();
    while temps(&bottleneck).is_empty() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "extract ended ({status}) before a temp file was seen; make the data bigger\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no temp file in {} after 120 s",
            bottleneck.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "not killed: {status}");
    pid
}

/// Asserts that the temp files under `bottleneck` are those of process `pid` writing
/// `train.safetensors`, and returns them.
#[cfg(unix)]
fn temps_of_killed_writer(bottleneck: &Path, pid: u32) -> Vec<String> {
    let left = temps(bottleneck);
    assert!(!left.is_empty(), "the killed writer left no temp file");
    for t in &left {
        assert!(
            t.contains(&format!("~{pid}~")),
            "{t} is not process {pid}'s"
        );
    }
    assert!(
        left.iter()
            .any(|t| t.starts_with(".tmp-train.safetensors~")),
        "{left:?}"
    );
    left
}

#[cfg(unix)]
#[test]
fn an_extract_killed_mid_write_leaves_a_temp_that_the_rerun_removes() {
    let project = KillProject::new();
    let bottleneck = project.bottleneck();
    let pid = extract_killed_mid_write(&project, false);

    // What the killed writer left: its temp file, named after its target and its pid, and
    // no file that looks finished.
    temps_of_killed_writer(&bottleneck, pid);
    let train = bottleneck.join("train.safetensors");
    assert!(!train.exists(), "train.safetensors was finished");

    // The rerun completes and leaves no temp file anywhere.
    let report = extract_quietly(&project.pipeline()).unwrap();
    assert!(!report.up_to_date());
    artifact::verify(&train).unwrap();
    let remaining = temps(&project.artifacts);
    assert!(
        remaining.is_empty(),
        "left behind: {remaining:?} (all: {:?})",
        testkit::listing(&project.artifacts)
    );
}

/// Product bug: `extract` removes stale temps only when it has a file to compute, so the temp
/// of a killed `extract --force` stays (as large as the features file) once a plain rerun
/// finds every file up to date.
#[cfg(unix)]
#[test]
fn an_up_to_date_extract_removes_the_temp_of_a_killed_forced_run() {
    let project = KillProject::new();
    assert!(!extract_quietly(&project.pipeline()).unwrap().up_to_date());
    let bottleneck = project.bottleneck();
    let pid = extract_killed_mid_write(&project, true);
    temps_of_killed_writer(&bottleneck, pid);
    artifact::verify(&bottleneck.join("train.safetensors")).unwrap();

    let report = extract_quietly(&project.pipeline()).unwrap();
    assert!(report.up_to_date());
    let remaining = temps(&project.artifacts);
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

/// The name a writer of `target` with pid `pid` (not running) on this host gives its temp file
/// (see `artifact`'s temp.rs): `.tmp-<target>~<host>~<pid namespace>~<pid>~<start>~<random>.partial`.
#[cfg(target_os = "linux")]
fn temp_name_of(target: &str, pid: u32) -> String {
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    let ns = ns.to_string_lossy();
    let ns = ns.trim_start_matches("pid:[").trim_end_matches(']');
    format!(".tmp-{target}~{host}~{ns}~{pid}~12345~aB3xYz.partial")
}

/// The pid of a process that ran and is gone.
#[cfg(target_os = "linux")]
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Product bug: `classify evaluate --json` (and every other `artifact::atomic_write`) never
/// removes the temp file of a killed earlier write of its target, and no stage cleans a
/// stage folder's `evaluation/` subfolder, so it stays there for good.
#[cfg(target_os = "linux")]
#[test]
fn a_rerun_of_classify_evaluate_json_removes_the_temp_of_a_killed_run() {
    let p = Project::new();
    p.train_small();
    let dir = p.artifacts.join("small_cnn");
    let json = dir.join("evaluation").join("validation.json");
    let stale = json
        .parent()
        .unwrap()
        .join(temp_name_of("validation.json", dead_pid()));
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, b"{\"model\": ").unwrap();
    let options = classify::EvalOptions {
        progress: false,
        ..Default::default()
    };
    let validation = p.data.join("validation");
    let outcome = classify::evaluate_cached(&dir, &validation, &json, &options, false, |f| {
        classify::load_model(f, None, &Device::Cpu)
    })
    .unwrap();
    assert!(matches!(outcome, classify::Cached::Evaluated { .. }));
    assert!(json.is_file());
    // The stage's own rerun does not reach it either.
    let mut force = quiet();
    force.force = true;
    train_small::train_small(&p.pipeline(), &force).unwrap();
    let remaining = temps(&p.artifacts);
    assert!(remaining.is_empty(), "left behind: {remaining:?}");
}

/// The stale-temp naming [`temp_name_of`] reproduces is the one the cleanup recognises: a
/// temp of a gone process planted in a training stage's folder is removed when the stage runs.
#[cfg(target_os = "linux")]
#[test]
fn a_training_stage_removes_stale_temps_of_a_gone_writer_from_its_folder() {
    let p = Project::new();
    p.train_small();
    let dir = p.artifacts.join("small_cnn");
    let pid = dead_pid();
    let stale = [
        dir.join(temp_name_of("model.safetensors", pid)),
        dir.join(temp_name_of("history.json", pid)),
        dir.join("checkpoints")
            .join(temp_name_of("last.safetensors", pid)),
    ];
    // A temp of a live writer (this process) stays.
    let live = dir.join(temp_name_of("metrics.json", std::process::id()).replace(
        "~12345~",
        &format!(
            "~{}~",
            std::fs::read_to_string("/proc/self/stat")
                .unwrap()
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .nth(19)
                .unwrap()
        ),
    ));
    for f in stale.iter().chain([&live]) {
        std::fs::write(f, b"partial").unwrap();
    }
    let mut force = quiet();
    force.force = true;
    train_small::train_small(&p.pipeline(), &force).unwrap();
    for f in &stale {
        assert!(!f.exists(), "{} was not removed", f.display());
    }
    assert!(live.exists(), "the temp of a running writer was removed");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(temps(&p.artifacts), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------------
// 3. Undecodable images in `classify evaluate`
// ---------------------------------------------------------------------------------------------

/// A copy of the project's validation folder with `bad` garbage `.jpg` files added to `cats/`
/// (`bad00.jpg`, ...); returns the folder and the bad files in order.
fn with_bad_images(p: &Project, name: &str, bad: usize) -> (PathBuf, Vec<PathBuf>) {
    let root = p.dir.path().join(name);
    for class in ["cats", "dogs"] {
        let from = p.data.join("validation").join(class);
        let to = root.join(class);
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let files: Vec<PathBuf> = (0..bad)
        .map(|i| {
            let path = root.join("cats").join(format!("bad{i:02}.jpg"));
            let garbage: Vec<u8> = (0..200u32)
                .map(|b| (b * 37 + i as u32 * 11) as u8)
                .collect();
            std::fs::write(&path, garbage).unwrap();
            path
        })
        .collect();
    (root, files)
}

#[test]
fn classify_evaluate_names_every_undecodable_image_up_to_twenty() {
    let p = Project::new();
    p.train_small();
    let model = classify::load_model(&p.artifacts.join("small_cnn"), None, &Device::Cpu).unwrap();
    let options = classify::EvalOptions {
        progress: false,
        ..Default::default()
    };
    // Control: the clean copy evaluates.
    let (clean, _) = with_bad_images(&p, "clean", 0);
    classify::evaluate(&model, &clean, &options).unwrap();

    // Five: all named, one per line, and no count of more.
    let (folder, bad) = with_bad_images(&p, "five", 5);
    let msg = message(classify::evaluate(&model, &folder, &options).unwrap_err());
    assert!(
        msg.starts_with("5 file(s) could not be decoded:\n  - "),
        "{msg}"
    );
    for f in &bad {
        assert!(
            msg.contains(&format!("\n  - {}: ", f.display())),
            "{} not named in:\n{msg}",
            f.display()
        );
    }
    assert_eq!(msg.matches("\n  - ").count(), 5, "{msg}");
    assert!(!msg.contains("more"), "{msg}");
    assert!(
        !msg.contains("/cat.") && !msg.contains("/dog."),
        "a good image named:\n{msg}"
    );

    // Twenty-three: the first twenty in order, then the count of the rest.
    let (folder, bad) = with_bad_images(&p, "many", 23);
    let msg = message(classify::evaluate(&model, &folder, &options).unwrap_err());
    assert!(
        msg.starts_with("23 file(s) could not be decoded:\n  - "),
        "{msg}"
    );
    let named: Vec<&PathBuf> = bad
        .iter()
        .filter(|f| msg.contains(&format!("{}: ", f.display())))
        .collect();
    assert_eq!(named, bad[..20].iter().collect::<Vec<_>>(), "{msg}");
    assert_eq!(msg.matches("\n  - ").count(), 20, "{msg}");
    assert!(msg.ends_with("\n  and 3 more"), "{msg}");
}
