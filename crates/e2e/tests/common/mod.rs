//! A small project in a temporary folder — noise images, random VGG16 weights, a pipeline
//! file — whose stages are run for real (through their libraries) (quietly, on the CPU, on 32×32 images) to give the
//! report an artifacts folder like the one `just all` leaves.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use candle_core::Device;
use engine::Verbosity;
use pipeline::Pipeline;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use stage::{EvalReport, StageOptions};

/// Validation images per class; the models are near chance on noise, so some are wrong.
pub const VALIDATION: usize = 8;

/// A temporary project folder.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub artifacts: PathBuf,
    pub pipeline_file: PathBuf,
    pub weights: PathBuf,
}

/// Writes `count` noise images per class, Kaggle-named (`cat.3.jpg`), of varying sizes.
fn write_split(dir: &Path, count: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (class, animal) in [("cats", "cat"), ("dogs", "dog")] {
        let folder = dir.join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..count {
            let (w, h) = (rng.random_range(36..80), rng.random_range(36..80));
            let img = image::RgbImage::from_fn(w, h, |_, _| {
                image::Rgb([rng.random(), rng.random(), rng.random()])
            });
            img.save(folder.join(format!("{animal}.{}.jpg", seed * 1000 + i as u64)))
                .unwrap();
        }
    }
}

impl Project {
    /// Data (`train`: 6 per class, `validation`: [`VALIDATION`] per class, `test`: 4 per
    /// class), random VGG16 weights and a pipeline file with 2 epochs per stage.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join("data");
        write_split(&data.join("train"), 6, 1);
        write_split(&data.join("validation"), VALIDATION, 2);
        write_split(&data.join("test"), 4, 3);
        let weights = root.join("vgg16.safetensors");
        testkit::fixtures::write_random_vgg16(&weights, 11);
        let artifacts = root.join("artifacts");
        let pipeline_file = root.join("pipeline.toml");
        let text = format!(
            "[data]\ndir = {:?}\nartifacts = {:?}\ntarget_size = [32, 32]\nseed = 7\n\n\
             [small_cnn]\nepochs = 2\nbatch_size = 4\n\n\
             [bottleneck]\nweights = {:?}\nbatch_size = 4\ntarget_size = [32, 32]\n\n\
             [top]\nepochs = 3\nbatch_size = 4\nkfold = 2\n\n\
             [finetune]\nepochs = 2\nbatch_size = 4\nviews = 2\n",
            data.to_str().unwrap(),
            artifacts.to_str().unwrap(),
            weights.to_str().unwrap(),
        );
        std::fs::write(&pipeline_file, text).unwrap();
        Self {
            dir,
            data,
            artifacts,
            pipeline_file,
            weights,
        }
    }

    /// The project's pipeline.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::load(&self.pipeline_file, &[]).unwrap()
    }

    /// Method 1: trains the small convnet.
    pub fn train_small(&self) {
        let mut o = StageOptions::new(Device::Cpu);
        o.verbosity = Verbosity::Quiet;
        train_small::train_small(&self.pipeline(), &o).unwrap();
    }

    /// Method 2: extracts the bottleneck features and trains the top model.
    pub fn train_top(&self) {
        let p = self.pipeline();
        let mut e = extract::ExtractOptions::new(Device::Cpu);
        e.progress = false;
        extract::extract(&p, &e).unwrap();
        let mut t = train_top::TopOptions::new(Device::Cpu);
        t.stage.verbosity = Verbosity::Quiet;
        train_top::train_top(&p, &t).unwrap();
    }

    /// k-fold cross-validation of the top model (`top.kfold` folds).
    pub fn kfold(&self) -> stage::KFoldReport {
        let p = self.pipeline();
        let o = train_top::KFoldOptions {
            k: p.top.kfold,
            force: false,
            device: Device::Cpu,
            interrupt: None,
        };
        train_top::run_kfold(&p, &o, &mut |_| {}).unwrap().0
    }

    /// Method 3: fine-tunes block 5 and the top model.
    pub fn finetune(&self) {
        let mut o = finetune::FinetuneOptions::new(Device::Cpu);
        o.stage.verbosity = Verbosity::Quiet;
        finetune::finetune(&self.pipeline(), &o).unwrap();
    }

    /// `classify evaluate --json <artifacts>/<stage>/evaluation/<split>.json` on
    /// `data/<split>`.
    pub fn evaluate(&self, stage: &str, split: &str) -> EvalReport {
        let dir = self.artifacts.join(stage);
        let model = classify::load_model(&dir, Some(&self.weights), &Device::Cpu).unwrap();
        let options = classify::EvalOptions {
            progress: false,
            ..Default::default()
        };
        let report = classify::evaluate(&model, &self.data.join(split), &options).unwrap();
        let json = dir.join("evaluation").join(format!("{split}.json"));
        classify::write_output(&json, &report.to_json()).unwrap();
        report
    }

    /// Builds the report with the library.
    pub fn report(&self) -> report::Result<report::ReportOutput> {
        let options = report::ReportOptions {
            pipeline_file: self.pipeline_file.clone(),
            overrides: Vec::new(),
            max_mistakes: report::DEFAULT_MAX_MISTAKES,
            source_dir: self.dir.path().to_path_buf(),
        };
        report::build_report(&self.pipeline(), &options)
    }

    /// Runs the `report` binary with `--pipeline` and `args`, in the project folder.
    pub fn run_binary(&self, args: &[&str]) -> Output {
        std::process::Command::new(testkit::workspace_binary("report"))
            .arg("--pipeline")
            .arg(&self.pipeline_file)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("LITTLEDATA_PIPELINE")
            .output()
            .unwrap()
    }

    /// A stage's `metrics.json` as JSON.
    pub fn metrics(&self, stage: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.artifacts.join(stage).join("metrics.json"));
        serde_json::from_str(&text.unwrap()).unwrap()
    }
}

/// `0.8125`, as the report writes figures.
pub fn fig(v: f64) -> String {
    format!("{v:.4}")
}

/// The line of `md` that starts with `prefix`.
pub fn line_starting<'a>(md: &'a str, prefix: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in:\n{md}"))
}
