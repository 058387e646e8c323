//! [`Classifier`]: a trained model as a library object, the one `classify predict` and
//! `classify serve` use.

use std::path::{Path, PathBuf};

use candle_core::Device;
use image::RgbImage;
use imagedata::{Interpolation, Limits, decode_resized, load_resized, resize_rgb};
use serde::{Deserialize, Serialize};

use crate::error::{ClassifyError, Result};
use crate::explain::Explanation;
use crate::model::{LoadedModel, load_model};

/// How [`Classifier::load_with`] opens a model.
#[derive(Debug, Clone)]
pub struct ClassifierOptions {
    /// The backbone's weights file, for models built on one (`None`: its environment
    /// variable, then the hf-hub cache, then a download).
    pub weights: Option<PathBuf>,
    /// The device to run on.
    pub device: Device,
    /// Apply the model's calibration (`calibration.safetensors` beside it), when it has one.
    pub calibrated: bool,
    /// Average each image's probabilities with its left-right mirror's.
    pub tta: bool,
    /// Limits every decoded image is checked against before its pixels are decoded.
    pub limits: Limits,
}

impl Default for ClassifierOptions {
    /// CPU, calibrated, no test-time augmentation, the default decoding limits.
    fn default() -> Self {
        Self {
            weights: None,
            device: Device::Cpu,
            calibrated: true,
            tta: false,
            limits: Limits::default(),
        }
    }
}

/// One image's classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// The predicted class.
    pub class: String,
    /// Its index in [`Classifier::classes`].
    pub index: usize,
    /// Its probability.
    pub probability: f32,
    /// Every class's probability, in class order.
    pub probabilities: Vec<f32>,
}

/// A model artifact opened for classifying images: any model the project makes (the small
/// convnet, a top model or a fine-tuned model, on any backbone), with its resize filter,
/// preprocessing and calibration as the artifact records them.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # testkit::fixtures::write_brightness_model(dir.path());
/// # let model_dir = dir.path();
/// use classify::Classifier;
///
/// let classifier = Classifier::load(model_dir)?; // a stage folder such as artifacts/top
/// let photo = image::RgbImage::from_pixel(64, 48, image::Rgb([230, 230, 230]));
/// let scores = classifier.predict(&photo)?;
/// assert_eq!(scores.class, "bright");
/// assert_eq!(classifier.classes(), ["bright", "dark"]);
/// assert!((scores.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
///
/// let both = classifier.predict_batch(&[photo.clone(), image::RgbImage::new(32, 32)])?;
/// assert_eq!(both[1].class, "dark");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Classifier {
    model: LoadedModel,
    tta: bool,
    limits: Limits,
}

impl Classifier {
    /// Opens the model artifact at `path` (a stage's folder or its `model.safetensors`) on the
    /// CPU, calibrated when it has a calibration ([`ClassifierOptions::default`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &ClassifierOptions::default())
    }

    /// Opens the model artifact at `path` with `options`.
    pub fn load_with(path: impl AsRef<Path>, options: &ClassifierOptions) -> Result<Self> {
        let model = load_model(path.as_ref(), options.weights.as_deref(), &options.device)?;
        let model = if options.calibrated {
            model
        } else {
            model.uncalibrated()
        };
        Ok(Self::from_model(model, options))
    }

    /// A classifier over a model already loaded (its calibration as loaded).
    pub fn from_model(model: LoadedModel, options: &ClassifierOptions) -> Self {
        Self {
            model,
            tta: options.tta,
            limits: options.limits,
        }
    }

    /// The class names, in the order of [`Scores::probabilities`].
    pub fn classes(&self) -> &[String] {
        &self.model.spec.classes
    }

    /// The model as loaded: its spec, file, digest, backbone and calibration.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    /// Whether probabilities are averaged with the mirror image's.
    pub fn tta(&self) -> bool {
        self.tta
    }

    /// Decodes an in-memory JPEG or PNG (`name` is used in error messages) and resizes it to
    /// the model's input size. The header is checked against the limits before any pixel
    /// buffer is allocated.
    pub fn decode(&self, bytes: &[u8], name: &Path) -> Result<RgbImage> {
        let m = &self.model;
        Ok(decode_resized(
            bytes,
            name,
            m.target_size(),
            m.interpolation,
            &self.limits,
        )?)
    }

    /// Reads, decodes and resizes the image file at `path`.
    pub fn open(&self, path: &Path) -> Result<RgbImage> {
        let m = &self.model;
        Ok(load_resized(
            path,
            m.target_size(),
            m.interpolation,
            &self.limits,
        )?)
    }

    /// Classifies one image of any size.
    pub fn predict(&self, image: &RgbImage) -> Result<Scores> {
        let mut scores = self.predict_batch(std::slice::from_ref(image))?;
        Ok(scores.remove(0))
    }

    /// Classifies images of any size in one forward pass, in the order given.
    pub fn predict_batch(&self, images: &[RgbImage]) -> Result<Vec<Scores>> {
        let size = self.model.target_size();
        let fits = |i: &RgbImage| i.width() == size.width && i.height() == size.height;
        if images.iter().all(fits) {
            return self.predict_prepared(images);
        }
        let resized = images
            .iter()
            .map(|i| {
                if fits(i) {
                    Ok(i.clone())
                } else {
                    resize_rgb(i, size, self.model.interpolation, Path::new("image"))
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        self.predict_prepared(&resized)
    }

    /// Classifies images already at the model's input size (as [`Classifier::decode`] returns
    /// them) in one forward pass.
    pub fn predict_prepared(&self, images: &[RgbImage]) -> Result<Vec<Scores>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = imagedata::images_to_tensor(
            images,
            &self.model.spec.preprocessing,
            &self.model.device,
        )?;
        let rows = self.model.probabilities(&x, self.tta)?.to_vec2::<f32>()?;
        Ok(rows.into_iter().map(|row| self.scores(row)).collect())
    }

    /// Reads and classifies the image file at `path`.
    pub fn predict_file(&self, path: &Path) -> Result<Scores> {
        let image = self.open(path)?;
        self.predict_prepared(std::slice::from_ref(&image))
            .map(|mut s| s.remove(0))
    }

    /// Whether [`Classifier::explain`] works for this model: a top or fine-tuned model on
    /// VGG16 or EfficientNet-Lite0 (not the small convnet, which has no backbone, nor the hub
    /// backbones, which give pooled features only).
    pub fn can_explain(&self) -> bool {
        self.model.model.supports_grad_cam()
    }

    /// `Ok` when [`Classifier::explain`] works for this model, otherwise the error saying
    /// why, naming the model file.
    pub fn check_explain(&self) -> Result<()> {
        self.model
            .model
            .check_grad_cam()
            .map_err(|e| ClassifyError::NotExplainable {
                path: self.model.path.clone(),
                reason: e.to_string(),
            })
    }

    /// Classifies `image` (any size) and computes the Grad-CAM of `class` on it (by default
    /// the predicted class): which regions raised that class's score, drawn over `image` at
    /// its own size. An error for a model that cannot be explained
    /// ([`Classifier::check_explain`]) or a class out of range.
    pub fn explain(&self, image: &RgbImage, class: Option<usize>) -> Result<Explanation> {
        self.check_explain()?;
        let size = self.model.target_size();
        let input = if image.width() == size.width && image.height() == size.height {
            image.clone()
        } else {
            resize_rgb(image, size, self.model.interpolation, Path::new("image"))?
        };
        let scores = self
            .predict_prepared(std::slice::from_ref(&input))?
            .remove(0);
        let class = class.unwrap_or(scores.index);
        if class >= self.classes().len() {
            return Err(models::ModelError::GradCam(format!(
                "class {class} out of range: the model has {} classes",
                self.classes().len()
            ))
            .into());
        }
        let x = imagedata::images_to_tensor(
            std::slice::from_ref(&input),
            &self.model.spec.preprocessing,
            &self.model.device,
        )?;
        let cam = self.model.model.grad_cam(&x, class)?.remove(0);
        let overlay = models::gradcam::overlay(image, &cam, models::gradcam::OVERLAY_ALPHA);
        Ok(Explanation {
            class_name: self.classes()[class].clone(),
            scores,
            class,
            cam,
            overlay,
        })
    }

    /// Reads the image file at `path` at its own size (checked against the decoding limits)
    /// and explains `class` on it (see [`Classifier::explain`]).
    pub fn explain_file(&self, path: &Path, class: Option<usize>) -> Result<Explanation> {
        let image = imagedata::load_rgb(path, &self.limits)?;
        self.explain(&image, class)
    }

    fn scores(&self, probabilities: Vec<f32>) -> Scores {
        let index = engine::argmax(&probabilities);
        Scores {
            class: self.classes().get(index).cloned().unwrap_or_default(),
            index,
            probability: probabilities.get(index).copied().unwrap_or(0.0),
            probabilities,
        }
    }

    /// What the model is, as `classify serve` answers `GET /model`.
    pub fn info(&self) -> ModelInfo {
        let m = &self.model;
        let dir = m.path.parent().unwrap_or(Path::new("."));
        let metrics: Option<stage::Metrics> =
            stage::read_json(&dir.join(pipeline::layout::METRICS_FILE));
        let (h, w) = m.spec.target_size;
        ModelInfo {
            name: m.name(),
            file: m.path.clone(),
            sha256: m.sha256.clone(),
            architecture: m.spec.architecture.name().into(),
            backbone: m.spec.backbone_name().map(str::to_string),
            backbone_sha256: m.spec.backbone.as_ref().map(|b| b.sha256.clone()),
            classes: m.spec.classes.clone(),
            input_size: [h, w],
            interpolation: m.interpolation,
            tta: self.tta,
            validation_accuracy: metrics.as_ref().map(|x| x.summary.saved_val_acc),
            trained_by: metrics.map(|x| x.stage),
            calibration: m.calibration.as_ref().map(|c| CalibrationInfo {
                applied: c.calibration.applied,
                temperature: c.calibration.temperature,
                sha256: c.sha256.clone(),
                ece_before: c.calibration.ece_before,
                ece_after: c.calibration.ece_after,
                samples: c.calibration.samples,
            }),
            calibration_skipped: m.calibration_skipped.clone(),
        }
    }
}

/// A model's description (`GET /model`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Its stage folder and what it is, such as `top (top model on efficientnet_lite0)`.
    pub name: String,
    /// The artifact file.
    pub file: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// `small_cnn`, `top` or `finetune`.
    pub architecture: String,
    /// The pretrained backbone, for models built on one.
    pub backbone: Option<String>,
    /// The sha256 of the backbone's weights file.
    pub backbone_sha256: Option<String>,
    /// Class names, in probability order.
    pub classes: Vec<String>,
    /// `[height, width]` of the network's input.
    pub input_size: [usize; 2],
    /// The resize filter.
    pub interpolation: Interpolation,
    /// Whether probabilities are averaged with the mirror image's.
    pub tta: bool,
    /// The validation accuracy its training stage recorded (`metrics.json` beside it).
    pub validation_accuracy: Option<f64>,
    /// The stage that trained it.
    pub trained_by: Option<String>,
    /// The calibration applied, if any.
    pub calibration: Option<CalibrationInfo>,
    /// Why a calibration file beside the model was not applied.
    pub calibration_skipped: Option<String>,
}

/// The calibration part of [`ModelInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationInfo {
    /// Whether the temperature is applied (only when it helped out of sample).
    pub applied: bool,
    /// The temperature fitted; it divides the logits when `applied`.
    pub temperature: f64,
    /// The calibration file's sha256.
    pub sha256: String,
    /// ECE (15 bins) before calibration on the photos it was fitted on.
    pub ece_before: f64,
    /// ECE after, by two-fold cross-fitting.
    pub ece_after: f64,
    /// Photos it was fitted on.
    pub samples: usize,
}
