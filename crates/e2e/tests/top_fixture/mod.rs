//! The tests' fixture, a synthetic data folder with random VGG16 weights, and quiet extraction
//! and training.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use pipeline::Pipeline;
use testkit::fixtures::{synthetic_pipeline, write_random_vgg16, write_split};

/// Runs the extraction stage quietly with the weights file `weights`.
pub fn extract_features(p: &Pipeline, weights: &Path, force: bool) -> extract::ExtractReport {
    let mut o = extract::ExtractOptions::new(Device::Cpu);
    o.weights = Some(weights.to_path_buf());
    o.progress = false;
    o.force = force;
    extract::extract(p, &o).unwrap()
}

/// Quiet top-model options on the CPU.
pub fn top_options() -> train_top::TopOptions {
    let mut o = train_top::TopOptions::new(Device::Cpu);
    o.stage.verbosity = engine::Verbosity::Quiet;
    o
}

/// A synthetic data folder (2 classes) with random VGG16 weights, in a temporary folder.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub artifacts: PathBuf,
    pub weights: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        write_split(&data, "train", &[("cats", 6), ("dogs", 6)], 1);
        write_split(&data, "validation", &[("cats", 3), ("dogs", 3)], 2);
        let weights = dir.path().join("vgg16.safetensors");
        write_random_vgg16(&weights, 11);
        Self {
            artifacts: dir.path().join("artifacts"),
            data,
            weights,
            dir,
        }
    }

    pub fn pipeline(&self, extra: &[&str]) -> Pipeline {
        synthetic_pipeline(&self.data, &self.artifacts, extra)
    }
}
