//! The tests' fixture: a tiny real-photo data folder (32×32 images, the real VGG16 weights)
//! with a trained top model, and quiet fine-tuning options.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use finetune::FinetuneOptions;
use pipeline::Pipeline;
use stage::{Metrics, StageOutcome};
use testkit::fixtures::{data_section, pipeline};

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
        let shared = testkit::shared_dir(test)?;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        testkit::link_cats_and_dogs(&shared, &data, 0..6, 1000..1003);
        Some(Self {
            artifacts: dir.path().join("artifacts"),
            weights: testkit::vgg16_weights(&shared),
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
            "{}[bottleneck]\nweights = {:?}\nbatch_size = 4\ntarget_size = [32, 32]\n\n\
             [top]\nepochs = 3\nbatch_size = 4\n\n\
             [finetune]\nepochs = 2\nbatch_size = 4\nviews = 3\n",
            data_section(&self.data, artifacts, [32, 32]),
            self.weights.to_str().unwrap(),
        );
        pipeline(&text, extra)
    }

    /// Extracts bottleneck features and trains the top model for `p`, quietly.
    pub fn train_top(&self, p: &Pipeline) {
        let mut e = extract::ExtractOptions::new(Device::Cpu);
        e.progress = false;
        extract::extract(p, &e).unwrap();
        let mut t = train_top::TopOptions::new(Device::Cpu);
        t.stage.verbosity = engine::Verbosity::Quiet;
        train_top::train_top(p, &t).unwrap();
    }
}

/// Quiet fine-tuning options on the CPU.
pub fn options() -> FinetuneOptions {
    let mut o = FinetuneOptions::new(Device::Cpu);
    o.stage.verbosity = engine::Verbosity::Quiet;
    o
}

/// The metrics of a run that trained.
pub fn trained(outcome: &StageOutcome) -> &Metrics {
    match outcome {
        StageOutcome::Trained(m) => m,
        other => panic!("expected a trained model, got {other:?}"),
    }
}
