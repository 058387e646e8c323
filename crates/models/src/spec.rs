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

use crate::error::{ModelError, Result};
use crate::layers::Mode;
use crate::network::{Network, units_for_classes};
use crate::small_cnn::{SmallCnn, SmallCnnConfig};
use crate::top::{TopModel, TopModelConfig};
use crate::vgg16::{Vgg16, Vgg16Classifier, Vgg16Head, Vgg16Top};

/// The metadata key under which a model artifact stores its [`ModelSpec`] as JSON.
pub const MODEL_SPEC_KEY: &str = "model_spec";

/// The spec format version this crate writes and reads.
pub const MODEL_SPEC_VERSION: u32 = 1;

/// Which network a model artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// The post's small convnet ([`SmallCnn`]), trained from scratch.
    SmallCnn,
    /// A [`TopModel`] trained on VGG16 block-5 features; classifying raw images runs the
    /// pretrained conv base first.
    Vgg16Top,
    /// VGG16 with block 5 and the top fine-tuned ([`Vgg16Top`]); blocks 1–4 come from the
    /// pretrained weights.
    Vgg16Finetune,
}

impl Architecture {
    /// The name used in specs and messages (`small_cnn`, `vgg16_top`, `vgg16_finetune`).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::SmallCnn => "small_cnn",
            Architecture::Vgg16Top => "vgg16_top",
            Architecture::Vgg16Finetune => "vgg16_finetune",
        }
    }

    /// Whether the model needs the pretrained VGG16 conv base.
    pub fn needs_vgg16(self) -> bool {
        !matches!(self, Architecture::SmallCnn)
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// sha256 of the VGG16 weights file the model was built with (VGG16-based models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vgg16_sha256: Option<String>,
}

impl ModelSpec {
    /// A spec for `architecture` with `units` derived from the classes; checked with
    /// [`ModelSpec::validate`].
    pub fn new(
        architecture: Architecture,
        classes: Vec<String>,
        target_size: (usize, usize),
        preprocessing: Preprocessing,
        vgg16_sha256: Option<String>,
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
            vgg16_sha256,
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
        let size_ok = match self.architecture {
            Architecture::SmallCnn => SmallCnn::feature_shape(self.target_size).is_some(),
            Architecture::Vgg16Top | Architecture::Vgg16Finetune => {
                Vgg16::output_shape(self.target_size, Vgg16::BLOCKS).is_some()
            }
        };
        if !size_ok {
            let min = match self.architecture {
                Architecture::SmallCnn => SmallCnn::MIN_INPUT,
                _ => Vgg16::MIN_INPUT,
            };
            return bad(format!(
                "target size {h}×{w} is too small for `{}` (at least {min}×{min})",
                self.architecture
            ));
        }
        self.preprocessing
            .validate()
            .map_err(|e| ModelError::InvalidSpec(format!("preprocessing.{e}")))?;
        match (&self.vgg16_sha256, self.architecture.needs_vgg16()) {
            (None, true) => bad(format!(
                "a `{}` spec needs the VGG16 weights digest",
                self.architecture
            )),
            (Some(_), false) => bad(format!(
                "a `{}` spec has no use for a VGG16 weights digest",
                self.architecture
            )),
            (Some(d), true) if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) => {
                bad(format!("`{d}` is not a sha256 digest (64 hex digits)"))
            }
            _ => Ok(()),
        }
    }

    /// Whether the model has one sigmoid unit (Keras' `binary` class mode).
    pub fn is_binary(&self) -> bool {
        self.units == 1
    }

    /// The feature shape `(C, h, w)` the top model of a VGG16-based spec sees (block-5
    /// output), `None` for the small convnet.
    pub fn top_feature_shape(&self) -> Option<(usize, usize, usize)> {
        match self.architecture {
            Architecture::SmallCnn => None,
            _ => Vgg16::output_shape(self.target_size, Vgg16::BLOCKS),
        }
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
#[derive(Debug, Clone)]
pub enum Model {
    /// The small convnet.
    SmallCnn(SmallCnn),
    /// The VGG16 conv base with a top model or a fine-tuned block 5 + top.
    Vgg16(Vgg16Classifier),
}

impl Network for Model {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        match self {
            Model::SmallCnn(m) => m.forward_t(x, mode),
            Model::Vgg16(m) => m.forward_t(x, mode),
        }
    }

    fn output_units(&self) -> usize {
        match self {
            Model::SmallCnn(m) => m.output_units(),
            Model::Vgg16(m) => m.output_units(),
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
/// VGG16-based specs need the conv base `vgg16`, whose digest must equal the spec's.
pub fn build_from_spec(
    spec: &ModelSpec,
    varmap: &VarMap,
    vgg16: Option<&Vgg16>,
    device: &Device,
) -> Result<Model> {
    spec.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(PLACEHOLDER_SEED);
    if spec.architecture == Architecture::SmallCnn {
        let config = SmallCnnConfig {
            input_size: spec.target_size,
            units: spec.units,
        };
        return Ok(Model::SmallCnn(SmallCnn::new(
            varmap, config, &mut rng, device,
        )?));
    }
    let base = vgg16.ok_or_else(|| ModelError::Vgg16Required {
        architecture: spec.architecture.name().to_string(),
    })?;
    let expected = spec.vgg16_sha256.as_deref().unwrap_or_default();
    if !base.sha256().eq_ignore_ascii_case(expected) {
        return Err(ModelError::WeightsDigestMismatch {
            path: base.path().to_path_buf(),
            expected: expected.to_string(),
            found: base.sha256().to_string(),
        });
    }
    let head = match spec.architecture {
        Architecture::Vgg16Top => {
            let feature_shape = spec
                .top_feature_shape()
                .ok_or_else(|| ModelError::InvalidSpec("target size too small for VGG16".into()))?;
            Vgg16Head::Top(TopModel::new(
                varmap,
                TopModelConfig {
                    feature_shape,
                    units: spec.units,
                },
                &mut rng,
                device,
            )?)
        }
        _ => Vgg16Head::Finetune(Vgg16Top::new(
            varmap,
            base,
            spec.target_size,
            spec.units,
            &mut rng,
            device,
        )?),
    };
    Ok(Model::Vgg16(Vgg16Classifier::new(base.clone(), head)))
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
    vgg16: Option<&Vgg16>,
    device: &Device,
) -> Result<(Model, VarMap)> {
    let varmap = VarMap::new();
    let model = build_from_spec(spec, &varmap, vgg16, device)?;
    load_varmap(&varmap, tensors, origin, "")?;
    Ok((model, varmap))
}
