//! Opening a model artifact: everything comes from its metadata.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use imagedata::{Interpolation, TargetSize};
use models::{
    Backbone, MODEL_SPEC_KEY, Mode, Model, ModelError, ModelSpec, Network, ResolvedWeights,
    load_from_spec,
};
use pipeline::layout::MODEL_FILE;
use stage::Calibration;

use crate::error::{ClassifyError, Result};

/// The metadata key that marks a training checkpoint (written by the engine).
const CHECKPOINT_FORMAT_KEY: &str = "engine.format";

/// A model rebuilt from its artifact, ready to classify raw images.
#[derive(Debug)]
pub struct LoadedModel {
    /// The artifact file.
    pub path: PathBuf,
    /// What the artifact says it holds.
    pub spec: ModelSpec,
    /// The resize filter the model's images were prepared with.
    pub interpolation: Interpolation,
    /// Whether the artifact records the resize filter (older or foreign artifacts do not; the
    /// default, `nearest`, is used then).
    pub interpolation_recorded: bool,
    /// The backbone's weights, for models built on one.
    pub backbone: Option<ResolvedWeights>,
    /// The network, on preprocessed images `[N, 3, H, W]`.
    pub model: Model,
    /// The device it runs on.
    pub device: Device,
    /// sha256 of the artifact file.
    pub sha256: String,
    /// The temperature scaling applied to the logits, when the model's folder holds a
    /// calibration fitted for this file.
    pub calibration: Option<AppliedCalibration>,
    /// Why a calibration file beside the model was not applied (fitted for another model
    /// file, unreadable).
    pub calibration_skipped: Option<String>,
}

/// A calibration in use: what [`stage::Calibration`] fitted, and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedCalibration {
    /// The calibration file.
    pub path: PathBuf,
    /// Its sha256 (recorded by evaluations made with it).
    pub sha256: String,
    /// What it holds.
    pub calibration: Calibration,
}

/// A network whose logits are divided by a temperature: the calibrated model as the engine's
/// evaluation sees it (the predicted class is unchanged; the probabilities and the loss are
/// the calibrated ones).
pub struct Tempered<'a> {
    network: &'a dyn Network,
    temperature: f64,
}

impl<'a> Tempered<'a> {
    /// `network` with its logits divided by `temperature` (1: unchanged).
    pub fn new(network: &'a dyn Network, temperature: f64) -> Self {
        Self {
            network,
            temperature,
        }
    }
}

impl Network for Tempered<'_> {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        let logits = self.network.forward_t(x, mode)?;
        if self.temperature == 1.0 {
            return Ok(logits);
        }
        logits.affine(1.0 / self.temperature, 0.0)
    }

    fn output_units(&self) -> usize {
        self.network.output_units()
    }
}

impl LoadedModel {
    /// The input size as an image size.
    pub fn target_size(&self) -> TargetSize {
        let (h, w) = self.spec.target_size;
        TargetSize::new(h as u32, w as u32)
    }

    /// The temperature applied to the logits: `None` when uncalibrated, or when the
    /// calibration found that a temperature does not help out of sample.
    pub fn applied_temperature(&self) -> Option<f64> {
        self.calibration
            .as_ref()
            .filter(|c| c.calibration.applied)
            .map(|c| c.calibration.temperature)
    }

    /// The temperature the logits are divided by (1 when none is applied).
    pub fn temperature(&self) -> f64 {
        self.applied_temperature().unwrap_or(1.0)
    }

    /// The network as it classifies: with the calibration's temperature, when there is one.
    pub fn network(&self) -> Tempered<'_> {
        Tempered::new(&self.model, self.temperature())
    }

    /// The model without its calibration (the raw probabilities; what `calibrate` fits on).
    pub fn uncalibrated(mut self) -> Self {
        self.calibration = None;
        self
    }

    /// Class probabilities `[N, classes]` of preprocessed images `x` (see [`probabilities`]),
    /// calibrated when the model is.
    pub fn probabilities(&self, x: &Tensor, tta: bool) -> Result<Tensor> {
        probabilities(&self.network(), x, tta)
    }

    /// The raw logits `[N, units]` of preprocessed images `x`, in evaluation mode and without
    /// the temperature.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.model.forward_eval(x)?)
    }

    /// A one-line description: file, architecture (and backbone), input size, classes.
    pub fn describe(&self) -> String {
        let (h, w) = self.spec.target_size;
        format!(
            "{} ({}, {h}x{w}, {} classes: {})",
            self.path.display(),
            self.kind(),
            self.spec.classes.len(),
            self.spec.classes.join(", ")
        )
    }

    /// The architecture and the backbone it builds on: `top on efficientnet_lite0`.
    fn kind(&self) -> String {
        match self.spec.backbone_name() {
            Some(b) => format!("{} on {b}", self.spec.architecture),
            None => self.spec.architecture.to_string(),
        }
    }

    /// A name for the model: its stage folder's name (`top`, `finetune`, ...) and what it is,
    /// such as `top (top model on efficientnet_lite0)`.
    pub fn name(&self) -> String {
        let folder = self
            .path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string());
        format!("{folder} ({})", self.kind())
    }
}

/// Class probabilities `[N, classes]` of preprocessed images `x` `[N, 3, H, W]` in evaluation
/// mode: `[1 - p, p]` for a one-unit (sigmoid) network, the softmax otherwise. With `tta`,
/// the mean of the probabilities of the images and of their left-right mirrors.
pub fn probabilities(network: &dyn Network, x: &Tensor, tta: bool) -> Result<Tensor> {
    let p = network.predict_proba(x)?;
    if !tta {
        return Ok(p);
    }
    let mirrored = network.predict_proba(&x.flip(&[3])?)?;
    Ok(((p + mirrored)? * 0.5)?)
}

/// The artifact file for `path`: `path/model.safetensors` when `path` is a folder, `path`
/// itself otherwise. A missing path is an error naming it.
pub fn model_file(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let file = path.join(MODEL_FILE);
        if !file.exists() {
            return Err(ClassifyError::NoModel {
                path: file,
                hint: " (train the model first; a stage writes it when training completes)".into(),
            });
        }
        return Ok(file);
    }
    if !path.exists() {
        return Err(ClassifyError::NoModel {
            path: path.to_path_buf(),
            hint: String::new(),
        });
    }
    Ok(path.to_path_buf())
}

/// Opens the model artifact at `path` (a file, or a stage's folder holding
/// `model.safetensors`) on `device`: reads its spec and resize filter from the metadata,
/// resolves the backbone's weights for models built on one (`weights`, then the backbone's
/// environment variable, then the hf-hub cache; the file's digest must be the one the model
/// was built with) and loads every weight, checking names and shapes against the spec.
pub fn load_model(path: &Path, weights: Option<&Path>, device: &Device) -> Result<LoadedModel> {
    let path = model_file(path)?;
    let meta = artifact::read_metadata(&path)?;
    if !meta.contains_key(MODEL_SPEC_KEY) {
        let reason = if meta.contains_key(CHECKPOINT_FORMAT_KEY) {
            format!(
                "it is a training checkpoint; pass the stage's {MODEL_FILE} (or \
                 checkpoints/best.safetensors)"
            )
        } else {
            format!("its metadata has no `{MODEL_SPEC_KEY}`")
        };
        return Err(ClassifyError::NotAModel { path, reason });
    }
    let spec = ModelSpec::from_metadata(&meta, &path)?;
    let (interpolation, interpolation_recorded) = match meta.get(engine::INTERPOLATION_KEY) {
        Some(raw) => (
            serde_json::from_str(raw).map_err(|e| ClassifyError::NotAModel {
                path: path.clone(),
                reason: format!("metadata `{}`: {e}", engine::INTERPOLATION_KEY),
            })?,
            true,
        ),
        None => (Interpolation::default(), false),
    };
    let (resolved, backbone) = match &spec.backbone {
        Some(expected) => {
            let resolved = expected.kind.resolve_weights(weights)?;
            if !resolved.sha256.eq_ignore_ascii_case(&expected.sha256) {
                return Err(ModelError::WeightsDigestMismatch {
                    path: resolved.path,
                    expected: expected.sha256.clone(),
                    found: resolved.sha256,
                }
                .into());
            }
            let backbone = Backbone::load(expected.kind, &resolved, device)?;
            (Some(resolved), Some(backbone))
        }
        None => (None, None),
    };
    let (tensors, _) = artifact::load(&path, device)?;
    let (model, _) = load_from_spec(&spec, &tensors, &path, backbone.as_ref(), device)?;
    let sha256 = artifact::sha256_file(&path)?;
    let (calibration, calibration_skipped) = match applicable_calibration(&path, &sha256) {
        Ok(applied) => (applied, None),
        Err(reason) => (None, Some(reason)),
    };
    Ok(LoadedModel {
        path,
        spec,
        interpolation,
        interpolation_recorded,
        backbone: resolved,
        model,
        device: device.clone(),
        sha256,
        calibration,
        calibration_skipped,
    })
}

/// The calibration beside the model file `path` (sha256 `sha256`) that applies to it:
/// `Ok(None)` when there is none, `Err(reason)` when there is one that does not apply.
pub fn applicable_calibration(
    path: &Path,
    sha256: &str,
) -> std::result::Result<Option<AppliedCalibration>, String> {
    match Calibration::for_model(path, sha256) {
        Ok(None) => Ok(None),
        Ok(Some((calibration, file))) => {
            let sha256 = artifact::sha256_file(&file).map_err(|e| e.to_string())?;
            Ok(Some(AppliedCalibration {
                path: file,
                sha256,
                calibration,
            }))
        }
        Err(e) => Err(e.to_string()),
    }
}
