//! EfficientNet-Lite0 (ImageNet-pretrained, BatchNorm folded into the convolutions): the frozen
//! network, callable block by block, and the trainable tail for fine-tuning.
//!
//! Architecture (Google's EfficientNet-Lite0 as ported to PyTorch, tensor names `_conv_stem`,
//! `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`): a 3×3 stride-2 stem to 32 channels, 16
//! inverted-residual (MBConv) blocks in 7 stages, a 1×1 head to 1280 channels; ReLU6 after
//! every convolution but the projections, no squeeze-excitation, a residual when a block keeps
//! its shape, TensorFlow "SAME" padding, BatchNorm eps 1e-3.
//!
//! On the CPU the frozen network runs the `kernels` crate's channels-last inference path
//! ([`kernels::frozen`]); elsewhere (and for the trainable tail) it runs the differentiable
//! entry points (`kernels::depthwise_conv2d`, `pointwise_conv2d`, `conv2d_strided`), which use
//! candle's own ops off the CPU.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use kernels::Padding;
use kernels::frozen::{
    FrozenConv, FrozenDepthwise, FrozenLayer, FrozenMbConv, FrozenPointwise, FrozenSequence,
};

use crate::error::{ModelError, Result};
use crate::layers::Params;
use crate::safetensors_io;

/// BatchNorm epsilon of the TensorFlow original.
const BN_EPS: f64 = 1e-3;
/// Stem output channels.
const STEM: usize = 32;
/// Per stage: (repeats, kernel, first stride, expansion ratio, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// The configuration of one MBConv block.
#[derive(Clone, Copy, Debug)]
struct BlockConfig {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    expanded: usize,
}

impl BlockConfig {
    fn has_expand(&self) -> bool {
        self.expanded != self.cin
    }

    fn residual(&self) -> bool {
        self.stride == 1 && self.cin == self.cout
    }
}

/// The 16 blocks in order.
fn block_configs() -> Vec<BlockConfig> {
    let mut out = Vec::with_capacity(EfficientNetLite0::BLOCKS);
    let mut cin = STEM;
    for &(repeats, k, stride, ratio, cout) in &STAGES {
        for r in 0..repeats {
            out.push(BlockConfig {
                cin,
                cout,
                k,
                stride: if r == 0 { stride } else { 1 },
                expanded: cin * ratio,
            });
            cin = cout;
        }
    }
    out
}

/// The four BatchNorm tensors of `bn` with `c` channels.
fn bn_specs(bn: &str, c: usize) -> Vec<(String, Vec<usize>)> {
    ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .map(|p| (format!("{bn}.{p}"), vec![c]))
        .collect()
}

/// A convolution with BatchNorm folded in: `weight` OIHW and `bias` `[o]`.
#[derive(Clone, Debug)]
struct Folded {
    weight: Tensor,
    bias: Tensor,
}

/// One block's folded convolutions.
#[derive(Clone, Debug)]
struct Block {
    cfg: BlockConfig,
    expand: Option<Folded>,
    depthwise: Folded,
    project: Folded,
}

/// The prefix of block `i`'s tensors.
fn block_prefix(i: usize) -> String {
    format!("_blocks.{i}")
}

/// The name timm gives the tensor this module calls `name` (timm numbers blocks by stage and
/// position, `blocks.S.J`, and names a block's layers `conv_pw`, `bn1`, `conv_dw`, `bn2`,
/// `conv_pwl`, `bn3`; the first stage's blocks have no expansion: `conv_dw`, `bn1`, `conv_pw`,
/// `bn2`). Names it does not know come back unchanged.
pub(crate) fn timm_name(name: &str) -> String {
    let top = [
        ("_conv_stem.", "conv_stem."),
        ("_bn0.", "bn1."),
        ("_conv_head.", "conv_head."),
        ("_bn1.", "bn2."),
        ("_fc.", "classifier."),
    ];
    for (ours, theirs) in top {
        if let Some(rest) = name.strip_prefix(ours) {
            return format!("{theirs}{rest}");
        }
    }
    let Some(rest) = name.strip_prefix("_blocks.") else {
        return name.to_string();
    };
    let Some((index, layer)) = rest.split_once('.') else {
        return name.to_string();
    };
    let Ok(index) = index.parse::<usize>() else {
        return name.to_string();
    };
    let mut first = 0;
    for (stage, &(repeats, ..)) in STAGES.iter().enumerate() {
        if index < first + repeats {
            let expands = block_configs()
                .get(index)
                .is_some_and(BlockConfig::has_expand);
            let renames: &[(&str, &str)] = if expands {
                &[
                    ("_expand_conv.", "conv_pw."),
                    ("_bn0.", "bn1."),
                    ("_depthwise_conv.", "conv_dw."),
                    ("_bn1.", "bn2."),
                    ("_project_conv.", "conv_pwl."),
                    ("_bn2.", "bn3."),
                ]
            } else {
                &[
                    ("_depthwise_conv.", "conv_dw."),
                    ("_bn1.", "bn1."),
                    ("_project_conv.", "conv_pw."),
                    ("_bn2.", "bn2."),
                ]
            };
            for (ours, theirs) in renames {
                if let Some(param) = layer.strip_prefix(ours) {
                    return format!("blocks.{stage}.{}.{theirs}{param}", index - first);
                }
            }
            return name.to_string();
        }
        first += repeats;
    }
    name.to_string()
}

/// EfficientNet-Lite0, ImageNet-pretrained, BatchNorm folded, frozen (constants).
///
/// Input: preprocessed RGB images `[N, 3, H, W]` (x/255, then (x − 0.5)/0.5; 224 × 224 is the
/// native size). Block `i` (0..=15) ends with the output of `_blocks.i`. On the CPU every
/// forward method runs the fused channels-last inference path (no gradients flow through it);
/// on other devices candle's ops.
#[derive(Clone, Debug)]
pub struct EfficientNetLite0 {
    stem: Folded,
    blocks: Vec<Block>,
    head: Folded,
    frozen: Option<FrozenSequence>,
    sha256: String,
    path: PathBuf,
    device: Device,
}

impl EfficientNetLite0 {
    /// Number of MBConv blocks (numbered 0..=15).
    pub const BLOCKS: usize = 16;
    /// Width of the pooled features.
    pub const FEATURES: usize = 1280;

    /// Every tensor the network needs, `(name, shape)`: each convolution's weight and its
    /// BatchNorm's weight, bias, running mean and running variance (not the classifier `_fc`).
    pub fn tensor_specs() -> Vec<(String, Vec<usize>)> {
        let mut specs = vec![("_conv_stem.weight".to_string(), vec![STEM, 3, 3, 3])];
        specs.extend(bn_specs("_bn0", STEM));
        for (i, cfg) in block_configs().iter().enumerate() {
            let p = block_prefix(i);
            if cfg.has_expand() {
                specs.push((
                    format!("{p}._expand_conv.weight"),
                    vec![cfg.expanded, cfg.cin, 1, 1],
                ));
                specs.extend(bn_specs(&format!("{p}._bn0"), cfg.expanded));
            }
            specs.push((
                format!("{p}._depthwise_conv.weight"),
                vec![cfg.expanded, 1, cfg.k, cfg.k],
            ));
            specs.extend(bn_specs(&format!("{p}._bn1"), cfg.expanded));
            specs.push((
                format!("{p}._project_conv.weight"),
                vec![cfg.cout, cfg.expanded, 1, 1],
            ));
            specs.extend(bn_specs(&format!("{p}._bn2"), cfg.cout));
        }
        specs.push((
            "_conv_head.weight".to_string(),
            vec![Self::FEATURES, 320, 1, 1],
        ));
        specs.extend(bn_specs("_bn1", Self::FEATURES));
        specs
    }

    /// Builds the network from named tensors (see [`Self::tensor_specs`]), checking each
    /// one's presence and shape; `origin` names where they came from in errors and `sha256` is
    /// the digest recorded for it.
    pub fn from_tensors(
        tensors: &BTreeMap<String, Tensor>,
        origin: &Path,
        sha256: impl Into<String>,
    ) -> Result<Self> {
        let specs = Self::tensor_specs();
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
        for (name, expected) in &specs {
            let found = tensors[name].dims();
            if found != expected.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    path: origin.to_path_buf(),
                    name: name.clone(),
                    expected: expected.clone(),
                    found: found.to_vec(),
                });
            }
        }
        let fold = |conv: &str, bn: &str| -> Result<Folded> {
            let t = |n: String| tensors[&n].to_dtype(DType::F32);
            let w = t(format!("{conv}.weight"))?;
            let gamma = t(format!("{bn}.weight"))?;
            let beta = t(format!("{bn}.bias"))?;
            let mean = t(format!("{bn}.running_mean"))?;
            let var = t(format!("{bn}.running_var"))?;
            let scale = (gamma / (var + BN_EPS)?.sqrt()?)?;
            let o = w.dim(0)?;
            let weight = w.broadcast_mul(&scale.reshape((o, 1, 1, 1))?)?;
            let bias = (beta - (mean * &scale)?)?;
            Ok(Folded { weight, bias })
        };
        let stem = fold("_conv_stem", "_bn0")?;
        let blocks = block_configs()
            .into_iter()
            .enumerate()
            .map(|(i, cfg)| {
                let p = block_prefix(i);
                Ok(Block {
                    cfg,
                    expand: if cfg.has_expand() {
                        Some(fold(&format!("{p}._expand_conv"), &format!("{p}._bn0"))?)
                    } else {
                        None
                    },
                    depthwise: fold(&format!("{p}._depthwise_conv"), &format!("{p}._bn1"))?,
                    project: fold(&format!("{p}._project_conv"), &format!("{p}._bn2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head = fold("_conv_head", "_bn1")?;
        let device = stem.weight.device().clone();
        let frozen = if device.is_cpu() {
            Some(build_frozen(&stem, &blocks, &head)?)
        } else {
            None
        };
        Ok(Self {
            stem,
            blocks,
            head,
            frozen,
            sha256: sha256.into(),
            path: origin.to_path_buf(),
            device,
        })
    }

    /// Loads the network from a safetensors file onto `device`, reading only the tensors it
    /// needs (other tensors, such as `_fc`, are ignored), and records the file's sha256. The
    /// file may use this module's tensor names or timm's (`timm/tf_efficientnet_lite0.in1k`,
    /// the hub's copy of the same weights: `conv_stem`, `bn1`, `blocks.S.J.conv_dw`, ...).
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let specs = Self::tensor_specs();
        let tensors = match safetensors_io::read_tensors(path, &specs, device) {
            Err(ModelError::MissingTensor { name, .. }) if name == specs[0].0 => {
                let timm: Vec<(String, Vec<usize>)> = specs
                    .iter()
                    .map(|(name, shape)| (timm_name(name), shape.clone()))
                    .collect();
                let found = safetensors_io::read_tensors(path, &timm, device)?;
                specs
                    .iter()
                    .zip(&timm)
                    .filter_map(|((ours, _), (theirs, _))| {
                        Some((ours.clone(), found.get(theirs)?.clone()))
                    })
                    .collect()
            }
            other => other?,
        };
        let sha256 = artifact::sha256_file(path)?;
        Self::from_tensors(&tensors, path, sha256)
    }

    /// The sha256 (lowercase hex) of the weights file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The weights file the network was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device the weights are on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Stem and blocks `0..=last` on preprocessed images `[N, 3, H, W]`.
    pub fn forward_to_block(&self, x: &Tensor, last: usize) -> candle_core::Result<Tensor> {
        check_input(x, 3, "EfficientNet-Lite0 stem")?;
        if last >= Self::BLOCKS {
            candle_core::bail!("EfficientNet-Lite0: block {last} out of range (blocks are 0..=15)");
        }
        match self.fast(x) {
            Some(f) => f.forward(x, 0..last + 2),
            None => {
                let h = self.stem_forward(x)?;
                self.blocks_forward(&h, 0, last)
            }
        }
    }

    /// Blocks `first..=last` on the output of block `first - 1` (of the stem when `first` is 0).
    pub fn forward_blocks(
        &self,
        x: &Tensor,
        first: usize,
        last: usize,
    ) -> candle_core::Result<Tensor> {
        if !(first <= last && last < Self::BLOCKS) {
            candle_core::bail!(
                "EfficientNet-Lite0: blocks {first}..={last} out of range (blocks are 0..=15, in order)"
            );
        }
        check_input(
            x,
            self.blocks[first].cfg.cin,
            &format!("EfficientNet-Lite0 block {first}"),
        )?;
        match self.fast(x) {
            Some(f) => f.forward(x, first + 1..last + 2),
            None => self.blocks_forward(x, first, last),
        }
    }

    /// Head convolution + BatchNorm + ReLU6 on block 15's output: `[N, 1280, h, w]`.
    pub fn forward_head(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, 320, "EfficientNet-Lite0 head")?;
        match self.fast(x) {
            Some(f) => f.forward(x, Self::BLOCKS + 1..Self::BLOCKS + 2),
            None => head_forward(&self.head, x),
        }
    }

    /// The whole frozen network to the head convolution's activated output (BatchNorm +
    /// ReLU6), before the global pool: `[N, 1280, h, w]` (`h`, `w` = H/32, W/32 rounded up).
    /// [`Self::pooled`] is its spatial mean; Grad-CAM explains this map.
    pub fn head_map(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, 3, "EfficientNet-Lite0 stem")?;
        match self.fast(x) {
            Some(f) => f.forward(x, 0..Self::BLOCKS + 2),
            None => {
                let h = self.stem_forward(x)?;
                let h = self.blocks_forward(&h, 0, Self::BLOCKS - 1)?;
                head_forward(&self.head, &h)
            }
        }
    }

    /// The whole frozen network to the global-average-pooled features `[N, 1280]` (the fast
    /// inference path on the CPU): the spatial mean of [`Self::head_map`].
    pub fn pooled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, 3, "EfficientNet-Lite0 stem")?;
        match self.fast(x) {
            Some(f) => f.forward_pooled(x, 0..Self::BLOCKS + 2),
            None => {
                let h = self.stem_forward(x)?;
                let h = self.blocks_forward(&h, 0, Self::BLOCKS - 1)?;
                head_forward(&self.head, &h)?.mean((2, 3))
            }
        }
    }

    /// Output shape `(C, h, w)` after block `last` for an input `(height, width)`; `None`
    /// when the input is empty or `last` out of range. ("SAME" padding: each stride `s`
    /// divides the size by `s`, rounding up.)
    pub fn block_output_shape(input: (usize, usize), last: usize) -> Option<(usize, usize, usize)> {
        if last >= Self::BLOCKS || input.0 == 0 || input.1 == 0 {
            return None;
        }
        let (mut h, mut w) = (input.0.div_ceil(2), input.1.div_ceil(2));
        let cfgs = block_configs();
        for cfg in &cfgs[..=last] {
            h = h.div_ceil(cfg.stride);
            w = w.div_ceil(cfg.stride);
        }
        Some((cfgs[last].cout, h, w))
    }

    /// The frozen channels-last path, when it applies to `x` (CPU, `f32`).
    fn fast(&self, x: &Tensor) -> Option<&FrozenSequence> {
        self.frozen
            .as_ref()
            .filter(|_| x.device().is_cpu() && x.dtype() == DType::F32)
    }

    fn stem_forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        kernels::conv2d_strided(
            x,
            &self.stem.weight,
            Some(&self.stem.bias),
            2,
            Padding::same(h, w, 3, 2),
            true,
        )
    }

    fn blocks_forward(&self, x: &Tensor, first: usize, last: usize) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for b in &self.blocks[first..=last] {
            h = block_forward(
                &b.cfg,
                b.expand.as_ref().map(|e| (&e.weight, &e.bias)),
                (&b.depthwise.weight, &b.depthwise.bias),
                (&b.project.weight, &b.project.bias),
                &h,
            )?;
        }
        Ok(h)
    }
}

/// Checks that `x` is `[N, channels, H, W]` with a non-empty map.
fn check_input(x: &Tensor, channels: usize, what: &str) -> candle_core::Result<()> {
    match *x.dims() {
        [_, c, h, w] if c == channels && h > 0 && w > 0 => Ok(()),
        [_, c, _, _] if c == channels => candle_core::bail!("{what}: empty input {:?}", x.dims()),
        _ => candle_core::bail!(
            "{what}: expected input [N, {channels}, H, W], got {:?}",
            x.dims()
        ),
    }
}

/// One MBConv block through the differentiable entry points.
fn block_forward(
    cfg: &BlockConfig,
    expand: Option<(&Tensor, &Tensor)>,
    depthwise: (&Tensor, &Tensor),
    project: (&Tensor, &Tensor),
    x: &Tensor,
) -> candle_core::Result<Tensor> {
    let h = match expand {
        Some((w, b)) => kernels::pointwise_conv2d(x, w, Some(b), None, true)?,
        None => x.clone(),
    };
    let (_, _, hh, ww) = h.dims4()?;
    let h = kernels::depthwise_conv2d(
        &h,
        depthwise.0,
        Some(depthwise.1),
        cfg.stride,
        Padding::same(hh, ww, cfg.k, cfg.stride),
        true,
    )?;
    let residual = cfg.residual().then_some(x);
    kernels::pointwise_conv2d(&h, project.0, Some(project.1), residual, false)
}

/// Head convolution + ReLU6 through the differentiable entry point.
fn head_forward(head: &Folded, x: &Tensor) -> candle_core::Result<Tensor> {
    kernels::pointwise_conv2d(x, &head.weight, Some(&head.bias), None, true)
}

/// The frozen channels-last layers: stem, 16 blocks, head.
fn build_frozen(stem: &Folded, blocks: &[Block], head: &Folded) -> Result<FrozenSequence> {
    use kernels::PadRule::Same;
    let mut layers = vec![FrozenLayer::Conv(FrozenConv::new(
        &stem.weight,
        &stem.bias,
        2,
        Same,
        true,
    )?)];
    for b in blocks {
        let expand = match &b.expand {
            Some(e) => Some(FrozenPointwise::new(&e.weight, &e.bias, true)?),
            None => None,
        };
        let dw = FrozenDepthwise::new(
            &b.depthwise.weight,
            &b.depthwise.bias,
            b.cfg.stride,
            Same,
            true,
        )?;
        let project = FrozenPointwise::new(&b.project.weight, &b.project.bias, false)?;
        layers.push(FrozenLayer::MbConv(FrozenMbConv::new(
            expand,
            dw,
            project,
            b.cfg.residual(),
        )?));
    }
    layers.push(FrozenLayer::Pointwise(FrozenPointwise::new(
        &head.weight,
        &head.bias,
        true,
    )?));
    Ok(FrozenSequence::new(layers)?)
}

/// The trainable tail for fine-tuning: block 15 and the head convolution (BatchNorm folded
/// into each convolution's weight and bias), as variables of a [`VarMap`] initialised from the
/// pretrained network, differentiable through the `kernels` crate's ops.
///
/// Variable names are the original tensor names of the convolutions
/// (`_blocks.15._expand_conv.weight` / `.bias`, `_blocks.15._depthwise_conv.*`,
/// `_blocks.15._project_conv.*`, `_conv_head.*`); values already in the map are kept.
#[derive(Clone, Debug)]
pub struct Lite0Tail {
    cfg: BlockConfig,
    expand: Folded,
    depthwise: Folded,
    project: Folded,
    head: Folded,
}

impl Lite0Tail {
    /// The first block of the tail (its input is block 14's output).
    pub const FIRST_BLOCK: usize = 15;

    /// The tail's variables in `varmap` on `device`, initialised from `base` where absent.
    pub fn new(varmap: &VarMap, base: &EfficientNetLite0, device: &Device) -> Result<Self> {
        let params = Params::new(varmap, device);
        let block = &base.blocks[Self::FIRST_BLOCK];
        let var = |name: &str, f: &Folded| -> Result<Folded> {
            Ok(Folded {
                weight: params.get_or_insert(&format!("{name}.weight"), &f.weight)?,
                bias: params.get_or_insert(&format!("{name}.bias"), &f.bias)?,
            })
        };
        let p = block_prefix(Self::FIRST_BLOCK);
        let expand = block.expand.as_ref().ok_or_else(|| {
            ModelError::InvalidConfig("EfficientNet-Lite0 block 15 has no expansion".into())
        })?;
        Ok(Self {
            cfg: block.cfg,
            expand: var(&format!("{p}._expand_conv"), expand)?,
            depthwise: var(&format!("{p}._depthwise_conv"), &block.depthwise)?,
            project: var(&format!("{p}._project_conv"), &block.project)?,
            head: var("_conv_head", &base.head)?,
        })
    }

    /// The names of the tail's variables.
    pub fn param_names() -> Vec<String> {
        let p = block_prefix(Self::FIRST_BLOCK);
        [
            format!("{p}._expand_conv"),
            format!("{p}._depthwise_conv"),
            format!("{p}._project_conv"),
            "_conv_head".to_string(),
        ]
        .into_iter()
        .flat_map(|c| [format!("{c}.weight"), format!("{c}.bias")])
        .collect()
    }

    /// Block-14 outputs `[N, 192, h, w]` → pooled features `[N, 1280]` (the spatial mean of
    /// [`Self::forward_map`]).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_map(x)?.mean((2, 3))
    }

    /// Block-14 outputs `[N, 192, h, w]` → the head convolution's activated output before the
    /// global pool, `[N, 1280, h, w]` (the map Grad-CAM explains).
    pub fn forward_map(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        check_input(x, self.cfg.cin, "EfficientNet-Lite0 tail (block 15)")?;
        let h = block_forward(
            &self.cfg,
            Some((&self.expand.weight, &self.expand.bias)),
            (&self.depthwise.weight, &self.depthwise.bias),
            (&self.project.weight, &self.project.bias),
            x,
        )?;
        head_forward(&self.head, &h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's names of the same tensors (read off `timm.create_model("tf_efficientnet_lite0")`):
    /// the mapping is one to one and lands on them.
    #[test]
    fn timm_names_match_timms_state_dict() {
        for (ours, theirs) in [
            ("_conv_stem.weight", "conv_stem.weight"),
            ("_bn0.running_var", "bn1.running_var"),
            (
                "_blocks.0._depthwise_conv.weight",
                "blocks.0.0.conv_dw.weight",
            ),
            ("_blocks.0._bn1.bias", "blocks.0.0.bn1.bias"),
            (
                "_blocks.0._project_conv.weight",
                "blocks.0.0.conv_pw.weight",
            ),
            ("_blocks.0._bn2.weight", "blocks.0.0.bn2.weight"),
            ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
            ("_blocks.1._bn0.weight", "blocks.1.0.bn1.weight"),
            (
                "_blocks.2._depthwise_conv.weight",
                "blocks.1.1.conv_dw.weight",
            ),
            (
                "_blocks.14._bn1.running_mean",
                "blocks.5.3.bn2.running_mean",
            ),
            (
                "_blocks.15._project_conv.weight",
                "blocks.6.0.conv_pwl.weight",
            ),
            ("_blocks.15._bn2.running_var", "blocks.6.0.bn3.running_var"),
            ("_conv_head.weight", "conv_head.weight"),
            ("_bn1.bias", "bn2.bias"),
            ("_fc.weight", "classifier.weight"),
        ] {
            assert_eq!(timm_name(ours), theirs, "{ours}");
        }
        let specs = EfficientNetLite0::tensor_specs();
        let mapped: std::collections::BTreeSet<String> =
            specs.iter().map(|(n, _)| timm_name(n)).collect();
        // timm's state dict holds 247 tensors besides its BatchNorm counters: these and the
        // classifier's two.
        assert_eq!((specs.len(), mapped.len()), (245, 245));
        assert!(mapped.iter().all(|n| !n.starts_with('_')));
    }

    /// The differentiable path (what other devices run) agrees with the frozen channels-last
    /// path on the reference photos.
    #[test]
    fn differentiable_path_matches_the_frozen_path() {
        let Some(shared) = testkit::shared_dir("differentiable_path_matches_the_frozen_path")
        else {
            return;
        };
        let path = shared.join("models/efficientnet_lite0_imagenet.safetensors");
        let net = EfficientNetLite0::load(&path, &Device::Cpu).unwrap();
        let refs = candle_core::safetensors::load(
            shared.join("reference/efficientnet_lite0_features.safetensors"),
            &Device::Cpu,
        )
        .unwrap();
        let x = refs["input"].narrow(0, 0, 2).unwrap();
        let slow = net.stem_forward(&x).unwrap();
        let slow = net
            .blocks_forward(&slow, 0, EfficientNetLite0::BLOCKS - 1)
            .unwrap();
        let slow = head_forward(&net.head, &slow)
            .unwrap()
            .mean((2, 3))
            .unwrap();
        let fast = net.pooled(&x).unwrap();
        let d = testkit::max_abs_diff(&slow, &fast);
        assert!(d <= 1e-3, "pooled features differ by {d}");
    }
}
