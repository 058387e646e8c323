//! The candle custom ops: convolution (optionally with bias and fused ReLU) and max-pooling,
//! with their backward passes.
//!
//! The ops only implement `cpu_fwd`; the entry points in the crate root route other devices to
//! candle's own ops before an op is ever applied.

use crate::dispatch;
use crate::error::KernelError;
use crate::pool;
use crate::shape::ConvShape;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// The contiguous f32 data of an operand.
fn data<'a>(
    op: &'static str,
    operand: &'static str,
    s: &'a CpuStorage,
    l: &Layout,
) -> Result<&'a [f32]> {
    let all = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => {
            return Err(KernelError::DType {
                op,
                operand,
                got: format!("{:?}", other.dtype()),
            }
            .into());
        }
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&all[a..b]),
        None => Err(KernelError::NotContiguous { op, operand }.into()),
    }
}

/// The dimensions of a rank-4 operand.
fn dims4(op: &'static str, operand: &'static str, l: &Layout) -> Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(KernelError::Shape {
            op,
            operand,
            got: l.dims().to_vec(),
            expected: "rank 4".into(),
        }
        .into()),
    }
}

/// The geometry of `x` ([n, c, h, w]) convolved with `w` ([o, c, kh, kw]) and `pad`.
fn conv_shape(op: &'static str, xl: &Layout, wl: &Layout, pad: usize) -> Result<ConvShape> {
    let [n, c, h, w] = dims4(op, "x", xl)?;
    let [o, c2, kh, kw] = dims4(op, "weight", wl)?;
    let s = ConvShape {
        n,
        c,
        h,
        w,
        o,
        kh,
        kw,
        pad,
    };
    if c2 != c || !s.is_valid() {
        return Err(KernelError::Shape {
            op,
            operand: "weight",
            got: wl.dims().to_vec(),
            expected: format!("[o, {c}, kh, kw] with kh, kw ≤ {}", h.min(w) + 2 * pad),
        }
        .into());
    }
    Ok(s)
}

/// A stride-1 convolution with symmetric zero padding, optionally followed by ReLU. Applied as a
/// binary op `(x, weight)` or a ternary op `(x, weight, bias)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Conv2d {
    pub(crate) pad: usize,
    pub(crate) relu: bool,
}

impl Conv2d {
    const NAME: &'static str = "kernels-conv2d";

    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let s = conv_shape(Self::NAME, x.1, w.1, self.pad)?;
        let xd = data(Self::NAME, "x", x.0, x.1)?;
        let wd = data(Self::NAME, "weight", w.0, w.1)?;
        let bd = match b {
            Some((bs, bl)) => {
                if bl.dims() != [s.o] {
                    return Err(KernelError::Shape {
                        op: Self::NAME,
                        operand: "bias",
                        got: bl.dims().to_vec(),
                        expected: format!("[{}]", s.o),
                    }
                    .into());
                }
                Some(data(Self::NAME, "bias", bs, bl)?)
            }
            None => None,
        };
        let y = dispatch::conv_forward(&s, xd, wd, bd, self.relu);
        Ok((CpuStorage::F32(y), Shape::from((s.n, s.o, s.ho(), s.wo()))))
    }

    /// Gradients of `x`, `weight` and `bias` (each only when that operand is tracked).
    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let wgrad = Conv2dWeightGrad {
            pad: self.pad,
            kh: w.dim(2)?,
        };
        let x = x.contiguous()?;
        if self.relu && !x.track_op() {
            // Only the weight and bias gradients: both apply the ReLU mask on the fly.
            let res = res.contiguous()?;
            let gw = if w.track_op() {
                Some(grad.apply_op3_no_bwd(&x, &res, &wgrad)?)
            } else {
                None
            };
            let gb = match b {
                Some(b) if b.track_op() => Some(grad.apply_op2_no_bwd(&res, &BiasGrad)?),
                _ => None,
            };
            return Ok((None, gw, gb));
        }
        // Output gradient through the fused ReLU.
        let g = if self.relu {
            grad.apply_op2_no_bwd(&res.contiguous()?, &ReluGrad)?
        } else {
            grad
        };
        let gx = if x.track_op() {
            Some(g.apply_op2_no_bwd(&w.contiguous()?, &Conv2dInputGrad { pad: self.pad })?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(g.apply_op2_no_bwd(&x, &wgrad)?)
        } else {
            None
        };
        let gb = match b {
            Some(b) if b.track_op() => Some(g.apply_op1_no_bwd(&BiasGrad)?),
            _ => None,
        };
        Ok((gx, gw, gb))
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw, _) = self.grads(x, w, None, res, grad)?;
        Ok((gx, gw))
    }
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, Some(b), res, grad)
    }
}

/// `(grad, res) ↦ grad · [res > 0]`: the gradient through a ReLU given its output.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "kernels-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = data(self.name(), "grad", s1, l1)?;
        let r = data(self.name(), "res", s2, l2)?;
        if l1.dims() != l2.dims() {
            return Err(KernelError::Shape {
                op: self.name(),
                operand: "res",
                got: l2.dims().to_vec(),
                expected: format!("{:?}", l1.dims()),
            }
            .into());
        }
        let mut out = vec![0.0f32; g.len()];
        out.par_chunks_mut(1 << 14)
            .zip(g.par_chunks(1 << 14).zip(r.par_chunks(1 << 14)))
            .for_each(|(o, (g, r))| {
                for ((o, &g), &r) in o.iter_mut().zip(g).zip(r) {
                    *o = if r > 0.0 { g } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `(gy, weight) ↦ gx`: input gradient of [`Conv2d`].
struct Conv2dInputGrad {
    pad: usize,
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "kernels-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, o, ho, wo] = dims4(self.name(), "grad", l1)?;
        let [o2, c, kh, kw] = dims4(self.name(), "weight", l2)?;
        // The forward input size: ho = h + 2·pad - kh + 1.
        let h = (ho + kh - 1).checked_sub(2 * self.pad);
        let w = (wo + kw - 1).checked_sub(2 * self.pad);
        let (Some(h), Some(w)) = (h, w) else {
            return Err(KernelError::Shape {
                op: self.name(),
                operand: "grad",
                got: l1.dims().to_vec(),
                expected: format!(
                    "an output of a {kh} × {kw} convolution with padding {}",
                    self.pad
                ),
            }
            .into());
        };
        let s = ConvShape {
            n,
            c,
            h,
            w,
            o,
            kh,
            kw,
            pad: self.pad,
        };
        if o2 != o || kh != kw || self.pad >= kh || !s.is_valid() {
            return Err(KernelError::Shape {
                op: self.name(),
                operand: "weight",
                got: l2.dims().to_vec(),
                expected: format!("[{o}, c, k, k] with k > {}", self.pad),
            }
            .into());
        }
        let g = data(self.name(), "grad", s1, l1)?;
        let w = data(self.name(), "weight", s2, l2)?;
        let gx = dispatch::conv_input_grad(&s, g, w);
        Ok((CpuStorage::F32(gx), Shape::from((s.n, s.c, s.h, s.w))))
    }
}

/// `(gy, x) ↦ gw`, or `(gy, x, y) ↦ gw` through a fused ReLU with output `y`: weight gradient of
/// a 3 × 3 [`Conv2d`].
struct Conv2dWeightGrad {
    pad: usize,
    kh: usize,
}

impl Conv2dWeightGrad {
    const NAME: &'static str = "kernels-conv2d-weight-grad";

    fn run(
        &self,
        g: (&CpuStorage, &Layout),
        x: (&CpuStorage, &Layout),
        relu_out: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, o, ho, wo] = dims4(Self::NAME, "grad", g.1)?;
        let [n2, c, h, w] = dims4(Self::NAME, "x", x.1)?;
        let s = ConvShape {
            n,
            c,
            h,
            w,
            o,
            kh: self.kh,
            kw: self.kh,
            pad: self.pad,
        };
        if n2 != n || self.kh != 3 || !s.is_valid() || s.ho() != ho || s.wo() != wo {
            return Err(KernelError::Shape {
                op: Self::NAME,
                operand: "x",
                got: x.1.dims().to_vec(),
                expected: format!(
                    "[{n}, c, h, w] matching a 3 × 3 convolution to [{n}, {o}, {ho}, {wo}]"
                ),
            }
            .into());
        }
        let gd = data(Self::NAME, "grad", g.0, g.1)?;
        let xd = data(Self::NAME, "x", x.0, x.1)?;
        let yd = match relu_out {
            Some((ys, yl)) => {
                if yl.dims() != g.1.dims() {
                    return Err(KernelError::Shape {
                        op: Self::NAME,
                        operand: "res",
                        got: yl.dims().to_vec(),
                        expected: format!("{:?}", g.1.dims()),
                    }
                    .into());
                }
                Some(data(Self::NAME, "res", ys, yl)?)
            }
            None => None,
        };
        let gw = dispatch::conv_weight_grad(&s, xd, gd, yd);
        Ok((CpuStorage::F32(gw), Shape::from((o, c, 3, 3))))
    }
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// `gy ↦ Σ_{n,h,w} gy[n, ·, h, w]`, or `(gy, y) ↦ Σ gy · [y > 0]` through a fused ReLU: bias
/// gradient of [`Conv2d`].
struct BiasGrad;

impl BiasGrad {
    const NAME: &'static str = "kernels-conv2d-bias-grad";

    fn run(
        &self,
        g: (&CpuStorage, &Layout),
        relu_out: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, o, h, w] = dims4(Self::NAME, "grad", g.1)?;
        let gd = data(Self::NAME, "grad", g.0, g.1)?;
        let yd = match relu_out {
            Some((ys, yl)) if yl.dims() == g.1.dims() => Some(data(Self::NAME, "res", ys, yl)?),
            Some((_, yl)) => {
                return Err(KernelError::Shape {
                    op: Self::NAME,
                    operand: "res",
                    got: yl.dims().to_vec(),
                    expected: format!("{:?}", g.1.dims()),
                }
                .into());
            }
            None => None,
        };
        let plane = h * w;
        let gb: Vec<f32> = (0..o)
            .into_par_iter()
            .map(|c| {
                let mut acc = 0.0f64;
                for i in 0..n {
                    let gp = &gd[(i * o + c) * plane..][..plane];
                    let yp = yd.map(|y| &y[(i * o + c) * plane..][..plane]);
                    acc += masked_sum(gp, yp);
                }
                acc as f32
            })
            .collect();
        Ok((CpuStorage::F32(gb), Shape::from(o)))
    }
}

impl CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        self.run((s, l), None)
    }
}

impl CustomOp2 for BiasGrad {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), Some((s2, l2)))
    }
}

/// `Σ g` or `Σ g · [y > 0]`, in 16 f32 lanes per 1024-element block (vectorisable) and f64
/// across blocks.
fn masked_sum(g: &[f32], y: Option<&[f32]>) -> f64 {
    let mut total = 0.0f64;
    for (bi, gb) in g.chunks(1024).enumerate() {
        let mut lanes = [0.0f32; 16];
        match y {
            Some(y) => {
                let yb = &y[bi * 1024..bi * 1024 + gb.len()];
                for (gc, yc) in gb.chunks(16).zip(yb.chunks(16)) {
                    for ((l, &g), &y) in lanes.iter_mut().zip(gc).zip(yc) {
                        *l += if y > 0.0 { g } else { 0.0 };
                    }
                }
            }
            None => {
                for gc in gb.chunks(16) {
                    for (l, &g) in lanes.iter_mut().zip(gc) {
                        *l += g;
                    }
                }
            }
        }
        total += lanes.iter().map(|&v| v as f64).sum::<f64>();
    }
    total
}

/// Max-pooling with a `k × k` window and stride `k` (floor mode).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MaxPool2d {
    pub(crate) k: usize,
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "kernels-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = dims4(self.name(), "x", l)?;
        let x = data(self.name(), "x", s, l)?;
        let y = pool::forward(x, n * c, h, w, self.k);
        Ok((
            CpuStorage::F32(y),
            Shape::from((n, c, h / self.k, w / self.k)),
        ))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let gx = arg
            .contiguous()?
            .apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2dGrad { k: self.k })?;
        Ok(Some(gx))
    }
}

/// `(x, gy) ↦ gx` for [`MaxPool2d`].
struct MaxPool2dGrad {
    k: usize,
}

impl CustomOp2 for MaxPool2dGrad {
    fn name(&self) -> &'static str {
        "kernels-max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, c, h, w] = dims4(self.name(), "x", l1)?;
        if l2.dims() != [n, c, h / self.k, w / self.k] {
            return Err(KernelError::Shape {
                op: self.name(),
                operand: "grad",
                got: l2.dims().to_vec(),
                expected: format!("[{n}, {c}, {}, {}]", h / self.k, w / self.k),
            }
            .into());
        }
        let x = data(self.name(), "x", s1, l1)?;
        let g = data(self.name(), "grad", s2, l2)?;
        let gx = pool::backward(x, g, n * c, h, w, self.k);
        Ok((CpuStorage::F32(gx), l1.shape().clone()))
    }
}
