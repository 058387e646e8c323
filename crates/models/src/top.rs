//! The top model trained on a backbone's features.

use candle_core::{Device, Tensor};
use candle_nn::{Linear, VarMap};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::layers::{self, Mode, Params};
use crate::network::Network;

/// The layers of a [`TopModel`] besides its input and output sizes (`[top]` in a pipeline
/// file; stored in model specs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopLayers {
    /// Units of the hidden dense layer (0: none, the top is one linear layer).
    pub hidden_units: usize,
    /// Dropout rate before the output layer, in [0, 1).
    pub dropout: f32,
}

impl Default for TopLayers {
    /// The post's: Dense 256, Dropout 0.5.
    fn default() -> Self {
        Self {
            hidden_units: 256,
            dropout: 0.5,
        }
    }
}

/// The shape of a [`TopModel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopModelConfig {
    /// The shape `(C, h, w)` of one input feature map (for VGG16 block 5 on 150×150 images,
    /// `(512, 4, 4)`; pooled features are `(C, 1, 1)`).
    pub feature_shape: (usize, usize, usize),
    /// Output units: 1 for two classes, one per class for three or more.
    pub units: usize,
    /// The hidden layer and dropout.
    pub layers: TopLayers,
}

/// The post's top model: Flatten → Dense 256 → ReLU → Dropout 0.5 → Dense `units` (logits),
/// on feature maps `[N, C, h, w]` (already flat `[N, C·h·w]` input is accepted too). Without a
/// hidden layer ([`TopLayers::hidden_units`] = 0) it is Flatten → Dropout → Dense `units`.
///
/// Parameters live in a [`VarMap`] as `top.dense1` (the hidden layer) and `top.dense2` (the
/// output layer) (`.weight` `[out, in]`, `.bias`), the same names whether the model is trained
/// alone on cached features or as the head of [`crate::FinetuneNet`], so a trained top model
/// initialises fine-tuning by name.
#[derive(Debug, Clone)]
pub struct TopModel {
    config: TopModelConfig,
    dense1: Option<Linear>,
    dense2: Linear,
}

impl TopModel {
    /// The prefix of the top model's parameter names.
    pub const PREFIX: &'static str = "top";

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
        let TopLayers {
            hidden_units,
            dropout,
        } = config.layers;
        if !(0.0..1.0).contains(&dropout) {
            return Err(ModelError::InvalidConfig(format!(
                "the top model's dropout must be in [0, 1), got {dropout}"
            )));
        }
        let params = Params::new(varmap, device);
        let dense1 = (hidden_units > 0)
            .then(|| {
                params.dense(
                    &format!("{}.dense1", Self::PREFIX),
                    c * h * w,
                    hidden_units,
                    rng,
                )
            })
            .transpose()?;
        let dense2 = params.dense(
            &format!("{}.dense2", Self::PREFIX),
            if hidden_units > 0 {
                hidden_units
            } else {
                c * h * w
            },
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
        let mut x = x.flatten_from(1)?;
        if let Some(dense1) = &self.dense1 {
            x = layers::dense(dense1, &x)?.relu()?;
        }
        let x = layers::dropout(&x, self.config.layers.dropout, mode)?;
        layers::dense(&self.dense2, &x)
    }

    fn output_units(&self) -> usize {
        self.config.units
    }
}
