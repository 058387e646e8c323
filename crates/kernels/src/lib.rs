//! Convolution and pooling entry points used by every model in the workspace.
//!
//! On the CPU, for `f32` data, these run the crate's own kernels as candle custom ops, forward and
//! backward; on other devices, for other dtypes and for shapes the kernels do not cover they use
//! candle's own ops. All of them are differentiable through candle's autograd.
//!
//! The kernels, one module per algorithm:
//! - `gemm`: packed GEMM micro-kernels (AVX-512, AVX2 + FMA, portable);
//! - `direct`: implicit GEMM over padded-width columns, any stride-1 kernel (forward, and the
//!   input gradient as the convolution with the rotated kernel);
//! - `winograd`: Winograd F(4×4, 3×3) for 3 × 3 layers (AVX-512 and AVX2 + FMA), forward and
//!   input gradient;
//! - `winograd3`: Winograd F(3×3, 3×3) transforms, and the forward (and input gradient) for
//!   small maps that 3 × 3 tiles cover better, such as VGG16's block 5 (9 × 9 at 150 × 150);
//! - `wgrad`: the 3 × 3 weight gradient as register-blocked dot products along output rows;
//! - `wgrad_gemm`: the 3 × 3 weight gradient as one packed GEMM with the im2col matrix (for
//!   short output rows and few channels);
//! - `wgrad_winograd`: the 3 × 3 weight gradient by Winograd F(3×3, 3×3), 25 GEMMs over
//!   transformed tiles (from 64 × 64 channels up);
//! - `pool`: max-pooling forward and backward;
//! - `depthwise`: depthwise convolution, channels-last rows (inference) and NCHW planes
//!   (forward and backward);
//! - `rowgemm`: channels-last 1 × 1 convolution as a GEMM with bias, residual and ReLU6 fused;
//! - `matmul`: a strided GEMM on the `gemm` micro-kernels (1 × 1 and strided convolutions,
//!   forward and backward);
//! - [`frozen`]: the frozen channels-last inference path for MobileNet/EfficientNet-style
//!   networks (strided stem, fused inverted-residual blocks, 1 × 1 head, pooling);
//! - [`dispatch`]: picks an algorithm by shape and CPU features ([`Isa`]);
//! - [`peak`]: the machine's measured FMA peak, for reporting efficiency.
//!
//! `ops` and `lite_ops` wrap them as candle custom ops (`CustomOp1/2/3` with `cpu_fwd` and
//! `bwd`); the entry points below apply those ops and fall back to candle's own ops elsewhere.

mod depthwise;
mod direct;
pub mod dispatch;
mod error;
pub mod frozen;
mod gemm;
mod isa;
mod lite_ops;
mod matmul;
mod ops;
mod padding;
pub mod peak;
mod pool;
mod rowgemm;
mod scratch;
mod shape;
mod wgrad;
mod wgrad_gemm;
mod wgrad_winograd;
mod winograd;
mod winograd3;

pub use dispatch::{Algorithm, WeightGradAlgorithm};
pub use error::KernelError;
pub use isa::Isa;
pub use padding::{PadRule, Padding};
pub use shape::ConvShape;

use candle_core::{DType, Result, Tensor};

/// Whether the crate's kernels handle this convolution (CPU, `f32`, 3 × 3 kernel, padding ≤ 2,
/// matching channels and bias, non-empty operands and output).
fn fast_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> bool {
    let (Ok((n, c, h, wd)), Ok((o, c2, kh, kw))) = (x.dims4(), w.dims4()) else {
        return false;
    };
    n > 0
        && c > 0
        && o > 0
        && x.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && w.device().is_cpu()
        && c == c2
        && kh == 3
        && kw == 3
        && padding < 3
        && h + 2 * padding >= kh
        && wd + 2 * padding >= kw
        && b.is_none_or(|b| b.dtype() == DType::F32 && b.device().is_cpu() && b.dims() == [o])
}

fn conv2d_impl(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    if fast_conv(x, w, b, padding) {
        let op = ops::Conv2d { pad: padding, relu };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        };
    }
    let y = x.conv2d(w, padding, 1, 1, 1)?;
    let y = match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
        None => y,
    };
    if relu { y.relu() } else { Ok(y) }
}

/// 2-D convolution, NCHW input `x` [N, C, H, W], OIHW weight `w` [O, C, KH, KW], stride 1,
/// symmetric zero `padding`, optional bias `b` [O].
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    conv2d_impl(x, w, b, padding, false)
}

/// [`conv2d`] followed by ReLU.
pub fn conv2d_relu(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    conv2d_impl(x, w, b, padding, true)
}

/// Max-pooling with a square `k`×`k` window and stride `k` (floor mode, as Keras and torchvision).
///
/// On the CPU the backward pass sends each output gradient to the first maximum of its window
/// (row-major), as PyTorch and TensorFlow do.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    match x.dims4() {
        Ok((_, _, h, w))
            if x.device().is_cpu() && x.dtype() == DType::F32 && k > 0 && h >= k && w >= k =>
        {
            x.contiguous()?.apply_op1(ops::MaxPool2d { k })
        }
        _ => x.max_pool2d(k),
    }
}

/// Whether every operand is an `f32` tensor on the CPU (the crate's kernels apply).
fn cpu_f32(ts: &[Option<&Tensor>]) -> bool {
    ts.iter()
        .flatten()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// ReLU6 as candle ops (`min(max(x, 0), 6)`).
fn relu6_fallback(x: &Tensor) -> Result<Tensor> {
    x.clamp(0f32, 6f32)
}

/// `y + b` with `b` `[c]` broadcast over `[n, c, h, w]`.
fn add_channel_bias(y: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y.clone()),
    }
}

/// Depthwise convolution: `x` [N, C, H, W], one `k`×`k` filter per channel `w` [C, 1, k, k],
/// stride `stride`, zero padding `pad` (possibly asymmetric), optional bias `b` [C], and ReLU6
/// on the output when `relu6`.
///
/// Off the CPU (or for other dtypes) it is a sum over the `k²` taps of shifted, strided slices
/// of the padded input times per-channel weights, built from candle ops (never a grouped
/// convolution, which would launch one convolution per channel).
pub fn depthwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: Padding,
    relu6: bool,
) -> Result<Tensor> {
    let fits = match (x.dims4(), w.dims4()) {
        (Ok((n, c, h, wd)), Ok((c2, one, k, k2))) => {
            n > 0
                && c > 0
                && c == c2
                && one == 1
                && k == k2
                && pad.output_size(h, wd, k, stride).is_some()
                && b.is_none_or(|b| b.dims() == [c])
        }
        _ => false,
    };
    if fits && cpu_f32(&[Some(x), Some(w), b]) {
        let op = lite_ops::Depthwise { stride, pad, relu6 };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        };
    }
    depthwise_fallback(x, w, b, stride, pad, relu6)
}

/// [`depthwise_conv2d`] from candle ops: the padded input's `k²` shifted, strided slices times
/// the per-channel weights, summed (differentiable by candle's autograd on every device).
fn depthwise_fallback(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: Padding,
    relu6: bool,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let (c2, one, k, k2) = w.dims4()?;
    if c2 != c || one != 1 || k != k2 {
        candle_core::bail!(
            "depthwise_conv2d: weight {:?} does not fit input {:?} (expected [{c}, 1, k, k])",
            w.dims(),
            x.dims()
        );
    }
    let Some((ho, wo)) = pad.output_size(h, wd, k, stride) else {
        candle_core::bail!(
            "depthwise_conv2d: a {k}×{k} window with stride {stride} does not fit the padded {h}×{wd} input"
        );
    };
    // Pad so that every tap's slice of s·ho rows (s·wo columns) exists, then subsample.
    let s = stride;
    let hp = (k - 1 + s * ho).max(h + pad.top);
    let wp = (k - 1 + s * wo).max(wd + pad.left);
    let xp = x
        .pad_with_zeros(2, pad.top, hp - h - pad.top)?
        .pad_with_zeros(3, pad.left, wp - wd - pad.left)?;
    let wf = w.reshape((c, k * k))?;
    let mut acc: Option<Tensor> = None;
    for i in 0..k {
        for j in 0..k {
            let slice = xp.narrow(2, i, s * ho)?.narrow(3, j, s * wo)?;
            let slice = if s == 1 {
                slice
            } else {
                slice
                    .reshape((n, c, ho, s, wo, s))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((n, c, ho, wo))?
            };
            let tap = wf.narrow(1, i * k + j, 1)?.reshape((1, c, 1, 1))?;
            let term = slice.broadcast_mul(&tap)?;
            acc = Some(match acc {
                Some(a) => (a + term)?,
                None => term,
            });
        }
    }
    let y = match acc {
        Some(y) => add_channel_bias(&y, b)?,
        None => candle_core::bail!("depthwise_conv2d: empty kernel"),
    };
    if relu6 { relu6_fallback(&y) } else { Ok(y) }
}

/// 1 × 1 convolution as a GEMM: `x` [N, C, H, W], `w` [O, C, 1, 1] (or [O, C]), optional bias
/// `b` [O], optional `residual` [N, O, H, W] added before the optional ReLU6:
/// `y = act(w · x + b + residual)`.
pub fn pointwise_conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    residual: Option<&Tensor>,
    relu6: bool,
) -> Result<Tensor> {
    let (n, c, h, wd) = x.dims4()?;
    let o = match *w.dims() {
        [o, c2, 1, 1] | [o, c2] if c2 == c => o,
        _ => candle_core::bail!(
            "pointwise_conv2d: weight {:?} does not fit input {:?} (expected [o, {c}, 1, 1])",
            w.dims(),
            x.dims()
        ),
    };
    let fits = n > 0
        && c > 0
        && o > 0
        && h * wd > 0
        && b.is_none_or(|b| b.dims() == [o])
        && residual.is_none_or(|r| r.dims() == [n, o, h, wd]);
    if fits && cpu_f32(&[Some(x), Some(w), b, residual]) {
        let w2 = w.reshape((o, c))?;
        let w2 = match b {
            Some(b) => Tensor::cat(&[&w2, &b.reshape((o, 1))?], 1)?,
            None => w2,
        };
        let op = lite_ops::Pointwise {
            relu6,
            bias_col: b.is_some(),
        };
        let (x, w2) = (x.contiguous()?, w2.contiguous()?);
        return match residual {
            Some(r) => x.apply_op3(&w2, &r.contiguous()?, op),
            None => x.apply_op2(&w2, op),
        };
    }
    let y = w
        .reshape((o, c))?
        .broadcast_matmul(&x.reshape((n, c, h * wd))?)?
        .reshape((n, o, h, wd))?;
    let y = add_channel_bias(&y, b)?;
    let y = match residual {
        Some(r) => (y + r)?,
        None => y,
    };
    if relu6 { relu6_fallback(&y) } else { Ok(y) }
}

/// A `k`×`k` convolution with stride `stride` and zero padding `pad` (possibly asymmetric), as
/// im2col + GEMM: `x` [N, C, H, W], `w` [O, C, k, k], optional bias `b` [O], ReLU6 on the output
/// when `relu6`. Off the CPU: the padded input through candle's `conv2d`.
pub fn conv2d_strided(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: Padding,
    relu6: bool,
) -> Result<Tensor> {
    let fits = match (x.dims4(), w.dims4()) {
        (Ok((n, c, h, wd)), Ok((o, c2, k, k2))) => {
            n > 0
                && c > 0
                && o > 0
                && c == c2
                && k == k2
                && pad.output_size(h, wd, k, stride).is_some()
                && b.is_none_or(|b| b.dims() == [o])
        }
        _ => false,
    };
    if fits && cpu_f32(&[Some(x), Some(w), b]) {
        let op = lite_ops::StridedConv { stride, pad, relu6 };
        let (x, w) = (x.contiguous()?, w.contiguous()?);
        return match b {
            Some(b) => x.apply_op3(&w, &b.contiguous()?, op),
            None => x.apply_op2(&w, op),
        };
    }
    let xp = x
        .pad_with_zeros(2, pad.top, pad.bottom)?
        .pad_with_zeros(3, pad.left, pad.right)?;
    // Crop what no window reaches: candle's conv2d backward needs the windows to cover the
    // padded input exactly when the stride is above 1.
    let (_, _, hp, wp) = xp.dims4()?;
    let (k, s) = (w.dim(2)?, stride.max(1));
    let xp = match (hp.checked_sub(k), wp.checked_sub(k)) {
        (Some(dh), Some(dw)) => xp.narrow(2, 0, hp - dh % s)?.narrow(3, 0, wp - dw % s)?,
        _ => xp,
    };
    let y = add_channel_bias(&xp.conv2d(w, 0, s, 1, 1)?, b)?;
    if relu6 { relu6_fallback(&y) } else { Ok(y) }
}

/// ReLU6, `min(max(x, 0), 6)`, differentiable (the gradient passes where `0 < x < 6`).
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if cpu_f32(&[Some(x)]) && x.elem_count() > 0 {
        x.contiguous()?.apply_op1(lite_ops::Relu6)
    } else {
        relu6_fallback(x)
    }
}
