//! The trained top model fine-tuning starts from: `<data.artifacts>/top/model.safetensors`,
//! written by `train-top`, checked against the data, the settings and the backbone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use models::{Architecture, BackboneRef, ModelSpec, Preprocessing, TopModel};

use crate::error::{Result, StageError};

/// The command that makes a fitting top model.
const TOP_HINT: &str = "run `just train-top` first (it trains a top model for the current data \
                        and settings)";

/// What the top model must have been trained for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopRequirements<'a> {
    /// The class names of the data, in label order.
    pub classes: &'a [String],
    /// The image size `(height, width)` of the backbone's input.
    pub target_size: (usize, usize),
    /// The pixel preprocessing fed to the backbone.
    pub preprocessing: Preprocessing,
    /// The backbone and the digest of its weights.
    pub backbone: &'a BackboneRef,
}

/// A trained top model, checked and loaded.
#[derive(Debug, Clone)]
pub struct TrainedTop {
    /// The artifact.
    pub path: PathBuf,
    /// Its model spec (`top`).
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
    /// not a top model artifact, and one trained for other classes, another image size, other
    /// preprocessing, another backbone or other weights than `required`.
    pub fn load(path: &Path, required: &TopRequirements<'_>, device: &Device) -> Result<Self> {
        if !path.exists() {
            return Err(StageError::MissingInput {
                path: path.to_path_buf(),
                what: "the trained top model".into(),
                hint: "run `just train-top` first (fine-tuning starts from a trained top model: \
                       a randomly initialised one would wreck the pretrained weights of the \
                       tail)"
                    .into(),
            });
        }
        let mismatch = |reason: String| StageError::Mismatch {
            path: path.to_path_buf(),
            reason,
            hint: TOP_HINT.into(),
        };
        let meta = artifact::read_metadata(path)
            .map_err(|e| mismatch(format!("not a readable model artifact ({e})")))?;
        let spec = ModelSpec::from_metadata(&meta, path)
            .map_err(|e| mismatch(format!("not a usable model artifact ({e})")))?;
        if spec.architecture != Architecture::Top {
            return Err(mismatch(format!(
                "it holds a `{}` model, not a `{}` model",
                spec.architecture,
                Architecture::Top
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
                "it was trained on {}x{} images, the backbone's input (bottleneck.target_size) is \
                 {}x{}",
                spec.target_size.0,
                spec.target_size.1,
                required.target_size.0,
                required.target_size.1
            )));
        }
        if spec.preprocessing != required.preprocessing {
            return Err(mismatch(format!(
                "it was trained on features of images preprocessed as {}, \
                 bottleneck.preprocessing (or the backbone's own) is {}",
                json(&spec.preprocessing),
                json(&required.preprocessing)
            )));
        }
        match &spec.backbone {
            Some(b) if b.kind != required.backbone.kind => {
                return Err(mismatch(format!(
                    "it was trained on `{}` features, bottleneck.backbone is `{}`",
                    b.kind, required.backbone.kind
                )));
            }
            Some(b) if !b.sha256.eq_ignore_ascii_case(&required.backbone.sha256) => {
                return Err(mismatch(format!(
                    "it was trained on features of the {} weights with sha256 {}, the weights \
                     in use have sha256 {}",
                    b.kind, b.sha256, required.backbone.sha256
                )));
            }
            _ => {}
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
