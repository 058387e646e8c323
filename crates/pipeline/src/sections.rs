//! The typed sections of a pipeline file, with their defaults (the post's recipe) and ranges.

use crate::training::{Metric, OptimizerConfig, Schedule};
use imagedata::{AugmentConfig, ClassMode, ConfigError, Interpolation, Preprocessing, TargetSize};
use models::{BackboneKind, TopLayers};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Every setting of every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Where data and artifacts live, and how images are read.
    pub data: DataSection,
    /// `prep split`.
    pub split: SplitSection,
    /// `preview`.
    pub preview: PreviewSection,
    /// Method 1: the small convnet trained from scratch.
    pub small_cnn: SmallCnnSection,
    /// Method 2, part 1: VGG16 bottleneck features.
    pub bottleneck: BottleneckSection,
    /// Method 2, part 2: the top model on cached features.
    pub top: TopSection,
    /// Method 3: fine-tuning VGG16 block 5 + the top model.
    pub finetune: FinetuneSection,
    /// `audit`: label issues, duplicates, leakage, strays and the learning curve.
    pub audit: AuditSection,
}

/// `[data]`: folders, image size and labelling shared by every stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// The split's root: `train/`, `validation/` and optionally `test/` class folders.
    pub dir: PathBuf,
    /// Where stages write their artifacts.
    pub artifacts: PathBuf,
    /// `[height, width]` every image is resized to.
    pub target_size: [u32; 2],
    /// Resampling used when resizing (`nearest`, as Keras, or `bilinear`).
    pub interpolation: Interpolation,
    /// `binary` (one sigmoid unit, two classes) or `categorical` (softmax); unset: binary for
    /// two classes, categorical for more.
    pub class_mode: Option<ClassMode>,
    /// The one seed every random choice flows from.
    pub seed: u64,
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            dir: "data".into(),
            artifacts: "artifacts".into(),
            target_size: [150, 150],
            interpolation: Interpolation::Nearest,
            class_mode: None,
            seed: 42,
        }
    }
}

/// `[split]`: how `prep split` divides the source per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitSection {
    /// The source folder (Kaggle-style flat, or one subfolder per class); unset: the default
    /// source described in the README.
    pub source: Option<PathBuf>,
    /// Training images per class.
    pub train: usize,
    /// Validation images per class.
    pub validation: usize,
    /// Test images per class (0: no test split).
    pub test: usize,
    /// Shuffle (from the seed) instead of taking files in numeric order.
    pub shuffle: bool,
    /// Files naming photos to leave out of the split (an `audit.json`, a JSON array of paths,
    /// or a text file with one per line); `--exclude` flags replace this list.
    pub exclude: Vec<PathBuf>,
}

impl Default for SplitSection {
    fn default() -> Self {
        Self {
            source: None,
            train: 1000,
            validation: 500,
            test: 0,
            shuffle: false,
            exclude: Vec::new(),
        }
    }
}

/// `[audit]`: what `audit` looks for in the cached features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Folds of the out-of-fold probabilities (and of the choice of the L2 penalty).
    pub folds: usize,
    /// The linear probe's L2 penalties tried; the one with the lowest k-fold log-loss on the
    /// train split is used.
    pub l2: Vec<f64>,
    /// Cosine similarity of the centred, normalised features above which two photos are near
    /// copies.
    pub near_duplicate: f64,
    /// Bits (of 256) in which two photos' difference hashes may differ for them to count as
    /// near copies: resized and re-encoded copies whose features drift apart.
    pub near_hash_bits: u32,
    /// Nearest photos a stray's distance is averaged over.
    pub neighbours: usize,
    /// Training photos per class of the learning curve (sizes above the smallest class are
    /// dropped; every photo is always the last point).
    pub curve_sizes: Vec<usize>,
    /// Random subsets per size of the learning curve.
    pub curve_seeds: usize,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            folds: 5,
            l2: vec![1e-4, 1e-3, 1e-2, 1e-1, 1.0],
            near_duplicate: 0.9,
            near_hash_bits: 24,
            neighbours: 10,
            curve_sizes: vec![5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
            curve_seeds: 3,
        }
    }
}

/// `[preview]`: the augmentation preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreviewSection {
    /// How many augmented variants to write.
    pub count: usize,
    /// Output folder.
    pub out: PathBuf,
    /// The augmentation shown (the small convnet's, by default).
    pub augment: AugmentConfig,
}

impl Default for PreviewSection {
    fn default() -> Self {
        Self {
            count: 20,
            out: "preview".into(),
            augment: AugmentConfig::blog(),
        }
    }
}

/// `[small_cnn]`: method 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmallCnnSection {
    /// Training epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Optimizer and learning rate.
    pub optimizer: OptimizerConfig,
    /// Pixel preprocessing (train and validation alike).
    pub preprocessing: Preprocessing,
    /// Augmentation of the training stream (validation is never augmented).
    pub augment: AugmentConfig,
    /// Stop after this many epochs without improvement of `monitor` (unset: never).
    pub early_stopping_patience: Option<usize>,
    /// Metric that picks the best epoch: `val_acc` or `val_loss`.
    pub monitor: Monitor,
}

impl Default for SmallCnnSection {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch_size: 16,
            optimizer: OptimizerConfig::rmsprop(),
            preprocessing: Preprocessing::rescale(1.0 / 255.0),
            augment: AugmentConfig::blog(),
            early_stopping_patience: None,
            monitor: Monitor::ValAcc,
        }
    }
}

/// `[bottleneck]`: the pretrained backbone and its feature extraction (the backbone, its input
/// size, preprocessing and weights also serve `[top]` and `[finetune]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BottleneckSection {
    /// The pretrained backbone (`vgg16`, `efficientnet_lite0`, ...).
    pub backbone: BackboneKind,
    /// Weights file (unset: the backbone's environment variable, such as
    /// `LITTLEDATA_VGG16_WEIGHTS`, then the hf-hub cache, then a download).
    pub weights: Option<PathBuf>,
    /// `[height, width]` images are resized to for the backbone (unset: the backbone's default,
    /// 150×150 for VGG16 as in the post, 224×224 for the others).
    pub target_size: Option<[u32; 2]>,
    /// Pixel preprocessing fed to the backbone (unset: what its pretrained weights expect; the
    /// post fed VGG16 1/255).
    pub preprocessing: Option<Preprocessing>,
    /// Images per forward batch.
    pub batch_size: usize,
    /// Augmented views per training image to extract besides the plain one (0: none).
    pub augmented_views: usize,
    /// Augmentation of those views.
    pub augment: AugmentConfig,
}

impl Default for BottleneckSection {
    fn default() -> Self {
        Self {
            backbone: BackboneKind::Vgg16,
            weights: None,
            target_size: None,
            preprocessing: None,
            batch_size: 16,
            augmented_views: 0,
            augment: AugmentConfig::blog(),
        }
    }
}

impl BottleneckSection {
    /// The backbone's input size `[height, width]`: `target_size`, else the backbone's default.
    pub fn input_size(&self) -> [u32; 2] {
        self.target_size.unwrap_or_else(|| {
            let (h, w) = self.backbone.default_target_size();
            [h as u32, w as u32]
        })
    }

    /// The backbone's input size as `(height, width)`.
    pub fn input_hw(&self) -> (usize, usize) {
        let [h, w] = self.input_size();
        (h as usize, w as usize)
    }

    /// The backbone's input size as an image size.
    pub fn target(&self) -> TargetSize {
        TargetSize::from(self.input_size())
    }

    /// The preprocessing fed to the backbone: `preprocessing`, else the backbone's own.
    pub fn pixel_preprocessing(&self) -> Preprocessing {
        self.preprocessing
            .unwrap_or_else(|| self.backbone.preprocessing())
    }
}

/// `[top]`: the top model trained on bottleneck features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopSection {
    /// Training epochs.
    pub epochs: usize,
    /// Feature vectors per batch.
    pub batch_size: usize,
    /// Optimizer and learning rate.
    pub optimizer: OptimizerConfig,
    /// Stop after this many epochs without improvement of `monitor` (unset: never).
    pub early_stopping_patience: Option<usize>,
    /// Metric that picks the best epoch.
    pub monitor: Monitor,
    /// Folds for `train-top --kfold` when the flag gives none.
    pub kfold: usize,
    /// Units of the hidden dense layer (0: none, one linear layer on the features).
    pub hidden_units: usize,
    /// Dropout rate before the output layer.
    pub dropout: f32,
}

impl TopSection {
    /// The top model's layers.
    pub fn layers(&self) -> TopLayers {
        TopLayers {
            hidden_units: self.hidden_units,
            dropout: self.dropout,
        }
    }
}

impl Default for TopSection {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch_size: 16,
            optimizer: OptimizerConfig::rmsprop(),
            early_stopping_patience: None,
            monitor: Monitor::ValAcc,
            kfold: 5,
            hidden_units: TopLayers::default().hidden_units,
            dropout: TopLayers::default().dropout,
        }
    }
}

/// `[finetune]`: the backbone's tail (VGG16: block 5) + the top, fine-tuned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FinetuneSection {
    /// Training epochs.
    pub epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Optimizer (the post: SGD, lr 1e-4, momentum 0.9).
    pub optimizer: OptimizerConfig,
    /// Augmentation of the training stream.
    pub augment: AugmentConfig,
    /// Cache the frozen part's outputs (VGG16: blocks 1–4) for `views` augmented views per
    /// image (else run the whole network live on every batch).
    pub view_cache: bool,
    /// Augmented views per training image in the cache.
    pub views: usize,
    /// Stop after this many epochs without improvement of `monitor` (unset: never).
    pub early_stopping_patience: Option<usize>,
    /// Metric that picks the best epoch.
    pub monitor: Monitor,
}

impl Default for FinetuneSection {
    fn default() -> Self {
        Self {
            epochs: 50,
            batch_size: 16,
            optimizer: OptimizerConfig::sgd(1e-4, 0.9),
            augment: AugmentConfig::blog(),
            view_cache: true,
            views: 10,
            early_stopping_patience: None,
            monitor: Monitor::ValAcc,
        }
    }
}

/// The metric that picks the best epoch (keep-best and early stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    /// Validation accuracy, higher is better.
    #[serde(rename = "val_acc")]
    ValAcc,
    /// Validation loss, lower is better.
    #[serde(rename = "val_loss")]
    ValLoss,
}

impl From<Monitor> for Metric {
    fn from(m: Monitor) -> Self {
        match m {
            Monitor::ValAcc => Metric::ValAcc,
            Monitor::ValLoss => Metric::ValLoss,
        }
    }
}

/// Gives each training section (which all have the keys `epochs`, `optimizer`, `monitor` and
/// `early_stopping_patience`) its `schedule()`.
macro_rules! training_schedule {
    ($($section:ty),+) => {$(
        impl $section {
            /// The keys that drive the training loop.
            pub fn schedule(&self) -> Schedule {
                Schedule {
                    epochs: self.epochs,
                    optimizer: self.optimizer.clone(),
                    monitor: self.monitor.into(),
                    early_stopping_patience: self.early_stopping_patience,
                }
            }
        }
    )+};
}

training_schedule!(SmallCnnSection, TopSection, FinetuneSection);

fn check_optimizer(section: &str, cfg: &OptimizerConfig) -> Result<(), ConfigError> {
    cfg.validate().map_err(|e| e.within(section))
}

fn at_least(key: &str, value: usize, min: usize) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::new(
            key,
            format!("must be at least {min}, got {value}"),
        ));
    }
    Ok(())
}

impl Pipeline {
    /// Checks every value's range; the error names the key (`section.key`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.data;
        for (i, s) in d.target_size.iter().enumerate() {
            if !(32..=4096).contains(s) {
                return Err(ConfigError::new(
                    format!("data.target_size[{i}]"),
                    format!("must be between 32 and 4096, got {s}"),
                ));
            }
        }
        let sp = &self.split;
        at_least("split.train", sp.train, 1)?;
        at_least("split.validation", sp.validation, 1)?;
        at_least("preview.count", self.preview.count, 1)?;
        self.preview
            .augment
            .validate()
            .map_err(|e| e.within("preview.augment"))?;

        let s = &self.small_cnn;
        at_least("small_cnn.epochs", s.epochs, 1)?;
        at_least("small_cnn.batch_size", s.batch_size, 1)?;
        check_optimizer("small_cnn.optimizer", &s.optimizer)?;
        s.preprocessing
            .validate()
            .map_err(|e| e.within("small_cnn.preprocessing"))?;
        s.augment
            .validate()
            .map_err(|e| e.within("small_cnn.augment"))?;

        let b = &self.bottleneck;
        at_least("bottleneck.batch_size", b.batch_size, 1)?;
        if let Some(p) = &b.preprocessing {
            p.validate()
                .map_err(|e| e.within("bottleneck.preprocessing"))?;
        }
        let min = b.backbone.min_input() as u32;
        for (i, s) in b.input_size().iter().enumerate() {
            if !(min..=4096).contains(s) {
                return Err(ConfigError::new(
                    format!("bottleneck.target_size[{i}]"),
                    format!(
                        "must be between {min} and 4096 for the backbone `{}`, got {s}",
                        b.backbone
                    ),
                ));
            }
        }
        b.augment
            .validate()
            .map_err(|e| e.within("bottleneck.augment"))?;

        let t = &self.top;
        at_least("top.epochs", t.epochs, 1)?;
        at_least("top.batch_size", t.batch_size, 1)?;
        at_least("top.kfold", t.kfold, 2)?;
        if !(0.0..1.0).contains(&t.dropout) {
            return Err(ConfigError::new(
                "top.dropout",
                format!("must be in [0, 1), got {}", t.dropout),
            ));
        }
        check_optimizer("top.optimizer", &t.optimizer)?;

        let f = &self.finetune;
        at_least("finetune.epochs", f.epochs, 1)?;
        at_least("finetune.batch_size", f.batch_size, 1)?;
        at_least("finetune.views", f.views, 1)?;
        check_optimizer("finetune.optimizer", &f.optimizer)?;
        f.augment
            .validate()
            .map_err(|e| e.within("finetune.augment"))?;

        let a = &self.audit;
        at_least("audit.folds", a.folds, 2)?;
        at_least("audit.neighbours", a.neighbours, 1)?;
        at_least("audit.curve_seeds", a.curve_seeds, 1)?;
        if a.l2.is_empty() || a.l2.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(ConfigError::new(
                "audit.l2",
                format!("must list positive penalties, got {:?}", a.l2),
            ));
        }
        if !(a.near_duplicate > 0.0 && a.near_duplicate <= 1.0) {
            return Err(ConfigError::new(
                "audit.near_duplicate",
                format!("must be in (0, 1], got {}", a.near_duplicate),
            ));
        }
        if a.curve_sizes.contains(&0) {
            return Err(ConfigError::new(
                "audit.curve_sizes",
                "sizes must be at least 1 photo per class",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_training_section_gives_its_schedule() {
        let mut p = Pipeline::default();
        p.top.epochs = 7;
        p.top.monitor = Monitor::ValLoss;
        p.top.early_stopping_patience = Some(3);
        let s = p.top.schedule();
        assert_eq!(
            (s.epochs, s.monitor, s.early_stopping_patience),
            (7, Metric::ValLoss, Some(3))
        );
        assert_eq!(s.optimizer, OptimizerConfig::rmsprop());
        assert_eq!(
            p.finetune.schedule().optimizer,
            OptimizerConfig::sgd(1e-4, 0.9)
        );
        assert_eq!(p.small_cnn.schedule().monitor, Metric::ValAcc);
    }
}
