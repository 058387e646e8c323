//! The trained top model fine-tuning starts from: `<data.artifacts>/top/model.safetensors`,
//! written by `train-top`, checked against the data, the settings and the VGG16 weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use models::{Architecture, ModelSpec, Preprocessing, TopModel};

use crate::error::{FinetuneError, Result};

/// The top model artifact `train-top` writes under `artifacts`.
pub fn top_model_path(artifacts: &Path) -> PathBuf {
    train_top::top_dir(artifacts).join("model.safetensors")
}

/// What the top model must have been trained for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopRequirements<'a> {
    /// The class names of the data, in label order.
    pub classes: &'a [String],
    /// The image size `(height, width)` (`data.target_size`).
    pub target_size: (usize, usize),
    /// The pixel preprocessing fed to VGG16 (`bottleneck.preprocessing`).
    pub preprocessing: Preprocessing,
    /// The sha256 of the VGG16 weights in use.
    pub vgg16_sha256: &'a str,
}

/// A trained top model, checked and loaded.
#[derive(Debug, Clone)]
pub struct TrainedTop {
    /// The artifact.
    pub path: PathBuf,
    /// Its model spec (`vgg16_top`).
    pub spec: ModelSpec,
    /// Its `top.*` weights.
    pub tensors: BTreeMap<String, Tensor>,
    /// The sha256 of the file (an input of the fine-tuned model's provenance).
    pub sha256: String,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl TrainedTop {
    /// Reads the top model at `path` onto `device`, refusing a missing file, a file that is
    /// not a `vgg16_top` model artifact, and one trained for other classes, another image
    /// size, other preprocessing or other VGG16 weights than `required`.
    pub fn load(path: &Path, required: &TopRequirements<'_>, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(FinetuneError::MissingTop {
                path: path.to_path_buf(),
            });
        }
        let mismatch = |reason: String| FinetuneError::TopMismatch {
            path: path.to_path_buf(),
            reason,
        };
        let meta = artifact::read_metadata(path)
            .map_err(|e| mismatch(format!("not a readable model artifact ({e})")))?;
        let spec = ModelSpec::from_metadata(&meta, path)
            .map_err(|e| mismatch(format!("not a usable model artifact ({e})")))?;
        if spec.architecture != Architecture::Vgg16Top {
            return Err(mismatch(format!(
                "it holds a `{}` model, not a `{}` top model",
                spec.architecture,
                Architecture::Vgg16Top
            )));
        }
        if spec.classes != required.classes {
            return Err(mismatch(format!(
                "it was trained for the classes {:?}, the data has {:?}",
                spec.classes, required.classes
            )));
        }
        if spec.target_size != required.target_size {
            return Err(mismatch(format!(
                "it was trained on {}x{} images, data.target_size is {}x{}",
                spec.target_size.0,
                spec.target_size.1,
                required.target_size.0,
                required.target_size.1
            )));
        }
        if spec.preprocessing != required.preprocessing {
            return Err(mismatch(format!(
                "it was trained on features of images preprocessed as {}, \
                 bottleneck.preprocessing is {}",
                json(&spec.preprocessing),
                json(&required.preprocessing)
            )));
        }
        let digest = spec.vgg16_sha256.as_deref().unwrap_or_default();
        if !digest.eq_ignore_ascii_case(required.vgg16_sha256) {
            return Err(mismatch(format!(
                "it was trained on features of the VGG16 weights with sha256 {digest}, the \
                 weights in use have sha256 {}",
                required.vgg16_sha256
            )));
        }
        let (all, _) = artifact::load(path, device)?;
        let prefix = format!("{}.", TopModel::PREFIX);
        let tensors: BTreeMap<String, Tensor> = all
            .into_iter()
            .filter(|(name, _)| name.starts_with(&prefix))
            .collect();
        if tensors.is_empty() {
            return Err(mismatch(format!("it holds no `{prefix}*` weights")));
        }
        let sha256 = artifact::sha256_file(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            spec,
            tensors,
            sha256,
        })
    }
}
