//! Shared fixtures: a tiny convnet, synthetic image sets, and source wrappers that interrupt or
//! poison a chosen batch.

#![allow(dead_code)]

use candle_core::{DType, Device, Result as CResult, Tensor, Var};
use candle_nn::VarMap;
use engine::{Batch, BatchIter, BatchSource, Interrupt, Params, TensorSource, Wrap};
use models::{Mode, Network};
use rand::Rng;
use std::collections::BTreeMap;

/// Side of the synthetic square images.
pub const SIDE: usize = 8;
const FILTERS: usize = 8;

/// Conv 3×3 (8 filters) → ReLU → max-pool 2 → flatten → dropout 0.25 → dense `units`.
pub struct TinyNet {
    conv_w: Tensor,
    conv_b: Tensor,
    fc_w: Tensor,
    fc_b: Tensor,
    units: usize,
}

fn insert(varmap: &VarMap, name: &str, t: Tensor) -> Tensor {
    let var = Var::from_tensor(&t).unwrap();
    let out = var.as_tensor().clone();
    varmap.data().lock().unwrap().insert(name.to_string(), var);
    out
}

impl TinyNet {
    /// A network for `channels`-channel images with `units` outputs, its parameters created in
    /// `varmap` with Keras' glorot-uniform initialisation from `seed`.
    pub fn new(varmap: &VarMap, channels: usize, units: usize, seed: u64) -> Self {
        let mut rng = imagedata::rng::stream(seed, "init");
        let dev = Device::Cpu;
        let pooled = (SIDE - 2) / 2;
        let features = FILTERS * pooled * pooled;
        let conv_w = models::glorot_uniform(&[FILTERS, channels, 3, 3], &mut rng, &dev).unwrap();
        let fc_w = models::glorot_uniform(&[units, features], &mut rng, &dev).unwrap();
        Self {
            conv_w: insert(varmap, "conv.weight", conv_w),
            conv_b: insert(
                varmap,
                "conv.bias",
                Tensor::zeros(FILTERS, DType::F32, &dev).unwrap(),
            ),
            fc_w: insert(varmap, "fc.weight", fc_w),
            fc_b: insert(
                varmap,
                "fc.bias",
                Tensor::zeros(units, DType::F32, &dev).unwrap(),
            ),
            units,
        }
    }
}

impl Network for TinyNet {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> CResult<Tensor> {
        let h = x
            .conv2d(&self.conv_w, 0, 1, 1, 1)?
            .broadcast_add(&self.conv_b.reshape((1, FILTERS, 1, 1))?)?
            .relu()?
            .max_pool2d(2)?
            .flatten_from(1)?;
        let h = models::dropout(&h, 0.25, mode)?;
        h.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)
    }

    fn output_units(&self) -> usize {
        self.units
    }
}

/// A linear classifier on the flattened image (a NaN pixel reaches the logits, which the
/// ReLU of [`TinyNet`] would hide).
pub struct LinearNet {
    w: Tensor,
    b: Tensor,
    units: usize,
}

impl LinearNet {
    /// A linear classifier for `channels`-channel images with `units` outputs.
    pub fn new(varmap: &VarMap, channels: usize, units: usize, seed: u64) -> Self {
        let mut rng = imagedata::rng::stream(seed, "init");
        let dev = Device::Cpu;
        let w = models::glorot_uniform(&[units, channels * SIDE * SIDE], &mut rng, &dev).unwrap();
        Self {
            w: insert(varmap, "linear.weight", w),
            b: insert(
                varmap,
                "linear.bias",
                Tensor::zeros(units, DType::F32, &dev).unwrap(),
            ),
            units,
        }
    }
}

impl Network for LinearNet {
    fn forward_t(&self, x: &Tensor, _mode: &mut Mode<'_>) -> CResult<Tensor> {
        x.flatten_from(1)?
            .matmul(&self.w.t()?)?
            .broadcast_add(&self.b)
    }

    fn output_units(&self) -> usize {
        self.units
    }
}

/// `n` single-channel images, label 1 bright (base 0.65) and 0 dark (base 0.35), with uniform
/// per-pixel noise of ±0.3; labels alternate.
pub fn bright_dark(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = imagedata::rng::stream(seed, "bright-dark");
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        let base = if label == 1 { 0.65f32 } else { 0.35 };
        pixels.extend((0..SIDE * SIDE).map(|_| base + rng.random_range(-0.3f32..0.3)));
        labels.push(label);
    }
    (
        Tensor::from_vec(pixels, (n, 1, SIDE, SIDE), &Device::Cpu).unwrap(),
        Tensor::from_vec(labels, n, &Device::Cpu).unwrap(),
    )
}

/// `n` three-channel images of class `k` = `i % 3`: channel `k` bright (0.8), the others dark
/// (0.2), with ±0.25 noise.
pub fn three_colours(n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = imagedata::rng::stream(seed, "three-colours");
    let mut pixels = Vec::with_capacity(n * 3 * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = i % 3;
        for c in 0..3 {
            let base = if c == label { 0.8f32 } else { 0.2 };
            pixels.extend((0..SIDE * SIDE).map(|_| base + rng.random_range(-0.25f32..0.25)));
        }
        labels.push(label as u32);
    }
    (
        Tensor::from_vec(pixels, (n, 3, SIDE, SIDE), &Device::Cpu).unwrap(),
        Tensor::from_vec(labels, n, &Device::Cpu).unwrap(),
    )
}

/// Shuffled training and in-order validation sources over bright/dark images.
pub fn bright_dark_sources(train: usize, val: usize, batch: usize) -> (TensorSource, TensorSource) {
    let (x, y) = bright_dark(train, 1);
    let (vx, vy) = bright_dark(val, 2);
    (
        TensorSource::new(x, y, batch).unwrap().shuffled(11),
        TensorSource::new(vx, vy, batch).unwrap(),
    )
}

/// Every parameter's exact bits.
pub fn bits(params: &Params) -> BTreeMap<String, Vec<u32>> {
    params
        .tensors()
        .into_iter()
        .map(|(n, t)| {
            let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            (n, v.into_iter().map(f32::to_bits).collect())
        })
        .collect()
}

/// Acts when the wrapped source hands out batch `batch` (0-based) of epoch `epoch`
/// (0-based): triggers `interrupt`, or replaces the inputs with NaN.
pub struct Tripwire {
    pub epoch: usize,
    pub batch: usize,
    pub action: Action,
}

/// What a [`Tripwire`] does.
#[derive(Clone)]
pub enum Action {
    Interrupt(Interrupt),
    Poison,
}

impl<S: BatchSource> Wrap<S> for Tripwire {
    fn epoch_from<'a>(
        &'a mut self,
        inner: &'a mut S,
        epoch: usize,
        skip: usize,
    ) -> engine::Result<BatchIter<'a>> {
        let (at_epoch, at_batch, action) = (self.epoch, self.batch, self.action.clone());
        let it = inner.epoch_from(epoch, skip)?;
        Ok(Box::new(it.enumerate().map(move |(i, b)| {
            let b = b?;
            if epoch != at_epoch || i + skip != at_batch {
                return Ok(b);
            }
            match &action {
                Action::Interrupt(flag) => {
                    flag.trigger();
                    Ok(b)
                }
                Action::Poison => Batch::new((b.x * f64::NAN)?, b.labels),
            }
        })))
    }
}
