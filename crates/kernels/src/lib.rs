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
//! - `winograd`: Winograd F(4×4, 3×3) for 3 × 3 layers (AVX-512), forward and input gradient;
//! - `winograd3`: Winograd F(3×3, 3×3) transforms, and the forward (and input gradient) for
//!   small maps that 3 × 3 tiles cover better, such as VGG16's block 5 (9 × 9 at 150 × 150);
//! - `wgrad`: the 3 × 3 weight gradient as register-blocked dot products along output rows;
//! - `wgrad_gemm`: the 3 × 3 weight gradient as one packed GEMM with the im2col matrix (for
//!   short output rows and few channels);
//! - `wgrad_winograd`: the 3 × 3 weight gradient by Winograd F(3×3, 3×3), 25 GEMMs over
//!   transformed tiles (from 64 × 64 channels up);
//! - `pool`: max-pooling forward and backward;
//! - [`dispatch`]: picks an algorithm by shape and CPU features ([`Isa`]);
//! - [`peak`]: the machine's measured FMA peak, for reporting efficiency.
//!
//! `ops` wraps them as candle custom ops (`CustomOp1/2/3` with `cpu_fwd` and `bwd`); the entry
//! points below apply those ops and fall back to candle's own ops elsewhere.

mod direct;
pub mod dispatch;
mod error;
mod gemm;
mod isa;
mod ops;
pub mod peak;
mod pool;
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
