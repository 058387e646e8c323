//! The post's small convnet, trained from scratch.

use candle_core::{Device, Tensor};
use candle_nn::{Linear, VarMap};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::layers::{self, ConvLayer, Mode, Params};
use crate::network::Network;

/// The shape of a [`SmallCnn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmallCnnConfig {
    /// Input `(height, width)` in pixels (Keras' `target_size`).
    pub input_size: (usize, usize),
    /// Output units: 1 for two classes, one per class for three or more.
    pub units: usize,
}

impl Default for SmallCnnConfig {
    /// The post's network: 150×150 input, one sigmoid unit.
    fn default() -> Self {
        Self {
            input_size: (150, 150),
            units: 1,
        }
    }
}

/// The post's small convnet:
/// Conv 32 3×3 → ReLU → MaxPool 2 → Conv 32 3×3 → ReLU → MaxPool 2 → Conv 64 3×3 → ReLU →
/// MaxPool 2 → Flatten → Dense 64 → ReLU → Dropout 0.5 → Dense `units` (logits).
///
/// Convolutions are "valid" (no padding), as in Keras' default. Input is NCHW with three
/// channels. Parameters live in a [`VarMap`] as `conv1`, `conv2`, `conv3`, `dense1`, `dense2`
/// (`.weight`, `.bias`); dense weights are `[out, in]` and the flatten order is C, H, W.
#[derive(Debug, Clone)]
pub struct SmallCnn {
    config: SmallCnnConfig,
    convs: [ConvLayer; 3],
    dense1: Linear,
    dense2: Linear,
}

impl SmallCnn {
    /// Input channels (RGB).
    pub const IN_CHANNELS: usize = 3;
    /// Filters of the three convolutions.
    pub const FILTERS: [usize; 3] = [32, 32, 64];
    /// Units of the hidden dense layer.
    pub const HIDDEN: usize = 64;
    /// Dropout rate before the last layer.
    pub const DROPOUT: f32 = 0.5;
    /// Names of the parameter groups, in forward order.
    pub const LAYER_NAMES: [&'static str; 5] = ["conv1", "conv2", "conv3", "dense1", "dense2"];

    /// Builds the network in `varmap` on `device`, with Keras' default initialisers
    /// (`glorot_uniform` weights drawn from `rng`, zero biases). Parameters already in the map
    /// keep their values.
    pub fn new(
        varmap: &VarMap,
        config: SmallCnnConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        if config.units == 0 {
            return Err(ModelError::InvalidConfig(
                "the small convnet needs at least one output unit".into(),
            ));
        }
        let (c, h, w) = Self::feature_shape(config.input_size).ok_or_else(|| {
            ModelError::InvalidConfig(format!(
                "a {}×{} input is too small for the small convnet (at least {m}×{m})",
                config.input_size.0,
                config.input_size.1,
                m = Self::MIN_INPUT
            ))
        })?;
        let params = Params::new(varmap, device);
        let [f1, f2, f3] = Self::FILTERS;
        let convs = [
            params.conv3x3("conv1", Self::IN_CHANNELS, f1, 0, rng)?,
            params.conv3x3("conv2", f1, f2, 0, rng)?,
            params.conv3x3("conv3", f2, f3, 0, rng)?,
        ];
        let dense1 = params.dense("dense1", c * h * w, Self::HIDDEN, rng)?;
        let dense2 = params.dense("dense2", Self::HIDDEN, config.units, rng)?;
        Ok(Self {
            config,
            convs,
            dense1,
            dense2,
        })
    }

    /// The smallest input side the network accepts.
    pub const MIN_INPUT: usize = 22;

    /// The shape `(C, H, W)` of the last pooling layer's output for an input of
    /// `(height, width)`, or `None` when the input is too small.
    pub fn feature_shape(input_size: (usize, usize)) -> Option<(usize, usize, usize)> {
        let side = |mut s: usize| {
            for _ in 0..3 {
                s = s.checked_sub(2)? / 2;
            }
            (s >= 1).then_some(s)
        };
        Some((Self::FILTERS[2], side(input_size.0)?, side(input_size.1)?))
    }

    /// The network's configuration.
    pub fn config(&self) -> SmallCnnConfig {
        self.config
    }
}

impl Network for SmallCnn {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        layers::check_nchw(x, Self::IN_CHANNELS, Self::MIN_INPUT, "small convnet")?;
        let (h, w) = self.config.input_size;
        if x.dims()[2..] != [h, w] {
            candle_core::bail!(
                "small convnet: input is {}×{}, but the network was built for {h}×{w}",
                x.dims()[2],
                x.dims()[3]
            );
        }
        let mut h = x.clone();
        for conv in &self.convs {
            h = kernels::max_pool2d(&conv.forward_relu(&h)?, 2)?;
        }
        let h = h.flatten_from(1)?;
        let h = layers::dense(&self.dense1, &h)?.relu()?;
        let h = layers::dropout(&h, Self::DROPOUT, mode)?;
        layers::dense(&self.dense2, &h)
    }

    fn output_units(&self) -> usize {
        self.config.units
    }
}
