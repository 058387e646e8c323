//! The networks of littledata: the post's small convnet ([`SmallCnn`]), the top model trained
//! on VGG16 features ([`TopModel`]), the ImageNet-pretrained VGG16 conv base ([`Vgg16`],
//! torchvision tensor names, callable block by block), the fine-tuning network (VGG16 block
//! 5 and the top, [`Vgg16Top`]) and the full classifier ([`Vgg16Classifier`]).
//!
//! Every convolution and pooling runs through the `kernels` crate. Trainable parameters live
//! in a [`candle_nn::VarMap`] under stable names, so the training engine can find, freeze
//! and checkpoint them; initialisation and dropout draw from seeded ChaCha8 generators only.
//!
//! A model artifact records a [`ModelSpec`] in its metadata; [`build_from_spec`] and
//! [`load_from_spec`] rebuild the model from it. [`resolve_vgg16_weights`] finds the
//! pretrained weights (`--weights`, `LITTLEDATA_VGG16_WEIGHTS`, the hf-hub cache, a download).

#![warn(missing_docs)]

mod error;
pub mod layers;
mod network;
mod safetensors_io;
mod small_cnn;
mod spec;
mod top;
mod vgg16;
mod weights;

pub use error::{ModelError, Result, WeightsAttempt};
pub use layers::{Mode, dropout, glorot_uniform};
pub use network::{Network, probabilities, units_for_classes};
pub use small_cnn::{SmallCnn, SmallCnnConfig};
pub use spec::{
    Architecture, MODEL_SPEC_KEY, MODEL_SPEC_VERSION, Model, ModelSpec, Preprocessing,
    build_from_spec, load_from_spec, load_varmap,
};
pub use top::{TopModel, TopModelConfig};
pub use vgg16::{
    VGG16_CONV_INDICES, Vgg16, Vgg16Classifier, Vgg16Head, Vgg16Top, vgg16_tensor_specs,
};
pub use weights::{
    ResolvedWeights, VGG16_HUB_FILE, VGG16_HUB_REPO, VGG16_WEIGHTS_ENV, WeightsResolver,
    WeightsSource, resolve_vgg16_weights,
};
