//! The seam for pretrained networks: every stage that uses a pretrained backbone (extraction,
//! the top model, fine-tuning, classification, the report) goes through [`BackboneKind`] (what
//! a backbone is: name, default input size, preprocessing, where its weights are, what it
//! caches, how it splits for fine-tuning) and [`Backbone`] (a loaded one). No other module
//! names a particular network.
//!
//! A backbone has three parts as the stages see it:
//! - [`Backbone::features`]: what `extract` caches and the top model trains on;
//! - [`Backbone::frozen`]: the part fine-tuning runs once per cached view and never trains;
//! - [`Tail`]: the part fine-tuning trains, from [`Backbone::frozen`]'s output to the same
//!   features [`Backbone::features`] gives, initialised from the pretrained weights.
//!
//! The hub backbones ([`BackboneKind::ConvNextTiny`], [`BackboneKind::ResNet50`]: networks of
//! candle-transformers with timm's weights, see [`HubModel`]) have features only: they cannot
//! be fine-tuned ([`BackboneKind::finetune_split`] is `None`).

use std::fmt;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use imagedata::Preprocessing;
use serde::{Deserialize, Serialize};

use crate::efficientnet::{EfficientNetLite0, Lite0Tail};
use crate::error::{ModelError, Result};
use crate::hub::{HubBackbone, HubModel};
use crate::layers::Mode;
use crate::network::Network;
use crate::top::TopModel;
use crate::vgg16::{Vgg16, Vgg16Block5};
use crate::weights::{ResolvedWeights, WeightsLocation, resolve_weights};

/// A pretrained backbone the stages can use (`bottleneck.backbone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// torchvision's ImageNet VGG16 conv base (the post's network).
    Vgg16,
    /// Google's EfficientNet-Lite0 (ImageNet, 4.7 M parameters, about 0.4 GFLOP per image at
    /// 224 × 224).
    #[serde(rename = "efficientnet_lite0")]
    EfficientNetLite0,
    /// ConvNeXt-Tiny from candle-transformers with timm's `convnext_tiny.fb_in1k` weights (28 M
    /// parameters, 4.5 GFLOP per image at 224 × 224); features and the top model only.
    #[serde(rename = "convnext_tiny")]
    ConvNextTiny,
    /// ResNet-50 from candle-transformers with timm's `resnet50.a1_in1k` weights (25.6 M
    /// parameters, 4.1 GFLOP per image at 224 × 224); features and the top model only.
    #[serde(rename = "resnet50")]
    ResNet50,
}

impl BackboneKind {
    /// Every backbone.
    pub const ALL: [BackboneKind; 4] = [
        BackboneKind::Vgg16,
        BackboneKind::EfficientNetLite0,
        BackboneKind::ConvNextTiny,
        BackboneKind::ResNet50,
    ];

    /// The name in pipeline files, specs and messages.
    pub fn name(self) -> &'static str {
        match self {
            BackboneKind::Vgg16 => "vgg16",
            BackboneKind::EfficientNetLite0 => "efficientnet_lite0",
            BackboneKind::ConvNextTiny => "convnext_tiny",
            BackboneKind::ResNet50 => "resnet50",
        }
    }

    /// The candle-transformers network of a hub backbone; `None` for the backbones with their
    /// own network code (VGG16, EfficientNet-Lite0).
    pub fn hub_model(self) -> Option<HubModel> {
        match self {
            BackboneKind::Vgg16 | BackboneKind::EfficientNetLite0 => None,
            BackboneKind::ConvNextTiny => Some(HubModel::ConvNextTiny),
            BackboneKind::ResNet50 => Some(HubModel::ResNet50),
        }
    }

    /// Parses a name (case-insensitive); see [`BackboneKind::name`].
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The input size `(height, width)` images are resized to unless the pipeline file says
    /// otherwise.
    pub fn default_target_size(self) -> (usize, usize) {
        match self {
            // The post's size; VGG16 was trained at 224 × 224 but any size from 32 works.
            BackboneKind::Vgg16 => (150, 150),
            BackboneKind::EfficientNetLite0
            | BackboneKind::ConvNextTiny
            | BackboneKind::ResNet50 => (224, 224),
        }
    }

    /// The pixel preprocessing the pretrained weights expect.
    pub fn preprocessing(self) -> Preprocessing {
        match self {
            // timm's pretrained configs of the hub backbones say ImageNet mean and std too.
            BackboneKind::Vgg16 | BackboneKind::ConvNextTiny | BackboneKind::ResNet50 => {
                Preprocessing::imagenet()
            }
            // TensorFlow's (x − 127.5) / 127.5, as timm's mean = std = 0.5 says it.
            BackboneKind::EfficientNetLite0 => Preprocessing::Normalize {
                rescale: 1.0 / 255.0,
                mean: [0.5; 3],
                std: [0.5; 3],
            },
        }
    }

    /// Where the weights are looked for (environment variable, hf-hub repository and file).
    pub fn weights_location(self) -> WeightsLocation {
        let (env_var, hub_repo) = match self {
            BackboneKind::Vgg16 => ("LITTLEDATA_VGG16_WEIGHTS", "timm/vgg16.tv_in1k"),
            BackboneKind::EfficientNetLite0 => (
                "LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS",
                "timm/tf_efficientnet_lite0.in1k",
            ),
            BackboneKind::ConvNextTiny => (
                "LITTLEDATA_CONVNEXT_TINY_WEIGHTS",
                "timm/convnext_tiny.fb_in1k",
            ),
            BackboneKind::ResNet50 => ("LITTLEDATA_RESNET50_WEIGHTS", "timm/resnet50.a1_in1k"),
        };
        WeightsLocation {
            backbone: self.name(),
            env_var,
            hub_repo,
            // Every repository serves its weights under timm's one file name.
            hub_file: "model.safetensors",
        }
    }

    /// Finds the weights file: `explicit`, then the environment variable, the hf-hub cache and
    /// a download.
    pub fn resolve_weights(self, explicit: Option<&Path>) -> Result<ResolvedWeights> {
        resolve_weights(self.weights_location(), explicit)
    }

    /// What [`Backbone::features`] is, for metadata and messages.
    pub fn features_name(self) -> &'static str {
        match self {
            BackboneKind::Vgg16 => "block5_pool",
            BackboneKind::EfficientNetLite0
            | BackboneKind::ConvNextTiny
            | BackboneKind::ResNet50 => "pooled",
        }
    }

    /// The smallest input side the backbone accepts.
    pub fn min_input(self) -> usize {
        match self {
            BackboneKind::Vgg16 => Vgg16::MIN_INPUT,
            BackboneKind::EfficientNetLite0 => 32,
            BackboneKind::ConvNextTiny => HubModel::ConvNextTiny.min_input(),
            BackboneKind::ResNet50 => HubModel::ResNet50.min_input(),
        }
    }

    /// The shape `(C, h, w)` of [`Backbone::features`] for an input of `(height, width)`;
    /// `None` when the input is too small.
    pub fn feature_shape(self, input: (usize, usize)) -> Option<(usize, usize, usize)> {
        let fits = input.0 >= self.min_input() && input.1 >= self.min_input();
        match self {
            BackboneKind::Vgg16 => Vgg16::output_shape(input, Vgg16::BLOCKS),
            BackboneKind::EfficientNetLite0 => fits.then_some((EfficientNetLite0::FEATURES, 1, 1)),
            BackboneKind::ConvNextTiny => {
                fits.then_some((HubModel::ConvNextTiny.feature_dim(), 1, 1))
            }
            BackboneKind::ResNet50 => fits.then_some((HubModel::ResNet50.feature_dim(), 1, 1)),
        }
    }

    /// Whether fine-tuning is supported, and what is frozen and trained then (for messages).
    pub fn finetune_split(self) -> Option<&'static str> {
        match self {
            BackboneKind::Vgg16 => Some("blocks 1-4 frozen, block 5 trained"),
            BackboneKind::EfficientNetLite0 => {
                Some("stem and blocks 0-14 frozen, block 15 and the head convolution trained")
            }
            BackboneKind::ConvNextTiny | BackboneKind::ResNet50 => None,
        }
    }

    /// The shape `(C, h, w)` of [`Backbone::frozen`] for an input of `(height, width)`;
    /// `None` when the input is too small or fine-tuning is not supported.
    pub fn frozen_shape(self, input: (usize, usize)) -> Option<(usize, usize, usize)> {
        match self {
            BackboneKind::Vgg16 => Vgg16::output_shape(input, Vgg16Block5::FROZEN_BLOCKS),
            BackboneKind::EfficientNetLite0 => {
                if input.0 < self.min_input() || input.1 < self.min_input() {
                    return None;
                }
                EfficientNetLite0::block_output_shape(input, Lite0Tail::FIRST_BLOCK - 1)
            }
            BackboneKind::ConvNextTiny | BackboneKind::ResNet50 => None,
        }
    }

    /// An error naming the input size and the minimum.
    pub fn too_small(self, input: (usize, usize)) -> ModelError {
        ModelError::InvalidConfig(format!(
            "a {}×{} input is too small for {} (at least {m}×{m})",
            input.0,
            input.1,
            self.name(),
            m = self.min_input()
        ))
    }

    /// The error for a backbone that cannot be fine-tuned.
    pub fn finetune_unsupported(self) -> ModelError {
        ModelError::InvalidConfig(format!(
            "fine-tuning is not supported for the backbone `{}`; use it for extraction and the \
             top model only",
            self.name()
        ))
    }
}

/// The error for Grad-CAM on a backbone that cannot give its last feature map.
pub(crate) fn grad_cam_unsupported(kind: BackboneKind) -> ModelError {
    ModelError::GradCam(format!(
        "not available for the backbone `{kind}`: its candle-transformers network gives only \
         its pooled features, not the last feature map Grad-CAM weighs (it works on vgg16 and \
         efficientnet_lite0)"
    ))
}

impl fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A pretrained backbone, loaded and frozen (its weights are constants, never variables).
#[derive(Debug, Clone)]
pub enum Backbone {
    /// VGG16.
    Vgg16(Vgg16),
    /// EfficientNet-Lite0.
    EfficientNetLite0(EfficientNetLite0),
    /// A hub backbone (ConvNeXt-Tiny, ResNet-50): features only, no fine-tuning.
    Hub(HubBackbone),
}

impl Backbone {
    /// Loads `kind` from `weights` onto `device`, checking every tensor's presence and shape.
    pub fn load(kind: BackboneKind, weights: &ResolvedWeights, device: &Device) -> Result<Self> {
        Ok(match kind {
            BackboneKind::Vgg16 => Backbone::Vgg16(Vgg16::load_resolved(weights, device)?),
            BackboneKind::EfficientNetLite0 => {
                Backbone::EfficientNetLite0(EfficientNetLite0::load(&weights.path, device)?)
            }
            BackboneKind::ConvNextTiny => Backbone::Hub(HubBackbone::load(
                HubModel::ConvNextTiny,
                &weights.path,
                device,
            )?),
            BackboneKind::ResNet50 => Backbone::Hub(HubBackbone::load(
                HubModel::ResNet50,
                &weights.path,
                device,
            )?),
        })
    }

    /// Loads `kind` from the weights file at `path` (its sha256 is computed).
    pub fn load_file(kind: BackboneKind, path: &Path, device: &Device) -> Result<Self> {
        let weights = ResolvedWeights {
            path: path.to_path_buf(),
            source: crate::WeightsSource::Explicit,
            sha256: artifact::sha256_file(path)?,
        };
        Self::load(kind, &weights, device)
    }

    /// Which backbone this is.
    pub fn kind(&self) -> BackboneKind {
        match self {
            Backbone::Vgg16(_) => BackboneKind::Vgg16,
            Backbone::EfficientNetLite0(_) => BackboneKind::EfficientNetLite0,
            Backbone::Hub(h) => h.model().kind(),
        }
    }

    /// The sha256 of the weights file.
    pub fn sha256(&self) -> &str {
        match self {
            Backbone::Vgg16(v) => v.sha256(),
            Backbone::EfficientNetLite0(e) => e.sha256(),
            Backbone::Hub(h) => h.sha256(),
        }
    }

    /// The weights file.
    pub fn path(&self) -> &Path {
        match self {
            Backbone::Vgg16(v) => v.path(),
            Backbone::EfficientNetLite0(e) => e.path(),
            Backbone::Hub(h) => h.path(),
        }
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        match self {
            Backbone::Vgg16(v) => v.device(),
            Backbone::EfficientNetLite0(e) => e.device(),
            Backbone::Hub(h) => h.device(),
        }
    }

    /// What `extract` caches for preprocessed images `[N, 3, H, W]`: VGG16's block-5 output
    /// `[N, 512, H/32, W/32]`; the others' globally pooled features `[N, C, 1, 1]`.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = match self {
            Backbone::Vgg16(v) => return v.forward(x),
            Backbone::EfficientNetLite0(e) => e.pooled(x)?,
            Backbone::Hub(h) => h.pooled(x)?,
        };
        let (n, c) = pooled.dims2()?;
        pooled.reshape((n, c, 1, 1))
    }

    /// The last feature map, the one Grad-CAM explains, for preprocessed images
    /// `[N, 3, H, W]`: VGG16's block-5 output `[N, 512, H/32, W/32]` (what
    /// [`Backbone::features`] gives); EfficientNet-Lite0's head convolution output before the
    /// global pool, `[N, 1280, h, w]` (whose spatial mean [`Backbone::features`] gives). An
    /// error for the hub backbones, whose networks give their pooled features only.
    pub fn feature_map(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Backbone::Vgg16(v) => Ok(v.forward(x)?),
            Backbone::EfficientNetLite0(e) => Ok(e.head_map(x)?),
            Backbone::Hub(h) => Err(grad_cam_unsupported(h.model().kind())),
        }
    }

    /// The frozen part of fine-tuning on preprocessed images: VGG16 blocks 1–4;
    /// EfficientNet-Lite0's stem and blocks 0–14. An error for the hub backbones, which cannot
    /// be fine-tuned ([`BackboneKind::finetune_unsupported`]).
    pub fn frozen(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Backbone::Vgg16(v) => v.forward_blocks(x, 1, Vgg16Block5::FROZEN_BLOCKS),
            Backbone::EfficientNetLite0(e) => e.forward_to_block(x, Lite0Tail::FIRST_BLOCK - 1),
            Backbone::Hub(h) => Err(candle_core::Error::Msg(
                h.model().kind().finetune_unsupported().to_string(),
            )),
        }
    }

    /// The trainable tail, as variables of `varmap` initialised from the pretrained weights
    /// (values already in the map are kept). An error for the hub backbones, which cannot be
    /// fine-tuned ([`BackboneKind::finetune_unsupported`]).
    pub fn tail(&self, varmap: &VarMap, device: &Device) -> Result<Tail> {
        Ok(match self {
            Backbone::Vgg16(v) => Tail::Vgg16(Vgg16Block5::new(varmap, v, device)?),
            Backbone::EfficientNetLite0(e) => {
                Tail::EfficientNetLite0(Lite0Tail::new(varmap, e, device)?)
            }
            Backbone::Hub(h) => return Err(h.model().kind().finetune_unsupported()),
        })
    }
}

/// The part of a backbone fine-tuning trains: from [`Backbone::frozen`]'s output to what
/// [`Backbone::features`] gives.
#[derive(Debug, Clone)]
pub enum Tail {
    /// VGG16 block 5.
    Vgg16(Vgg16Block5),
    /// EfficientNet-Lite0's block 15 and head convolution, then the global pool.
    EfficientNetLite0(Lite0Tail),
}

impl Tail {
    /// The tail on the frozen part's output (the pooled features come flat, `[N, C]`).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Tail::Vgg16(t) => t.forward(x),
            Tail::EfficientNetLite0(t) => t.forward(x),
        }
    }

    /// The tail's last feature map on the frozen part's output, before any global pool (the
    /// map Grad-CAM explains): VGG16's block-5 output, EfficientNet-Lite0's head convolution
    /// output `[N, 1280, h, w]`.
    pub fn feature_map(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Tail::Vgg16(t) => t.forward(x),
            Tail::EfficientNetLite0(t) => t.forward_map(x),
        }
    }

    /// The names of its parameters.
    pub fn param_names(&self) -> Vec<String> {
        match self {
            Tail::Vgg16(_) => Vgg16Block5::param_names(),
            Tail::EfficientNetLite0(_) => Lite0Tail::param_names(),
        }
    }
}

/// The network fine-tuning trains: a backbone's [`Tail`] followed by the top model, on the
/// frozen part's outputs.
///
/// The tail's parameters keep the backbone's own tensor names (VGG16: `features.24`, ...); the
/// top's are `top.dense1`, `top.dense2` (see [`TopModel`]), so a trained top model's weights
/// load by name.
#[derive(Debug, Clone)]
pub struct FinetuneNet {
    tail: Tail,
    top: TopModel,
}

impl FinetuneNet {
    /// The tail followed by `top`.
    pub fn new(tail: Tail, top: TopModel) -> Self {
        Self { tail, top }
    }

    /// The top model.
    pub fn top(&self) -> &TopModel {
        &self.top
    }

    /// The tail.
    pub fn tail(&self) -> &Tail {
        &self.tail
    }
}

impl Network for FinetuneNet {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        self.top.forward_t(&self.tail.forward(x)?, mode)
    }

    fn output_units(&self) -> usize {
        self.top.output_units()
    }
}

/// What a [`Classifier`] runs after the frozen backbone.
#[derive(Debug, Clone)]
pub enum Head {
    /// A top model on the backbone's features.
    Top(TopModel),
    /// A fine-tuned tail and top on the frozen part's outputs.
    Finetune(FinetuneNet),
}

/// A classifier on preprocessed images `[N, 3, H, W]`: a frozen pretrained backbone followed by
/// a [`Head`].
#[derive(Debug, Clone)]
pub struct Classifier {
    backbone: Backbone,
    head: Head,
}

impl Classifier {
    /// The backbone followed by `head`.
    pub fn new(backbone: Backbone, head: Head) -> Self {
        Self { backbone, head }
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The head.
    pub fn head(&self) -> &Head {
        &self.head
    }
}

impl Network for Classifier {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        match &self.head {
            Head::Top(top) => top.forward_t(&self.backbone.features(x)?, mode),
            Head::Finetune(net) => net.forward_t(&self.backbone.frozen(x)?, mode),
        }
    }

    fn output_units(&self) -> usize {
        match &self.head {
            Head::Top(top) => top.output_units(),
            Head::Finetune(net) => net.output_units(),
        }
    }
}
