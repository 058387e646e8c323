//! The top model trained on VGG16 features.

use candle_core::{Device, Tensor};
use candle_nn::{Linear, VarMap};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::layers::{self, Mode, Params};
use crate::network::Network;

/// The shape of a [`TopModel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopModelConfig {
    /// The shape `(C, h, w)` of one input feature map (for VGG16 block 5 on 150×150 images,
    /// `(512, 4, 4)`).
    pub feature_shape: (usize, usize, usize),
    /// Output units: 1 for two classes, one per class for three or more.
    pub units: usize,
}

/// The post's top model: Flatten → Dense 256 → ReLU → Dropout 0.5 → Dense `units` (logits),
/// on feature maps `[N, C, h, w]` (already flat `[N, C·h·w]` input is accepted too).
///
/// Parameters live in a [`VarMap`] as `top.dense1` and `top.dense2` (`.weight` `[out, in]`,
/// `.bias`), the same names whether the model is trained alone on cached features or as the
/// head of [`crate::Vgg16Top`], so a trained top model initialises fine-tuning by name.
#[derive(Debug, Clone)]
pub struct TopModel {
    config: TopModelConfig,
    dense1: Linear,
    dense2: Linear,
}

impl TopModel {
    /// The prefix of the top model's parameter names.
    pub const PREFIX: &'static str = "top";
    /// Units of the hidden dense layer.
    pub const HIDDEN: usize = 256;
    /// Dropout rate before the last layer.
    pub const DROPOUT: f32 = 0.5;

    /// Builds the top model in `varmap` on `device`, with Keras' default initialisers
    /// (`glorot_uniform` weights drawn from `rng`, zero biases). Parameters already in the map
    /// keep their values.
    pub fn new(
        varmap: &VarMap,
        config: TopModelConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (c, h, w) = config.feature_shape;
        if c == 0 || h == 0 || w == 0 {
            return Err(ModelError::InvalidConfig(format!(
                "the top model needs a non-empty feature shape, got {:?}",
                config.feature_shape
            )));
        }
        if config.units == 0 {
            return Err(ModelError::InvalidConfig(
                "the top model needs at least one output unit".into(),
            ));
        }
        let params = Params::new(varmap, device);
        let dense1 = params.dense(
            &format!("{}.dense1", Self::PREFIX),
            c * h * w,
            Self::HIDDEN,
            rng,
        )?;
        let dense2 = params.dense(
            &format!("{}.dense2", Self::PREFIX),
            Self::HIDDEN,
            config.units,
            rng,
        )?;
        Ok(Self {
            config,
            dense1,
            dense2,
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> TopModelConfig {
        self.config
    }

    /// The number of input values per example, `C·h·w`.
    pub fn input_len(&self) -> usize {
        let (c, h, w) = self.config.feature_shape;
        c * h * w
    }
}

impl Network for TopModel {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        let (c, h, w) = self.config.feature_shape;
        let ok = match x.dims() {
            [_, n] => *n == self.input_len(),
            [_, xc, xh, xw] => (*xc, *xh, *xw) == (c, h, w),
            _ => false,
        };
        if !ok {
            candle_core::bail!(
                "top model: expected features [N, {c}, {h}, {w}] (or [N, {}]), got {:?}",
                self.input_len(),
                x.dims()
            );
        }
        let x = x.flatten_from(1)?;
        let x = layers::dense(&self.dense1, &x)?.relu()?;
        let x = layers::dropout(&x, Self::DROPOUT, mode)?;
        layers::dense(&self.dense2, &x)
    }

    fn output_units(&self) -> usize {
        self.config.units
    }
}
