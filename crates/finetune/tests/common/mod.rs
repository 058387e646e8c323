//! Helpers shared by the integration tests: the shared-data lookup, a tiny real-photo fixture
//! (32×32 images, the real VGG16 weights) with a trained top model, and file helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use finetune::{FinetuneOptions, FinetuneOutcome, MetricsFile};
use pipeline::Pipeline;

/// The shared data folder from `LITTLEDATA_SHARED`. When it is unset: panics if `CI` is set,
/// otherwise prints a note and returns `None` so the test can return early.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LITTLEDATA_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: LITTLEDATA_SHARED is not set; it must name the shared folder \
                     (with data/, models/ and reference/) when CI is set"
                );
            }
            eprintln!(
                "note: {test} skipped: set LITTLEDATA_SHARED to the shared data folder to run it"
            );
            None
        }
    }
}

/// The VGG16 weights: `LITTLEDATA_VGG16_WEIGHTS` when set, else the shared folder's copy.
pub fn weights_file(shared: &Path) -> PathBuf {
    match std::env::var_os("LITTLEDATA_VGG16_WEIGHTS") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => shared.join("models/vgg16_imagenet_features.safetensors"),
    }
}

/// Links `<animal>.<i>.jpg` for `i` in `ids` from the shared photos into `<dst>/<class>/`.
pub fn link_photos(
    shared: &Path,
    dst: &Path,
    class: &str,
    animal: &str,
    ids: std::ops::Range<usize>,
) {
    let src = shared.join("data/dogs-vs-cats/train");
    let dir = dst.join(class);
    std::fs::create_dir_all(&dir).unwrap();
    for i in ids {
        let name = format!("{animal}.{i}.jpg");
        let from = src.join(&name);
        assert!(
            from.exists(),
            "{} is missing from the shared data",
            from.display()
        );
        std::os::unix::fs::symlink(&from, dir.join(&name)).unwrap();
    }
}

/// A tiny fixture: 6 + 6 training and 3 + 3 validation Kaggle photos at 32×32, the real
/// VGG16 weights, in a temporary folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub artifacts: PathBuf,
    pub weights: PathBuf,
}

impl Fixture {
    /// The fixture, or `None` (after a note) when the shared folder is not available outside
    /// CI.
    pub fn new(test: &str) -> Option<Self> {
        let shared = shared_dir(test)?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        for (class, animal) in [("cats", "cat"), ("dogs", "dog")] {
            link_photos(&shared, &data.join("train"), class, animal, 0..6);
            link_photos(&shared, &data.join("validation"), class, animal, 1000..1003);
        }
        Some(Self {
            artifacts: dir.path().join("artifacts"),
            weights: weights_file(&shared),
            data,
            dir,
        })
    }

    /// The fixture's pipeline with `extra` overrides (`section.key=value`).
    pub fn pipeline(&self, extra: &[&str]) -> Pipeline {
        self.pipeline_in(&self.artifacts, extra)
    }

    /// The fixture's pipeline writing into `artifacts`.
    pub fn pipeline_in(&self, artifacts: &Path, extra: &[&str]) -> Pipeline {
        let text = format!(
            "[data]\ndir = {:?}\nartifacts = {:?}\ntarget_size = [32, 32]\nseed = 7\n\n\
             [bottleneck]\nweights = {:?}\nbatch_size = 4\n\n\
             [top]\nepochs = 3\nbatch_size = 4\n\n\
             [finetune]\nepochs = 2\nbatch_size = 4\nviews = 3\n",
            self.data.to_str().unwrap(),
            artifacts.to_str().unwrap(),
            self.weights.to_str().unwrap(),
        );
        let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Pipeline::from_toml_str(&text, Path::new("test.toml"), &overrides).unwrap()
    }

    /// Extracts bottleneck features and trains the top model for `p`, quietly.
    pub fn train_top(&self, p: &Pipeline) {
        let mut e = extract::ExtractOptions::new(Device::Cpu);
        e.progress = false;
        extract::extract(p, &e).unwrap();
        let mut t = train_top::TopOptions::new(Device::Cpu);
        t.verbosity = engine::Verbosity::Quiet;
        train_top::train_top(p, &t).unwrap();
    }
}

/// Quiet fine-tuning options on the CPU.
pub fn options() -> FinetuneOptions {
    let mut o = FinetuneOptions::new(Device::Cpu);
    o.verbosity = engine::Verbosity::Quiet;
    o.progress = false;
    o
}

/// The metrics of a run that trained.
pub fn trained(outcome: &FinetuneOutcome) -> &MetricsFile {
    match outcome {
        FinetuneOutcome::Trained(m) => m,
        other => panic!("expected a trained model, got {other:?}"),
    }
}

/// The tensors and metadata of a safetensors file.
pub fn load(path: &Path) -> (BTreeMap<String, Tensor>, artifact::Metadata) {
    artifact::load(path, &Device::Cpu).unwrap()
}

/// A tensor's values as f32 (any float dtype).
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// A float tensor's raw f32 bits (for bit-for-bit comparisons).
pub fn bits(t: &Tensor) -> Vec<u32> {
    values(t).iter().map(|v| v.to_bits()).collect()
}

/// Every file under `dir` (recursively), relative, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
