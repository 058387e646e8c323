//! The model spec stored in every model artifact's metadata, and rebuilding a model from it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use imagedata::Preprocessing;

use crate::backbone::{Backbone, BackboneKind, Classifier, FinetuneNet, Head};
use crate::error::{ModelError, Result};
use crate::layers::Mode;
use crate::network::{Network, units_for_classes};
use crate::small_cnn::{SmallCnn, SmallCnnConfig};
use crate::top::{TopLayers, TopModel, TopModelConfig};

/// The metadata key under which a model artifact stores its [`ModelSpec`] as JSON.
pub const MODEL_SPEC_KEY: &str = "model_spec";

/// The spec format version this crate writes and reads.
pub const MODEL_SPEC_VERSION: u32 = 2;

/// Which network a model artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The post's small convnet ([`SmallCnn`]), trained from scratch.
    SmallCnn,
    /// A [`TopModel`] trained on a pretrained backbone's features; classifying raw images runs
    /// the backbone first.
    Top,
    /// A backbone's tail and the top fine-tuned ([`FinetuneNet`]); the frozen part comes from
    /// the pretrained weights.
    Finetune,
}

impl Architecture {
    /// The name used in specs and messages (`small_cnn`, `top`, `finetune`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::SmallCnn => "small_cnn",
            Architecture::Top => "top",
            Architecture::Finetune => "finetune",
        }
    }

    /// Whether the model needs a pretrained backbone.
    pub fn needs_backbone(self) -> bool {
        !matches!(self, Architecture::SmallCnn)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The pretrained backbone a model was built with: which one, and the sha256 of its weights
/// file (a model only runs with the very weights it was trained on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneRef {
    /// The backbone.
    pub kind: BackboneKind,
    /// The sha256 of its weights file (lowercase hex).
    pub sha256: String,
}

impl BackboneRef {
    /// The reference to a loaded backbone.
    pub fn of(backbone: &Backbone) -> Self {
        Self {
            kind: backbone.kind(),
            sha256: backbone.sha256().to_string(),
        }
    }
}

/// Everything needed to rebuild a model from its artifact: stored as JSON under
/// [`MODEL_SPEC_KEY`] in the artifact's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The spec format version ([`MODEL_SPEC_VERSION`]).
    pub version: u32,
    /// The network.
    pub architecture: Architecture,
    /// Class names, in label order (the sorted class folder names).
    pub classes: Vec<String>,
    /// Input `(height, width)` (Keras' `target_size`).
    pub target_size: (usize, usize),
    /// How pixels become input.
    pub preprocessing: Preprocessing,
    /// Output units: 1 for two classes (sigmoid), one per class otherwise (softmax).
    pub units: usize,
    /// The pretrained backbone (models built on one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneRef>,
    /// The top model's layers (models built on a backbone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<TopLayers>,
}

impl ModelSpec {
    /// A spec for `architecture` with `units` derived from the classes, built on `backbone`
    /// with a top of `top` layers (both `None` for the small convnet); checked with
    /// [`ModelSpec::validate`].
    pub fn new(
        architecture: Architecture,
        classes: Vec<String>,
        target_size: (usize, usize),
        preprocessing: Preprocessing,
        backbone: Option<BackboneRef>,
        top: Option<TopLayers>,
    ) -> Result<Self> {
        let units =
            units_for_classes(classes.len()).map_err(|e| ModelError::InvalidSpec(e.to_string()))?;
        let spec = Self {
            version: MODEL_SPEC_VERSION,
            architecture,
            classes,
            target_size,
            preprocessing,
            units,
            backbone,
            top,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the spec's consistency: version, at least two distinct non-empty classes, units
    /// matching the classes, an input size the architecture accepts, usable preprocessing,
    /// and a well-formed VGG16 digest exactly when the architecture needs one.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(ModelError::InvalidSpec(msg));
        if self.version != MODEL_SPEC_VERSION {
            return bad(format!(
                "spec version {} is not supported (this build reads version {MODEL_SPEC_VERSION})",
                self.version
            ));
        }
        let expected_units = units_for_classes(self.classes.len())
            .map_err(|e| ModelError::InvalidSpec(e.to_string()))?;
        if self.classes.iter().any(String::is_empty) {
            return bad("a class name is empty".into());
        }
        let mut sorted = self.classes.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.classes.len() {
            return bad(format!("class names repeat: {:?}", self.classes));
        }
        if self.units != expected_units {
            return bad(format!(
                "{} classes need {expected_units} output unit(s), the spec says {}",
                self.classes.len(),
                self.units
            ));
        }
        let (h, w) = self.target_size;
        let (size_ok, min) = match (self.architecture, &self.backbone) {
            (Architecture::SmallCnn, _) => (
                SmallCnn::feature_shape(self.target_size).is_some(),
                SmallCnn::MIN_INPUT,
            ),
            (_, Some(b)) => (
                b.kind.feature_shape(self.target_size).is_some(),
                b.kind.min_input(),
            ),
            (_, None) => (true, 0),
        };
        if !size_ok {
            return bad(format!(
                "target size {h}×{w} is too small for `{}` (at least {min}×{min})",
                self.architecture
            ));
        }
        self.preprocessing
            .validate()
            .map_err(|e| ModelError::InvalidSpec(format!("preprocessing.{e}")))?;
        let needs = self.architecture.needs_backbone();
        match (&self.backbone, needs) {
            (None, true) => {
                return bad(format!("a `{}` spec needs a backbone", self.architecture));
            }
            (Some(_), false) => {
                return bad(format!(
                    "a `{}` spec has no use for a backbone",
                    self.architecture
                ));
            }
            (Some(b), true)
                if b.sha256.len() != 64 || !b.sha256.bytes().all(|c| c.is_ascii_hexdigit()) =>
            {
                return bad(format!(
                    "`{}` is not a sha256 digest (64 hex digits)",
                    b.sha256
                ));
            }
            (Some(b), true)
                if self.architecture == Architecture::Finetune
                    && b.kind.finetune_split().is_none() =>
            {
                return bad(b.kind.finetune_unsupported().to_string());
            }
            _ => {}
        }
        match (&self.top, needs) {
            (None, true) => bad(format!(
                "a `{}` spec needs its top layers",
                self.architecture
            )),
            (Some(_), false) => bad(format!(
                "a `{}` spec has no use for top layers",
                self.architecture
            )),
            (Some(t), true) if !(0.0..1.0).contains(&t.dropout) => {
                bad(format!("top dropout {} is not in [0, 1)", t.dropout))
            }
            _ => Ok(()),
        }
    }

    /// Whether the model has one sigmoid unit (Keras' `binary` class mode).
    pub fn is_binary(&self) -> bool {
        self.units == 1
    }

    /// The feature shape `(C, h, w)` the top model sees (the backbone's features), `None` for
    /// the small convnet.
    pub fn top_feature_shape(&self) -> Option<(usize, usize, usize)> {
        self.backbone
            .as_ref()
            .and_then(|b| b.kind.feature_shape(self.target_size))
    }

    /// The backbone's name, for models built on one.
    pub fn backbone_name(&self) -> Option<&'static str> {
        self.backbone.as_ref().map(|b| b.kind.name())
    }

    /// The top model's configuration, for models built on a backbone.
    pub fn top_config(&self) -> Option<TopModelConfig> {
        Some(TopModelConfig {
            feature_shape: self.top_feature_shape()?,
            units: self.units,
            layers: self.top?,
        })
    }

    /// The spec as JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and arrays always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and validates a spec from JSON.
    pub fn from_json(json: &str) -> Result<Self> {
        let spec: Self = serde_json::from_str(json)?;
        spec.validate()?;
        Ok(spec)
    }

    /// Stores the spec under [`MODEL_SPEC_KEY`] in artifact metadata.
    pub fn insert_into(&self, meta: &mut artifact::Metadata) {
        meta.insert(MODEL_SPEC_KEY.to_string(), self.to_json());
    }

    /// Reads and validates the spec of the artifact at `path` from its metadata.
    pub fn from_metadata(meta: &artifact::Metadata, path: &Path) -> Result<Self> {
        let spec: Self = artifact::meta_json(meta, path, MODEL_SPEC_KEY)?;
        spec.validate()
            .map_err(|e| ModelError::InvalidSpec(format!("{}: {e}", path.display())))?;
        Ok(spec)
    }
}

/// Any model a spec describes, as one [`Network`] on preprocessed images `[N, 3, H, W]`.
// One value per loaded model, never held in bulk: the size difference between the variants
// (larger with CUDA's device handles) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Model {
    /// The small convnet.
    SmallCnn(SmallCnn),
    /// A pretrained backbone with a top model or a fine-tuned tail + top.
    Pretrained(Classifier),
}

impl Network for Model {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        match self {
            Model::SmallCnn(m) => m.forward_t(x, mode),
            Model::Pretrained(m) => m.forward_t(x, mode),
        }
    }

    fn output_units(&self) -> usize {
        match self {
            Model::SmallCnn(m) => m.output_units(),
            Model::Pretrained(m) => m.output_units(),
        }
    }
}

/// The seed of the placeholder initial values [`build_from_spec`] draws before trained
/// weights are loaded over them.
const PLACEHOLDER_SEED: u64 = 0;

/// Builds the network `spec` describes, on raw preprocessed images, with its trainable
/// parameters in `varmap` (freshly initialised unless already there; load trained weights
/// with [`load_varmap`], or use [`load_from_spec`]).
///
/// Specs built on a backbone need it loaded (`backbone`), with the digest the spec records.
pub fn build_from_spec(
    spec: &ModelSpec,
    varmap: &VarMap,
    backbone: Option<&Backbone>,
    device: &Device,
) -> Result<Model> {
    spec.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(PLACEHOLDER_SEED);
    let (Some(expected), Some(top)) = (&spec.backbone, spec.top_config()) else {
        let config = SmallCnnConfig {
            input_size: spec.target_size,
            units: spec.units,
        };
        return Ok(Model::SmallCnn(SmallCnn::new(
            varmap, config, &mut rng, device,
        )?));
    };
    let backbone = backbone.ok_or_else(|| ModelError::BackboneRequired {
        architecture: spec.architecture.name().to_string(),
        backbone: expected.kind.name().to_string(),
    })?;
    if backbone.kind() != expected.kind {
        return Err(ModelError::InvalidSpec(format!(
            "the model was built on `{}`, the backbone given is `{}`",
            expected.kind,
            backbone.kind()
        )));
    }
    if !backbone.sha256().eq_ignore_ascii_case(&expected.sha256) {
        return Err(ModelError::WeightsDigestMismatch {
            path: backbone.path().to_path_buf(),
            expected: expected.sha256.clone(),
            found: backbone.sha256().to_string(),
        });
    }
    let head = match spec.architecture {
        Architecture::Finetune => {
            let tail = backbone.tail(varmap, device)?;
            Head::Finetune(FinetuneNet::new(
                tail,
                TopModel::new(varmap, top, &mut rng, device)?,
            ))
        }
        _ => Head::Top(TopModel::new(varmap, top, &mut rng, device)?),
    };
    Ok(Model::Pretrained(Classifier::new(backbone.clone(), head)))
}

/// Sets every variable of `varmap` whose name starts with `prefix` (all of them for `""`)
/// to the tensor of the same name in `tensors`, which came from the file `origin`. Every such
/// variable must be present with the same shape (float tensors of other dtypes are converted).
/// Returns the number of variables set.
pub fn load_varmap(
    varmap: &VarMap,
    tensors: &BTreeMap<String, Tensor>,
    origin: &Path,
    prefix: &str,
) -> Result<usize> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::InvalidConfig("the variable map's lock is poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    let missing: Vec<&&String> = names
        .iter()
        .filter(|n| !tensors.contains_key(**n))
        .collect();
    if let Some(first) = missing.first() {
        return Err(ModelError::MissingTensor {
            path: origin.to_path_buf(),
            name: (**first).clone(),
            also_missing: missing.len() - 1,
        });
    }
    for name in &names {
        let (var, t) = (&data[*name], &tensors[*name]);
        if var.dims() != t.dims() {
            return Err(ModelError::ShapeMismatch {
                path: origin.to_path_buf(),
                name: (*name).clone(),
                expected: var.dims().to_vec(),
                found: t.dims().to_vec(),
            });
        }
        if !t.dtype().is_float() {
            return Err(ModelError::UnsupportedDtype {
                path: origin.to_path_buf(),
                name: (*name).clone(),
                dtype: format!("{:?}", t.dtype()),
            });
        }
    }
    for name in &names {
        let t = tensors[*name]
            .to_dtype(DType::F32)?
            .to_device(data[*name].device())?;
        data[*name].set(&t)?;
    }
    Ok(names.len())
}

/// Rebuilds the model of `spec` and loads all its trainable weights from `tensors` (read
/// from the artifact `origin`); returns the model and the map holding its parameters.
pub fn load_from_spec(
    spec: &ModelSpec,
    tensors: &BTreeMap<String, Tensor>,
    origin: &Path,
    backbone: Option<&Backbone>,
    device: &Device,
) -> Result<(Model, VarMap)> {
    let varmap = VarMap::new();
    let model = build_from_spec(spec, &varmap, backbone, device)?;
    load_varmap(&varmap, tensors, origin, "")?;
    Ok((model, varmap))
}
