//! The VGG16 conv base (torchvision layout and tensor names), its fine-tuning head, and the
//! full classifier.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::layers::{self, ConvLayer, Mode, Params};
use crate::network::Network;
use crate::safetensors_io;
use crate::top::{TopModel, TopModelConfig};
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
/// trains block 5 as variables of a [`Vgg16Top`], initialised from this base.
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

/// VGG16 block 5 followed by the top model: the network fine-tuning trains, on block-4
/// outputs `[N, 512, H/16, W/16]`.
///
/// Block 5's parameters are variables named as in torchvision (`features.24`, `features.26`,
/// `features.28`), initialised from the pretrained base; the top's are `top.dense1`,
/// `top.dense2` (see [`TopModel`]), so a trained top model's weights load by name.
///
/// This is the network of the `vgg16_finetune` architecture; the `vgg16_top` architecture is a
/// plain [`TopModel`] on block-5 features.
#[derive(Debug, Clone)]
pub struct Vgg16Top {
    input_size: (usize, usize),
    block5: Vec<ConvLayer>,
    top: TopModel,
}

impl Vgg16Top {
    /// Builds block 5 (from `base`'s weights) and a top model (glorot weights from `rng`,
    /// zero biases) in `varmap` on `device`, for images of `input_size` `(height, width)`.
    /// Parameters already in the map keep their values.
    pub fn new(
        varmap: &VarMap,
        base: &Vgg16,
        input_size: (usize, usize),
        units: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let feature_shape = Vgg16::output_shape(input_size, Vgg16::BLOCKS).ok_or_else(|| {
            ModelError::InvalidConfig(format!(
                "a {}×{} input is too small for VGG16 (at least {m}×{m})",
                input_size.0,
                input_size.1,
                m = Vgg16::MIN_INPUT
            ))
        })?;
        let params = Params::new(varmap, device);
        let block5 = BLOCK_LAYERS[4]
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
        let top = TopModel::new(
            varmap,
            TopModelConfig {
                feature_shape,
                units,
            },
            rng,
            params.device(),
        )?;
        Ok(Self {
            input_size,
            block5,
            top,
        })
    }

    /// Names of block 5's parameters (`features.{24,26,28}.{weight,bias}`).
    pub fn block5_param_names() -> Vec<String> {
        BLOCK_LAYERS[4]
            .clone()
            .flat_map(|l| [tensor_name(l, false), tensor_name(l, true)])
            .collect()
    }

    /// The top model.
    pub fn top(&self) -> &TopModel {
        &self.top
    }

    /// The image size `(height, width)` the network was built for.
    pub fn input_size(&self) -> (usize, usize) {
        self.input_size
    }
}

impl Network for Vgg16Top {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        let h = run_blocks(&self.block5, BLOCK_LAYERS[4].start, x, 5, 5)?;
        self.top.forward_t(&h, mode)
    }

    fn output_units(&self) -> usize {
        self.top.output_units()
    }
}

/// What a [`Vgg16Classifier`] runs after the frozen conv base.
#[derive(Debug, Clone)]
pub enum Vgg16Head {
    /// A top model on block-5 features (the base runs blocks 1–5).
    Top(TopModel),
    /// A fine-tuned block 5 + top model on block-4 outputs (the base runs blocks 1–4).
    Finetune(Vgg16Top),
}

/// A classifier on raw (preprocessed) images `[N, 3, H, W]`: the frozen VGG16 conv base
/// followed by a [`Vgg16Head`].
#[derive(Debug, Clone)]
pub struct Vgg16Classifier {
    base: Vgg16,
    head: Vgg16Head,
}

impl Vgg16Classifier {
    /// The conv base followed by `head`.
    pub fn new(base: Vgg16, head: Vgg16Head) -> Self {
        Self { base, head }
    }

    /// The conv base.
    pub fn base(&self) -> &Vgg16 {
        &self.base
    }

    /// The head.
    pub fn head(&self) -> &Vgg16Head {
        &self.head
    }
}

impl Network for Vgg16Classifier {
    fn forward_t(&self, x: &Tensor, mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        match &self.head {
            Vgg16Head::Top(top) => top.forward_t(&self.base.forward_blocks(x, 1, 5)?, mode),
            Vgg16Head::Finetune(head) => head.forward_t(&self.base.forward_blocks(x, 1, 4)?, mode),
        }
    }

    fn output_units(&self) -> usize {
        match &self.head {
            Vgg16Head::Top(top) => top.output_units(),
            Vgg16Head::Finetune(head) => head.output_units(),
        }
    }
}

/// Reads the conv base's tensors (see [`vgg16_tensor_specs`]) from a safetensors file,
/// reading only those tensors' bytes.
fn read_vgg16_tensors(path: &Path, device: &Device) -> Result<BTreeMap<String, Tensor>> {
    let specs = vgg16_tensor_specs();
    safetensors_io::read_tensors(path, &specs, device)
}
