//! ImageNet backbones from candle-transformers, loaded from the safetensors files the Hugging
//! Face hub serves for timm's models (timm's own tensor names), used as frozen feature
//! extractors: preprocessed images `[N, 3, H, W]` → the pooled feature vector `[N, D]` the
//! classifier head would see.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Module, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Func, Init, VarBuilder};
use candle_transformers::models::{convnext, resnet};

use crate::backbone::BackboneKind;
use crate::error::Result;
use crate::layers;
use crate::safetensors_io;

/// The network of a hub backbone: the architecture-specific half of
/// [`BackboneKind::ConvNextTiny`] and [`BackboneKind::ResNet50`] (tensor names and shapes, the
/// candle-transformers network, the feature width). Names, hub repositories, preprocessing and
/// input sizes are the [`BackboneKind`]'s; see [`HubModel::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HubModel {
    /// ConvNeXt-Tiny (768 features): the pooled stage-4 output after the head's LayerNorm,
    /// before its `fc`.
    ConvNextTiny,
    /// ResNet-50 (2048 features): the global average pool of layer 4.
    ResNet50,
}

impl HubModel {
    /// Every model, in a fixed order.
    pub const ALL: [HubModel; 2] = [HubModel::ConvNextTiny, HubModel::ResNet50];

    /// The backbone this network is.
    pub fn kind(self) -> BackboneKind {
        match self {
            HubModel::ConvNextTiny => BackboneKind::ConvNextTiny,
            HubModel::ResNet50 => BackboneKind::ResNet50,
        }
    }

    /// The backbone's name ([`BackboneKind::name`]): `convnext_tiny` or `resnet50`.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// The length of the pooled feature vector.
    pub fn feature_dim(self) -> usize {
        match self {
            HubModel::ConvNextTiny => 768,
            HubModel::ResNet50 => 2048,
        }
    }

    /// The smallest input side the network accepts (its total stride).
    pub fn min_input(self) -> usize {
        32
    }

    /// Every tensor the feature extractor reads, `(name, shape)`, in the order
    /// candle-transformers asks for them. The classifier's `fc` is not among them, and neither
    /// are tensors candle-transformers only uses when present and timm's model lacks (the
    /// ConvNeXt-V2 `grn` of each block).
    pub fn tensor_specs(self) -> Vec<(String, Vec<usize>)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = Recorder {
            seen: seen.clone(),
            absent: self.absent_tensor_filter(),
        };
        let vb = VarBuilder::from_backend(Box::new(recorder), DType::F32, Device::Cpu);
        // Building on broadcast zeros allocates almost nothing; it cannot fail but for a bug
        // in the network code, and then the specs are what was asked for up to that point.
        let _ = self.build(vb);
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.clone()
    }

    /// Which tensor names candle-transformers may ask for that timm's model does not have.
    fn absent_tensor_filter(self) -> fn(&str) -> bool {
        match self {
            // ConvNeXt-V1: no global response normalisation in the MLPs.
            HubModel::ConvNextTiny => |name| name.contains(".mlp.grn."),
            HubModel::ResNet50 => |_| false,
        }
    }

    /// Builds the feature extractor from `vb` (timm's tensor names at its root).
    fn build(self, vb: VarBuilder<'static>) -> candle_core::Result<Func<'static>> {
        match self {
            HubModel::ConvNextTiny => {
                let body =
                    convnext::convnext_no_final_layer(&convnext::Config::tiny(), vb.clone())?;
                // timm's NormMlpClassifierHead: global average pool, LayerNorm(eps 1e-6), fc.
                let norm =
                    candle_nn::layer_norm(self.feature_dim(), 1e-6, vb.pp("head").pp("norm"))?;
                Ok(Func::new(move |xs| xs.apply(&body)?.apply(&norm)))
            }
            HubModel::ResNet50 => resnet::resnet50_no_final_layer(vb),
        }
    }
}

impl fmt::Display for HubModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tensor's name and shape.
type TensorSpec = (String, Vec<usize>);

/// A `VarBuilder` backend that records every tensor asked for and answers with zeros (or
/// "not found" for the names `absent` picks, as a weights file without them would).
struct Recorder {
    seen: Arc<Mutex<Vec<TensorSpec>>>,
    absent: fn(&str) -> bool,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if (self.absent)(name) {
            return Err(candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            });
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.iter().any(|(n, _)| n == name) {
            seen.push((name.to_string(), s.dims().to_vec()));
        }
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        Err(candle_core::Error::CannotFindTensor {
            path: name.to_string(),
        })
    }

    fn contains_tensor(&self, name: &str) -> bool {
        !(self.absent)(name)
    }
}

/// A loaded hub backbone, frozen: its weights are constants, gradients never reach them.
#[derive(Clone)]
pub struct HubBackbone {
    model: HubModel,
    net: Func<'static>,
    sha256: String,
    path: PathBuf,
    device: Device,
}

impl fmt::Debug for HubBackbone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubBackbone")
            .field("model", &self.model)
            .field("sha256", &self.sha256)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HubBackbone {
    /// Loads `model` from a safetensors file on `device`, checking every tensor's presence,
    /// shape and dtype first (errors name the file and the tensor:
    /// [`ModelError::MissingTensor`](crate::ModelError::MissingTensor),
    /// [`ModelError::ShapeMismatch`](crate::ModelError::ShapeMismatch), ...), and records the
    /// file's sha256. Other tensors in the file (the classifier's `fc`) are not read.
    pub fn load(model: HubModel, path: &Path, device: &Device) -> Result<Self> {
        let specs = model.tensor_specs();
        let tensors = safetensors_io::read_tensors(path, &specs, device)?;
        let sha256 = artifact::sha256_file(path)?;
        let tensors: HashMap<String, Tensor> = tensors.into_iter().collect();
        let net = model.build(VarBuilder::from_tensors(tensors, DType::F32, device))?;
        Ok(Self {
            model,
            net,
            sha256,
            path: path.to_path_buf(),
            device: device.clone(),
        })
    }

    /// The model.
    pub fn model(&self) -> HubModel {
        self.model
    }

    /// The sha256 (lowercase hex) of the weights file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The weights file the backbone was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Preprocessed images `[N, 3, H, W]` (`f32`, H and W at least [`HubModel::min_input`],
    /// normalised as [`BackboneKind::preprocessing`] says) → pooled features
    /// `[N, feature_dim]`.
    pub fn pooled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let model = self.model;
        layers::check_nchw(x, 3, model.min_input(), model.name())?;
        let y = self.net.forward(x)?;
        let expected = [x.dim(0)?, model.feature_dim()];
        if y.dims() != expected {
            candle_core::bail!(
                "{model}: pooled features have shape {:?}, expected {expected:?}",
                y.dims()
            );
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for m in HubModel::ALL {
            assert_eq!(m.kind().hub_model(), Some(m));
            assert_eq!(BackboneKind::parse(m.name()), Some(m.kind()));
            assert!(m.kind().weights_location().hub_repo.starts_with("timm/"));
        }
        let hub: Vec<HubModel> = BackboneKind::ALL
            .into_iter()
            .filter_map(BackboneKind::hub_model)
            .collect();
        assert_eq!(hub, HubModel::ALL);
    }

    #[test]
    fn specs_follow_timm_names() {
        let convnext = HubModel::ConvNextTiny.tensor_specs();
        let find = |specs: &[(String, Vec<usize>)], name: &str| {
            specs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone())
        };
        assert_eq!(find(&convnext, "stem.0.weight"), Some(vec![96, 3, 4, 4]));
        assert_eq!(
            find(&convnext, "stages.3.blocks.2.mlp.fc1.weight"),
            Some(vec![3072, 768])
        );
        assert_eq!(find(&convnext, "stages.0.blocks.0.gamma"), Some(vec![96]));
        assert_eq!(find(&convnext, "head.norm.weight"), Some(vec![768]));
        assert!(convnext.iter().all(|(n, _)| !n.contains("grn")));
        assert!(convnext.iter().all(|(n, _)| !n.starts_with("head.fc")));
        // timm's convnext_tiny state dict has 182 tensors; 2 are head.fc.
        assert_eq!(convnext.len(), 180);

        let resnet = HubModel::ResNet50.tensor_specs();
        assert_eq!(find(&resnet, "conv1.weight"), Some(vec![64, 3, 7, 7]));
        assert_eq!(
            find(&resnet, "layer4.0.downsample.1.running_var"),
            Some(vec![2048])
        );
        assert!(resnet.iter().all(|(n, _)| !n.starts_with("fc.")));
        // 53 convolutions and 53 batch norms (4 tensors each).
        assert_eq!(resnet.len(), 53 + 53 * 4);
    }
}
