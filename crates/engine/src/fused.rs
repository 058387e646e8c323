//! Fused, in-place optimizer updates for contiguous `f32` tensors on the CPU.
//!
//! Written with candle's tensor ops, one RMSprop step over the top model's 2.1 M weights is a
//! dozen passes that each allocate a fresh 8 MiB tensor, which made an epoch over cached
//! features take seconds. Here each state slot and the weight are updated in place, in one
//! pass each, as candle in-place custom ops. Every expression repeats, operation for
//! operation and in `f32`, what the tensor-op path in [`crate::optim`] computes (candle's
//! `affine(mul, add)` is `x·mul + add` with both constants rounded to `f32`), so both paths give
//! bit-identical weights; the tensor-op path remains for other devices and dtypes.

use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, bail};
use rayon::prelude::*;

/// Elements per parallel chunk (small tensors are updated on the calling thread).
const CHUNK: usize = 1 << 15;

/// Whether every tensor is a contiguous `f32` tensor on the CPU with the same shape.
pub(crate) fn applies(tensors: &[&Tensor]) -> bool {
    let first = tensors[0];
    tensors.iter().all(|t| {
        t.device().is_cpu()
            && t.dtype() == candle_core::DType::F32
            && t.is_contiguous()
            && t.dims() == first.dims()
    })
}

/// `affine`'s constant, rounded as candle rounds it.
fn c(v: f64) -> f32 {
    v as f32
}

/// The `f32` slice a contiguous layout addresses.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, name: &str) -> Result<&'a [f32]> {
    let (Some((a, b)), CpuStorage::F32(v)) = (l.contiguous_offsets(), s) else {
        bail!("{name}: expects contiguous f32 operands")
    };
    Ok(&v[a..b])
}

/// The mutable `f32` slice a contiguous layout addresses.
fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, name: &str) -> Result<&'a mut [f32]> {
    let (Some((a, b)), CpuStorage::F32(v)) = (l.contiguous_offsets(), s) else {
        bail!("{name}: expects contiguous f32 operands")
    };
    Ok(&mut v[a..b])
}

/// Applies `f(dst, a)` element-wise, in parallel chunks for large tensors.
fn zip2(dst: &mut [f32], a: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Result<()> {
    if dst.len() != a.len() {
        bail!("fused update: operand lengths differ")
    }
    let run = |d: &mut [f32], a: &[f32]| {
        for (d, &a) in d.iter_mut().zip(a) {
            *d = f(*d, a);
        }
    };
    if dst.len() <= CHUNK {
        run(dst, a);
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .for_each(|(d, a)| run(d, a));
    }
    Ok(())
}

/// Applies `f(dst, a, b)` element-wise, in parallel chunks for large tensors.
fn zip3(
    dst: &mut [f32],
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32, f32) -> f32 + Sync,
) -> Result<()> {
    if dst.len() != a.len() || dst.len() != b.len() {
        bail!("fused update: operand lengths differ")
    }
    let run = |d: &mut [f32], a: &[f32], b: &[f32]| {
        for ((d, &a), &b) in d.iter_mut().zip(a).zip(b) {
            *d = f(*d, a, b);
        }
    };
    if dst.len() <= CHUNK {
        run(dst, a, b);
    } else {
        dst.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((d, a), b)| run(d, a, b));
    }
    Ok(())
}

/// An update of one tensor from one other: `dst = f(dst, a)`.
pub(crate) enum Update2 {
    /// Plain SGD on the weight: `w - (g·lr + 0)`.
    Sgd { lr: f64 },
    /// SGD momentum slot: `(m·momentum + 0) - (g·lr + 0)`.
    SgdMomentum { lr: f64, momentum: f64 },
    /// The weight plus the momentum slot: `w + m`.
    Add,
    /// The weight minus the RMSprop momentum slot: `w - m`.
    Sub,
    /// RMSprop velocity slot: `(v·rho + 0) + ((g·g)·(1 - rho) + 0)`.
    RmspropVelocity { rho: f64 },
    /// Adam first moment: `m + ((g - m)·(1 - beta_1) + 0)`.
    AdamMomentum { beta_1: f64 },
    /// Adam second moment: `v + ((g·g - v)·(1 - beta_2) + 0)`.
    AdamVelocity { beta_2: f64 },
}

impl InplaceOp2 for Update2 {
    fn name(&self) -> &'static str {
        "fused-optimizer-update2"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let name = self.name();
        let dst = slice_mut(s1, l1, name)?;
        let a = slice(s2, l2, name)?;
        match *self {
            Update2::Sgd { lr } => {
                let lr = c(lr);
                zip2(dst, a, |w, g| w - (g * lr + 0.0))
            }
            Update2::SgdMomentum { lr, momentum } => {
                let (lr, mom) = (c(lr), c(momentum));
                zip2(dst, a, |m, g| (m * mom + 0.0) - (g * lr + 0.0))
            }
            Update2::Add => zip2(dst, a, |w, m| w + m),
            Update2::Sub => zip2(dst, a, |w, m| w - m),
            Update2::RmspropVelocity { rho } => {
                let (rho, one_minus) = (c(rho), c(1.0 - rho));
                zip2(dst, a, |v, g| (v * rho + 0.0) + ((g * g) * one_minus + 0.0))
            }
            Update2::AdamMomentum { beta_1 } => {
                let k = c(1.0 - beta_1);
                zip2(dst, a, |m, g| m + ((g - m) * k + 0.0))
            }
            Update2::AdamVelocity { beta_2 } => {
                let k = c(1.0 - beta_2);
                zip2(dst, a, |v, g| v + ((g * g - v) * k + 0.0))
            }
        }
    }
}

/// An update of one tensor from two others: `dst = f(dst, a, b)`.
pub(crate) enum Update3 {
    /// Nesterov SGD on the weight from the new momentum `m` and the gradient `g`:
    /// `w + ((m·momentum + 0) - (g·lr + 0))`.
    Nesterov { lr: f64, momentum: f64 },
    /// RMSprop without momentum on the weight from `g` and the new velocity `v`:
    /// `w - (g·lr + 0) / sqrt(v·1 + epsilon)`.
    Rmsprop { lr: f64, epsilon: f64 },
    /// RMSprop momentum slot from `g` and the new velocity `v`:
    /// `(m·momentum + 0) + (g·lr + 0) / sqrt(v·1 + epsilon)`.
    RmspropMomentum {
        lr: f64,
        momentum: f64,
        epsilon: f64,
    },
    /// Adam on the weight from the new moments `m` and `v`:
    /// `w - (m·alpha + 0) / (sqrt(v)·1 + epsilon)`.
    Adam { alpha: f64, epsilon: f64 },
}

impl InplaceOp3 for Update3 {
    fn name(&self) -> &'static str {
        "fused-optimizer-update3"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let name = self.name();
        let dst = slice_mut(s1, l1, name)?;
        let (a, b) = (slice(s2, l2, name)?, slice(s3, l3, name)?);
        match *self {
            Update3::Nesterov { lr, momentum } => {
                let (lr, mom) = (c(lr), c(momentum));
                zip3(dst, a, b, |w, m, g| w + ((m * mom + 0.0) - (g * lr + 0.0)))
            }
            Update3::Rmsprop { lr, epsilon } => {
                let (lr, eps) = (c(lr), c(epsilon));
                zip3(dst, a, b, |w, g, v| {
                    w - (g * lr + 0.0) / (v * 1.0 + eps).sqrt()
                })
            }
            Update3::RmspropMomentum {
                lr,
                momentum,
                epsilon,
            } => {
                let (lr, mom, eps) = (c(lr), c(momentum), c(epsilon));
                zip3(dst, a, b, |m, g, v| {
                    (m * mom + 0.0) + (g * lr + 0.0) / (v * 1.0 + eps).sqrt()
                })
            }
            Update3::Adam { alpha, epsilon } => {
                let (alpha, eps) = (c(alpha), c(epsilon));
                zip3(dst, a, b, |w, m, v| {
                    w - (m * alpha + 0.0) / (v.sqrt() * 1.0 + eps)
                })
            }
        }
    }
}
