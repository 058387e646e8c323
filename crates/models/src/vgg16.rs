//! The VGG16 conv base (torchvision layout and tensor names) and its block 5 as the tail
//! fine-tuning trains.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::error::{ModelError, Result};
use crate::layers::{self, ConvLayer, Params};
use crate::safetensors_io;
use crate::weights::ResolvedWeights;

/// Indices of the 13 convolutions in torchvision's `vgg16().features` (and timm's
/// `vgg16.tv_in1k`): the tensors are `features.{i}.weight` (OIHW) and `features.{i}.bias`.
pub const VGG16_CONV_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// `(in, out)` channels of the 13 convolutions.
const CHANNELS: [(usize, usize); 13] = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
];

/// The convolutions (indices into [`VGG16_CONV_INDICES`]) of each of the five blocks.
const BLOCK_LAYERS: [Range<usize>; 5] = [0..2, 2..4, 4..7, 7..10, 10..13];

/// The name of the weight (`bias == false`) or bias tensor of convolution `layer` (0..13).
fn tensor_name(layer: usize, bias: bool) -> String {
    let kind = if bias { "bias" } else { "weight" };
    format!("features.{}.{kind}", VGG16_CONV_INDICES[layer])
}

/// The shape of the weight or bias tensor of convolution `layer` (0..13).
fn tensor_shape(layer: usize, bias: bool) -> Vec<usize> {
    let (inp, out) = CHANNELS[layer];
    if bias {
        vec![out]
    } else {
        vec![out, inp, 3, 3]
    }
}

/// Every tensor the conv base needs, `(name, shape)`, in layer order (weight, then bias).
pub fn vgg16_tensor_specs() -> Vec<(String, Vec<usize>)> {
    (0..CHANNELS.len())
        .flat_map(|l| [false, true].map(|bias| (tensor_name(l, bias), tensor_shape(l, bias))))
        .collect()
}

/// The ImageNet-pretrained VGG16 conv base: 13 convolutions (3×3, padding 1, ReLU) in five
/// blocks, each ending with a 2×2 max-pool, on NCHW RGB input of at least 32×32.
///
/// The weights are constants (not variables): gradients never flow into them. Fine-tuning
/// trains block 5 as variables of a [`Vgg16Block5`], initialised from this base.
#[derive(Debug, Clone)]
pub struct Vgg16 {
    layers: Vec<ConvLayer>,
    sha256: String,
    path: PathBuf,
}

impl Vgg16 {
    /// Number of blocks.
    pub const BLOCKS: usize = 5;
    /// The smallest input side the whole conv base accepts.
    pub const MIN_INPUT: usize = 32;
    /// Channels of each block's output.
    pub const BLOCK_CHANNELS: [usize; 5] = [64, 128, 256, 512, 512];

    /// Loads the conv base from a safetensors file (torchvision or timm names; other tensors
    /// in the file are ignored) onto `device`, checking every tensor's presence, shape and
    /// dtype, and records the file's sha256.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let tensors = read_vgg16_tensors(path, device)?;
        let sha256 = artifact::sha256_file(path)?;
        Self::from_tensors(&tensors, path, sha256)
    }

    /// Loads the conv base from resolved weights, reusing the digest computed while resolving.
    pub fn load_resolved(weights: &ResolvedWeights, device: &Device) -> Result<Self> {
        let tensors = read_vgg16_tensors(&weights.path, device)?;
        Self::from_tensors(&tensors, &weights.path, weights.sha256.clone())
    }

    /// Builds the conv base from named tensors (see [`vgg16_tensor_specs`]), checking each
    /// one's presence and shape; `origin` names where they came from in errors and `sha256`
    /// is the digest recorded for it.
    pub fn from_tensors(
        tensors: &BTreeMap<String, Tensor>,
        origin: &Path,
        sha256: impl Into<String>,
    ) -> Result<Self> {
        let specs = vgg16_tensor_specs();
        let missing: Vec<&String> = specs
            .iter()
            .map(|(name, _)| name)
            .filter(|name| !tensors.contains_key(*name))
            .collect();
        if let Some(first) = missing.first() {
            return Err(ModelError::MissingTensor {
                path: origin.to_path_buf(),
                name: (*first).clone(),
                also_missing: missing.len() - 1,
            });
        }
        let get = |layer: usize, bias: bool| -> Result<Tensor> {
            let name = tensor_name(layer, bias);
            let expected = tensor_shape(layer, bias);
            let t = &tensors[&name];
            if t.dims() != expected.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    path: origin.to_path_buf(),
                    name,
                    expected,
                    found: t.dims().to_vec(),
                });
            }
            Ok(t.to_dtype(DType::F32)?)
        };
        let layers = (0..CHANNELS.len())
            .map(|l| {
                Ok(ConvLayer {
                    weight: get(l, false)?,
                    bias: get(l, true)?,
                    padding: 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            sha256: sha256.into(),
            path: origin.to_path_buf(),
        })
    }

    /// The sha256 (lowercase hex) of the weights file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The weights file the base was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        self.layers[0].weight.device()
    }

    /// The output shape `(C, h, w)` of block `to_block` (1..=5) for an input of
    /// `(height, width)`, or `None` when the input is too small or the block out of range.
    pub fn output_shape(
        input_size: (usize, usize),
        to_block: usize,
    ) -> Option<(usize, usize, usize)> {
        if !(1..=Self::BLOCKS).contains(&to_block) {
            return None;
        }
        let (h, w) = (input_size.0 >> to_block, input_size.1 >> to_block);
        (h >= 1 && w >= 1).then_some((Self::BLOCK_CHANNELS[to_block - 1], h, w))
    }

    /// Runs blocks `from_block..=to_block` (1-based; block k ends with its max-pool) on `x`,
    /// which must be the input of block `from_block`: images `[N, 3, H, W]` for block 1,
    /// block `from_block - 1`'s output otherwise.
    pub fn forward_blocks(
        &self,
        x: &Tensor,
        from_block: usize,
        to_block: usize,
    ) -> candle_core::Result<Tensor> {
        run_blocks(&self.layers, 0, x, from_block, to_block)
    }

    /// Runs the whole conv base (blocks 1 to 5): `[N, 3, H, W]` → `[N, 512, H/32, W/32]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_blocks(x, 1, Self::BLOCKS)
    }

    /// The weight and bias of block `block`'s convolutions (1-based), with their tensor names.
    pub fn block_tensors(&self, block: usize) -> Vec<(String, Tensor)> {
        match BLOCK_LAYERS.get(block.wrapping_sub(1)) {
            Some(range) => range
                .clone()
                .flat_map(|l| {
                    [
                        (tensor_name(l, false), self.layers[l].weight.clone()),
                        (tensor_name(l, true), self.layers[l].bias.clone()),
                    ]
                })
                .collect(),
            None => Vec::new(),
        }
    }
}

/// Runs blocks `from..=to` with `layers` holding the convolutions from global layer index
/// `first_layer` on.
fn run_blocks(
    layers: &[ConvLayer],
    first_layer: usize,
    x: &Tensor,
    from: usize,
    to: usize,
) -> candle_core::Result<Tensor> {
    if !(1 <= from && from <= to && to <= Vgg16::BLOCKS) {
        candle_core::bail!("VGG16: blocks {from}..={to} out of range (blocks are 1..=5, in order)");
    }
    let in_channels = if from == 1 {
        3
    } else {
        Vgg16::BLOCK_CHANNELS[from - 2]
    };
    let min_side = 1 << (to - from + 1);
    layers::check_nchw(
        x,
        in_channels,
        min_side,
        &format!("VGG16 blocks {from}..={to}"),
    )?;
    let mut h = x.clone();
    for range in &BLOCK_LAYERS[from - 1..to] {
        for l in range.clone() {
            let layer = l
                .checked_sub(first_layer)
                .and_then(|i| layers.get(i))
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "VGG16: convolution {l} is not part of this network"
                    ))
                })?;
            h = layer.forward_relu(&h)?;
        }
        h = kernels::max_pool2d(&h, 2)?;
    }
    Ok(h)
}

/// VGG16 block 5 as variables: the tail fine-tuning trains, on block-4 outputs
/// `[N, 512, H/16, W/16]`, giving block-5 outputs `[N, 512, H/32, W/32]`.
///
/// Its parameters are named as in torchvision (`features.24`, `features.26`, `features.28`)
/// and initialised from the pretrained base.
#[derive(Debug, Clone)]
pub struct Vgg16Block5 {
    layers: Vec<ConvLayer>,
}

impl Vgg16Block5 {
    /// The blocks fine-tuning keeps frozen (1 to this one).
    pub const FROZEN_BLOCKS: usize = 4;

    /// Block 5 as variables of `varmap` on `device`, initialised from `base` (values already
    /// in the map are kept).
    pub fn new(varmap: &VarMap, base: &Vgg16, device: &Device) -> Result<Self> {
        let params = Params::new(varmap, device);
        let layers = BLOCK_LAYERS[4]
            .clone()
            .map(|l| {
                let weight =
                    params.get_or_insert(&tensor_name(l, false), &base.layers[l].weight)?;
                let bias = params.get_or_insert(&tensor_name(l, true), &base.layers[l].bias)?;
                Ok(ConvLayer {
                    weight,
                    bias,
                    padding: 1,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Names of block 5's parameters (`features.{24,26,28}.{weight,bias}`).
    pub fn param_names() -> Vec<String> {
        BLOCK_LAYERS[4]
            .clone()
            .flat_map(|l| [tensor_name(l, false), tensor_name(l, true)])
            .collect()
    }

    /// Block 5 on block-4 outputs.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        run_blocks(&self.layers, BLOCK_LAYERS[4].start, x, 5, 5)
    }
}

/// Reads the conv base's tensors (see [`vgg16_tensor_specs`]) from a safetensors file,
/// reading only those tensors' bytes.
fn read_vgg16_tensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let specs = vgg16_tensor_specs();
    safetensors_io::read_tensors(path, &specs, device)
}
