//! The networks of littledata: the post's small convnet ([`SmallCnn`]), the top model trained
//! on a backbone's features ([`TopModel`]), the pretrained backbones behind one seam
//! ([`BackboneKind`], [`Backbone`]: VGG16 with torchvision's tensor names, callable block by
//! block, ...), the fine-tuning network (a backbone's [`Tail`] and the top, [`FinetuneNet`])
//! and the full classifier on images ([`Classifier`]), which can say where it looked
//! ([`gradcam`]: Grad-CAM on the last feature map).
//!
//! The hub backbones, ConvNeXt-Tiny and ResNet-50 ([`HubModel`], [`HubBackbone`]), are
//! candle-transformers' networks on timm's weights, for features only.
//!
//! Every other convolution and pooling runs through the `kernels` crate (the hub backbones use
//! candle's stock ones). Trainable parameters live in a [`candle_nn::VarMap`] under stable
//! names, so the training engine can find, freeze and checkpoint them; initialisation and
//! dropout draw from seeded ChaCha8 generators only.
//!
//! A model artifact records a [`ModelSpec`] in its metadata; [`build_from_spec`] and
//! [`load_from_spec`] rebuild the model from it. [`BackboneKind::resolve_weights`] finds the
//! pretrained weights (`--weights`, the backbone's environment variable, the hf-hub cache, a
//! download).

#![warn(missing_docs)]

pub mod backbone;
mod efficientnet;
mod error;
pub mod gradcam;
mod hub;
pub mod layers;
mod network;
mod safetensors_io;
mod small_cnn;
mod spec;
mod top;
mod vgg16;
mod weights;

pub use backbone::{Backbone, BackboneKind, Classifier, FinetuneNet, Head, Tail};
pub use efficientnet::{EfficientNetLite0, Lite0Tail};
pub use error::{ModelError, Result, WeightsAttempt};
pub use gradcam::{CamTensors, GradCam};
pub use hub::{HubBackbone, HubModel};
pub use layers::{Mode, dropout, glorot_uniform};
pub use network::{Network, probabilities, units_for_classes};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use spec::{
    Architecture, BackboneRef, MODEL_SPEC_KEY, MODEL_SPEC_VERSION, Model, ModelSpec, Preprocessing,
    build_from_spec, load_from_spec, load_varmap,
};
pub use top::{TopLayers, TopModel, TopModelConfig};
pub use vgg16::{VGG16_CONV_INDICES, Vgg16, Vgg16Block5, vgg16_tensor_specs};
pub use weights::{
    ResolvedWeights, WeightsLocation, WeightsResolver, WeightsSource, resolve_weights,
};
