//! `extract --shard auto` as a scheduler runs it: the slice comes from the environment (a Slurm
//! array job, a Kubernetes Indexed Job), the merged shards equal a single run, and a missing or
//! stepped array is refused before anything is computed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::cli::expect_success;
use testkit::fixtures::{data_section, load, write_random_vgg16, write_split};
use testkit::{bytes, listing};

/// Every variable `--shard auto` reads, removed from the inherited environment.
const SCHEDULER_VARS: [&str; 8] = [
    "SLURM_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
    "LITTLEDATA_SHARD_COUNT",
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    weights: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    write_split(&root.join("data"), "train", &[("cats", 4), ("dogs", 3)], 1);
    write_split(
        &root.join("data"),
        "validation",
        &[("cats", 2), ("dogs", 3)],
        2,
    );
    let weights = root.join("w.safetensors");
    write_random_vgg16(&weights, 5);
    Fixture {
        _dir: dir,
        root,
        weights,
    }
}

/// A pipeline file writing into `<root>/<artifacts>`.
fn pipeline_file(f: &Fixture, artifacts: &str) -> PathBuf {
    let path = f.root.join(format!("{artifacts}.toml"));
    let text = format!(
        "{}[bottleneck]\nbatch_size = 3\n",
        data_section(&f.root.join("data"), &f.root.join(artifacts), [64, 48])
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `extract --pipeline <pipeline> ARGS` with exactly the scheduler variables `env`.
fn extract(pipeline: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extract"));
    cmd.arg("--pipeline").arg(pipeline).args(args);
    for var in SCHEDULER_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn compute(f: &Fixture, pipeline: &Path, shard: &str, env: &[(&str, &str)]) {
    let w = f.weights.to_str().unwrap();
    let args = ["--device", "cpu", "--weights", w, "--shard", shard];
    expect_success(&(shard, env), &extract(pipeline, &args, env));
}

fn assert_same_as_single_run(f: &Fixture, merged: &str) {
    let single = pipeline_file(f, "single");
    let w = f.weights.to_str().unwrap();
    let args = ["--device", "cpu", "--weights", w];
    expect_success(&"single run", &extract(&single, &args, &[]));
    for stem in ["train", "validation"] {
        let name = format!("bottleneck/{stem}.safetensors");
        let (a, ma) = load(&f.root.join("single").join(&name));
        let (b, mb) = load(&f.root.join(merged).join(&name));
        for t in ["features", "labels"] {
            assert_eq!(bytes(&a[t]), bytes(&b[t]), "{stem} {t} differ");
        }
        let timeless = |m: artifact::Metadata| -> artifact::Metadata {
            m.into_iter()
                .filter(|(k, _)| {
                    k != artifact::fresh::KEY_CREATED && k != artifact::fresh::KEY_DATA_DIGEST
                })
                .collect()
        };
        assert_eq!(timeless(ma), timeless(mb), "{stem} metadata");
    }
}

#[test]
fn a_slurm_array_from_zero_then_merge_equals_a_single_run() {
    let f = fixture();
    let pipeline = pipeline_file(&f, "slurm");
    for id in ["0", "1"] {
        let env = [
            ("SLURM_JOB_ID", "100"),
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ];
        compute(&f, &pipeline, "auto", &env);
    }
    assert_eq!(
        listing(&f.root.join("slurm/bottleneck")),
        [
            "train.shard-1-of-2.safetensors",
            "train.shard-2-of-2.safetensors",
            "validation.shard-1-of-2.safetensors",
            "validation.shard-2-of-2.safetensors",
        ]
    );
    expect_success(&"merge", &extract(&pipeline, &["merge"], &[]));
    assert_same_as_single_run(&f, "slurm");
}

#[test]
fn a_kubernetes_indexed_job_takes_its_count_from_the_argument_or_the_variable() {
    let f = fixture();
    let pipeline = pipeline_file(&f, "k8s");
    compute(&f, &pipeline, "auto/3", &[("JOB_COMPLETION_INDEX", "0")]);
    let env = [
        ("JOB_COMPLETION_INDEX", "1"),
        ("LITTLEDATA_SHARD_COUNT", "3"),
    ];
    compute(&f, &pipeline, "auto", &env);
    compute(
        &f,
        &pipeline,
        "auto/3",
        &[
            ("JOB_COMPLETION_INDEX", "2"),
            ("LITTLEDATA_SHARD_COUNT", "3"),
        ],
    );
    assert_eq!(listing(&f.root.join("k8s/bottleneck")).len(), 6);
    expect_success(&"merge", &extract(&pipeline, &["merge"], &[]));
    assert_same_as_single_run(&f, "k8s");
}

/// Scheduler variables, the `--shard` argument, and what the refusal must mention.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);

#[test]
fn no_scheduler_a_stepped_array_or_a_missing_count_is_refused_before_any_work() {
    let f = fixture();
    let pipeline = pipeline_file(&f, "refused");
    let w = f.weights.to_str().unwrap();
    let cases: [Case; 4] = [
        (
            &[],
            "auto",
            &["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"],
        ),
        (
            &[
                ("SLURM_ARRAY_TASK_ID", "2"),
                ("SLURM_ARRAY_TASK_MIN", "0"),
                ("SLURM_ARRAY_TASK_MAX", "8"),
                ("SLURM_ARRAY_TASK_STEP", "2"),
            ],
            "auto",
            &["SLURM_ARRAY_TASK_STEP", "stepped"],
        ),
        (
            &[("JOB_COMPLETION_INDEX", "0")],
            "auto",
            &["JOB_COMPLETION_INDEX", "LITTLEDATA_SHARD_COUNT"],
        ),
        (
            &[
                ("JOB_COMPLETION_INDEX", "0"),
                ("LITTLEDATA_SHARD_COUNT", "2"),
            ],
            "auto/3",
            &["LITTLEDATA_SHARD_COUNT", "disagree"],
        ),
    ];
    for (env, shard, words) in cases {
        let out = extract(&pipeline, &["--weights", w, "--shard", shard], env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} {shard}: succeeded");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for word in words {
            assert!(
                stderr.contains(word),
                "{env:?} {shard}: no `{word}` in\n{stderr}"
            );
        }
        assert!(!f.root.join("refused").exists(), "{env:?}: wrote artifacts");
    }
}
