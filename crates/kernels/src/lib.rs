//! Convolution and pooling entry points used by every model in the workspace.
//!
//! On the CPU these dispatch to the fastest implementation for the shape; on other devices they
//! use candle's own ops. All of them are differentiable through candle's autograd.

use candle_core::{Result, Tensor};

/// 2-D convolution, NCHW input `x` [N, C, H, W], OIHW weight `w` [O, C, KH, KW], stride 1,
/// symmetric zero `padding`, optional bias `b` [O].
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    let y = x.conv2d(w, padding, 1, 1, 1)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?),
        None => Ok(y),
    }
}

/// [`conv2d`] followed by ReLU.
pub fn conv2d_relu(x: &Tensor, w: &Tensor, b: Option<&Tensor>, padding: usize) -> Result<Tensor> {
    conv2d(x, w, b, padding)?.relu()
}

/// Max-pooling with a square `k`×`k` window and stride `k` (floor mode, as Keras and torchvision).
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    x.max_pool2d(k)
}
