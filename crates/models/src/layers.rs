//! Building blocks shared by the networks: the forward mode, deterministic dropout, Keras'
//! `glorot_uniform` initialiser, and parameter creation in a [`VarMap`].

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{Linear, VarBuilder, VarMap};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How a forward pass runs.
///
/// In [`Mode::Train`] dropout is active and draws its masks from the given generator, so a
/// training run is reproducible from its seed; in [`Mode::Eval`] dropout is the identity.
#[derive(Debug)]
pub enum Mode<'a> {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: dropout masks are drawn from `rng`.
    Train {
        /// The generator dropout masks come from.
        rng: &'a mut ChaCha8Rng,
    },
}

impl Mode<'_> {
    /// Whether this is a training pass.
    pub fn is_train(&self) -> bool {
        matches!(self, Mode::Train { .. })
    }
}

/// Inverted dropout with rate `rate` (the fraction of units zeroed): in training, each element
/// is kept with probability `1 - rate` and scaled by `1 / (1 - rate)`; in evaluation, `x` is
/// returned unchanged. The mask is drawn element by element, in row-major order, from the
/// mode's generator, so it depends only on the generator state and the tensor's shape.
pub fn dropout(x: &Tensor, rate: f32, mode: &mut Mode<'_>) -> Result<Tensor> {
    if !(0.0..1.0).contains(&rate) {
        candle_core::bail!("dropout rate must be in [0, 1), got {rate}");
    }
    let rng = match mode {
        Mode::Eval => return Ok(x.clone()),
        Mode::Train { rng } => rng,
    };
    if rate == 0.0 {
        return Ok(x.clone());
    }
    let keep = 1.0 - rate;
    let scale = 1.0 / keep;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
    x.mul(&mask)
}

/// Keras' fan-in and fan-out of a weight of the given shape, in this crate's layouts: a dense
/// weight is `[out, in]`, a convolution weight is OIHW `[out, in, kh, kw]`.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [out, inp] => (*inp, *out),
        [out, inp, rest @ ..] => {
            let receptive: usize = rest.iter().product();
            (inp * receptive, out * receptive)
        }
    }
}

/// Keras' default `glorot_uniform` initialiser: values drawn uniformly from `[-limit, limit)`
/// with `limit = sqrt(6 / (fan_in + fan_out))` (see [`fans`]), in row-major order from `rng`.
pub fn glorot_uniform(shape: &[usize], rng: &mut ChaCha8Rng, device: &Device) -> Result<Tensor> {
    let (fan_in, fan_out) = fans(shape);
    let limit = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt() as f32;
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| rng.random_range(-limit..limit))
        .collect();
    Tensor::from_vec(values, shape, device)
}

/// Creates a network's parameters as named variables of a [`VarMap`], through a
/// [`VarBuilder`] made with [`VarBuilder::from_varmap`].
///
/// A name already in the map keeps its value (its shape is checked), so a network can be
/// built over a map that already holds loaded weights. Initial values are always drawn, so
/// the generator advances the same way whatever the map holds.
pub(crate) struct Params<'a> {
    varmap: &'a VarMap,
    vb: VarBuilder<'a>,
    device: Device,
}

impl<'a> Params<'a> {
    /// Parameters in `varmap`, created on `device` as `f32`.
    pub(crate) fn new(varmap: &'a VarMap, device: &Device) -> Self {
        Self {
            varmap,
            vb: VarBuilder::from_varmap(varmap, DType::F32, device),
            device: device.clone(),
        }
    }

    /// The variable `name`, inserted with value `init` when absent.
    pub(crate) fn get_or_insert(&self, name: &str, init: &Tensor) -> Result<Tensor> {
        {
            let mut data = self.varmap.data().lock().map_err(|_| {
                candle_core::Error::Msg("the variable map's lock is poisoned".into())
            })?;
            if !data.contains_key(name) {
                // Detached first, so the variable always owns a copy of the values.
                let init = init.to_device(&self.device)?.to_dtype(DType::F32)?.detach();
                data.insert(name.to_string(), Var::from_tensor(&init)?);
            }
        }
        self.vb.get(init.shape(), name)
    }

    /// A `glorot_uniform` weight `name` of the given shape.
    pub(crate) fn glorot(
        &self,
        name: &str,
        shape: &[usize],
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let init = glorot_uniform(shape, rng, &self.device)?;
        self.get_or_insert(name, &init)
    }

    /// A zero-initialised bias `name` of length `n`.
    pub(crate) fn zeros(&self, name: &str, n: usize) -> Result<Tensor> {
        let init = Tensor::zeros(n, DType::F32, &self.device)?;
        self.get_or_insert(name, &init)
    }

    /// A dense layer `prefix.weight` `[out, in]` (glorot) and `prefix.bias` `[out]` (zeros).
    pub(crate) fn dense(
        &self,
        prefix: &str,
        inp: usize,
        out: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<Linear> {
        let w = self.glorot(&format!("{prefix}.weight"), &[out, inp], rng)?;
        let b = self.zeros(&format!("{prefix}.bias"), out)?;
        Ok(Linear::new(w, Some(b)))
    }

    /// A 3×3 convolution `prefix.weight` OIHW (glorot) and `prefix.bias` (zeros).
    pub(crate) fn conv3x3(
        &self,
        prefix: &str,
        inp: usize,
        out: usize,
        padding: usize,
        rng: &mut ChaCha8Rng,
    ) -> Result<ConvLayer> {
        let weight = self.glorot(&format!("{prefix}.weight"), &[out, inp, 3, 3], rng)?;
        let bias = self.zeros(&format!("{prefix}.bias"), out)?;
        Ok(ConvLayer {
            weight,
            bias,
            padding,
        })
    }
}

/// A stride-1 convolution with bias, run through the `kernels` crate.
#[derive(Debug, Clone)]
pub(crate) struct ConvLayer {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
    pub(crate) padding: usize,
}

impl ConvLayer {
    /// Convolution followed by ReLU.
    pub(crate) fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        kernels::conv2d_relu(x, &self.weight, Some(&self.bias), self.padding)
    }
}

/// A dense layer on `[N, in]` input, computed as `(W·xᵀ)ᵀ + b` rather than `x·Wᵀ + b`: the
/// weight's gradient then comes out of the backward matmul contiguous, in the weight's own
/// `[out, in]` layout, instead of as a transposed view that every later pass (gradient
/// accumulation, the optimizer) would have to gather element by element.
pub(crate) fn dense(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let y = layer.weight().matmul(&x.t()?)?.t()?;
    match layer.bias() {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// Checks that `x` is a batch `[N, C, H, W]` with `channels` channels and at least
/// `min_hw` pixels on each side; `what` names the network in the message.
pub(crate) fn check_nchw(x: &Tensor, channels: usize, min_hw: usize, what: &str) -> Result<()> {
    match x.dims() {
        &[_, c, h, w] if c == channels && h >= min_hw && w >= min_hw => Ok(()),
        &[_, c, h, w] if c == channels => candle_core::bail!(
            "{what}: input is {h}×{w}, smaller than the {min_hw}×{min_hw} minimum"
        ),
        &[_, c, _, _] => {
            candle_core::bail!("{what}: input has {c} channels, expected {channels}")
        }
        dims => candle_core::bail!("{what}: expected input [N, {channels}, H, W], got {dims:?}"),
    }
}
