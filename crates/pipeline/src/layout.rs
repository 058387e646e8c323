//! Where every stage writes under `data.artifacts`, and the stage names artifacts record in
//! their provenance: one place for the names that several stages, `classify` and the report
//! share.

use std::path::{Path, PathBuf};

use crate::Pipeline;

/// The stage names recorded in artifacts' provenance (`littledata.stage`).
pub mod stage {
    /// `extract`: bottleneck features.
    pub const EXTRACT: &str = "extract";
    /// `train-small`: the small convnet (method 1).
    pub const TRAIN_SMALL: &str = "train-small";
    /// `train-top`: the top model on bottleneck features (method 2).
    pub const TRAIN_TOP: &str = "train-top";
    /// `train-top --kfold`: k-fold cross-validation of the top model.
    pub const TRAIN_TOP_KFOLD: &str = "train-top-kfold";
    /// `finetune`: the fine-tuned backbone tail and top (method 3).
    pub const FINETUNE: &str = "finetune";
    /// `classify calibrate`: a model's temperature, fitted on the validation split.
    pub const CALIBRATE: &str = "calibrate";
    /// `audit`: label issues, duplicates, leakage, strays and the learning curve.
    pub const AUDIT: &str = "audit";
}

/// A trained model's file inside its stage folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// A model's temperature scaling inside its stage folder (`classify calibrate`).
pub const CALIBRATION_FILE: &str = "calibration.safetensors";
/// A training stage's figures inside its stage folder.
pub const METRICS_FILE: &str = "metrics.json";
/// The folder, inside a model's stage folder, where `classify evaluate --json` results live.
pub const EVALUATION_DIR: &str = "evaluation";
/// The audit's findings inside `audit/`.
pub const AUDIT_FILE: &str = "audit.json";
/// The k-fold results inside the top model's folder.
pub const KFOLD_FILE: &str = "kfold.json";

/// The folders of one artifacts root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The root (`data.artifacts`).
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `bottleneck/`: the features `extract` writes.
    pub fn bottleneck(&self) -> PathBuf {
        self.root.join("bottleneck")
    }

    /// `small_cnn/`: method 1's model.
    pub fn small_cnn(&self) -> PathBuf {
        self.root.join("small_cnn")
    }

    /// `top/`: method 2's top model.
    pub fn top(&self) -> PathBuf {
        self.root.join("top")
    }

    /// `finetune/`: method 3's model and caches.
    pub fn finetune(&self) -> PathBuf {
        self.root.join("finetune")
    }

    /// `audit/`: what `audit` found in the photos.
    pub fn audit(&self) -> PathBuf {
        self.root.join("audit")
    }

    /// `audit/audit.json`.
    pub fn audit_report(&self) -> PathBuf {
        self.audit().join(AUDIT_FILE)
    }

    /// `report/`: the report comparing the methods.
    pub fn report(&self) -> PathBuf {
        self.root.join("report")
    }

    /// `top/model.safetensors`: the trained top model fine-tuning starts from.
    pub fn top_model(&self) -> PathBuf {
        self.top().join(MODEL_FILE)
    }

    /// `top/kfold.json`.
    pub fn kfold(&self) -> PathBuf {
        self.top().join(KFOLD_FILE)
    }

    /// The evaluation results of the model in `model_dir` on the split `split`
    /// (`<model_dir>/evaluation/<split>.json`).
    pub fn evaluation(model_dir: &Path, split: &str) -> PathBuf {
        model_dir.join(EVALUATION_DIR).join(format!("{split}.json"))
    }
}

impl Pipeline {
    /// The folders under this pipeline's `data.artifacts`.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.data.artifacts)
    }
}
