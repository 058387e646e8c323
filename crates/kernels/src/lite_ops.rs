//! Candle custom ops for MobileNet/EfficientNet-style layers, with their backward passes:
//! depthwise convolution, 1 × 1 convolution (bias as an extra weight column, fused residual),
//! strided convolution (im2col + GEMM) and ReLU6.
//!
//! Every op applies its fused ReLU6 to the output, and its backward pass first masks the
//! output gradient by `0 < y < 6` (the op's own output), then computes each tracked operand's
//! gradient. As in [`crate::ops`], only `cpu_fwd` is implemented: the entry points route other
//! devices and dtypes to candle's own ops.

use std::borrow::Cow;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::depthwise::{self, DwShape, pass};
use crate::error::KernelError;
use crate::isa::Isa;
use crate::matmul::{Mat, gemm};
use crate::padding::Padding;

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

/// `[n, c, hw]` → `[c, n·hw]`: channel `ch` of every image side by side, so that a 1 × 1
/// convolution of the whole batch is one matrix product (a single image is already laid out so).
fn side_by_side(x: &[f32], n: usize, c: usize, hw: usize) -> Cow<'_, [f32]> {
    if n <= 1 || c == 0 || hw == 0 {
        return Cow::Borrowed(x);
    }
    let mut out = vec![0.0f32; n * c * hw];
    out.par_chunks_mut(n * hw)
        .enumerate()
        .for_each(|(ch, dst)| {
            for (img, d) in dst.chunks_exact_mut(hw).enumerate() {
                d.copy_from_slice(&x[(img * c + ch) * hw..][..hw]);
            }
        });
    Cow::Owned(out)
}

/// `[c, n·hw]` → `[n, c, hw]`, the inverse of [`side_by_side`].
fn image_by_image(xt: &[f32], n: usize, c: usize, hw: usize) -> Vec<f32> {
    if n <= 1 || c == 0 || hw == 0 {
        return xt.to_vec();
    }
    let mut out = vec![0.0f32; n * c * hw];
    out.par_chunks_mut(hw).enumerate().for_each(|(plane, d)| {
        let (img, ch) = (plane / c, plane % c);
        d.copy_from_slice(&xt[ch * n * hw + img * hw..][..hw]);
    });
    out
}

/// A shape error for `operand` of `op`.
fn shape_err(
    op: &'static str,
    operand: &'static str,
    l: &Layout,
    expected: String,
) -> candle_core::Error {
    KernelError::Shape {
        op,
        operand,
        got: l.dims().to_vec(),
        expected,
    }
    .into()
}

/// The dimensions of a rank-4 operand.
fn dims4(op: &'static str, operand: &'static str, l: &Layout) -> Result<[usize; 4]> {
    match *l.dims() {
        [a, b, c, d] => Ok([a, b, c, d]),
        _ => Err(shape_err(op, operand, l, "rank 4".into())),
    }
}

/// The output gradient masked by the fused ReLU6 (a no-op without it).
fn masked(grad: &Tensor, res: &Tensor, relu6: bool) -> Result<Tensor> {
    let grad = grad.contiguous()?;
    if relu6 {
        grad.apply_op2_no_bwd(&res.contiguous()?, &Relu6Grad)
    } else {
        Ok(grad)
    }
}

/// `(grad, y) ↦ grad · [0 < y < 6]`: the gradient through ReLU6 given its output (or input).
pub(crate) struct Relu6Grad;

impl CustomOp2 for Relu6Grad {
    fn name(&self) -> &'static str {
        "kernels-relu6-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = data(self.name(), "grad", s1, l1)?;
        let y = data(self.name(), "res", s2, l2)?;
        if l1.dims() != l2.dims() {
            return Err(shape_err(
                self.name(),
                "res",
                l2,
                format!("{:?}", l1.dims()),
            ));
        }
        let mut out = vec![0.0f32; g.len()];
        out.par_chunks_mut(1 << 14)
            .zip(g.par_chunks(1 << 14).zip(y.par_chunks(1 << 14)))
            .for_each(|(o, (g, y))| {
                for ((o, &g), &y) in o.iter_mut().zip(g).zip(y) {
                    *o = if pass(true, y) { g } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// ReLU6, `min(max(x, 0), 6)`.
pub(crate) struct Relu6;

impl CustomOp1 for Relu6 {
    fn name(&self) -> &'static str {
        "kernels-relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(self.name(), "x", s, l)?;
        let mut out = vec![0.0f32; x.len()];
        out.par_chunks_mut(1 << 14)
            .zip(x.par_chunks(1 << 14))
            .for_each(|(o, x)| {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = x.clamp(0.0, 6.0);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(masked(grad, res, true)?))
    }
}

/// Depthwise convolution `(x [n, c, h, w], weight [c, 1, k, k] (, bias [c]))`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Depthwise {
    pub(crate) stride: usize,
    pub(crate) pad: Padding,
    pub(crate) relu6: bool,
}

impl Depthwise {
    const NAME: &'static str = "kernels-depthwise";

    fn shape(&self, op: &'static str, xl: &Layout, wl: &Layout) -> Result<DwShape> {
        let [n, c, h, w] = dims4(op, "x", xl)?;
        let [c2, one, k, k2] = dims4(op, "weight", wl)?;
        let s = DwShape {
            n,
            c,
            h,
            w,
            k,
            stride: self.stride,
            pad: self.pad,
        };
        if c2 != c || one != 1 || k != k2 || k == 0 || s.out().is_none() {
            return Err(shape_err(
                op,
                "weight",
                wl,
                format!("[{c}, 1, k, k] fitting the padded {h}×{w} input"),
            ));
        }
        Ok(s)
    }

    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let s = self.shape(Self::NAME, x.1, w.1)?;
        let xd = data(Self::NAME, "x", x.0, x.1)?;
        let wd = data(Self::NAME, "weight", w.0, w.1)?;
        let bd = match b {
            Some((bs, bl)) if bl.dims() == [s.c] => Some(data(Self::NAME, "bias", bs, bl)?),
            Some((_, bl)) => return Err(shape_err(Self::NAME, "bias", bl, format!("[{}]", s.c))),
            None => None,
        };
        let y = depthwise::forward_nchw(Isa::detect(), &s, xd, wd, bd, self.relu6);
        let (ho, wo) = s.out().unwrap_or((0, 0));
        Ok((CpuStorage::F32(y), Shape::from((s.n, s.c, ho, wo))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = masked(grad, res, self.relu6)?;
        let gx = if x.track_op() {
            Some(g.apply_op2_no_bwd(
                &w.contiguous()?,
                &DepthwiseInputGrad {
                    op: *self,
                    h: x.dim(2)?,
                    w: x.dim(3)?,
                },
            )?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(g.apply_op2_no_bwd(
                &x.contiguous()?,
                &DepthwiseWeightGrad {
                    op: *self,
                    k: w.dim(2)?,
                },
            )?)
        } else {
            None
        };
        let gb = match b {
            Some(b) if b.track_op() => Some(g.sum((0, 2, 3))?),
            _ => None,
        };
        Ok((gx, gw, gb))
    }
}

impl CustomOp2 for Depthwise {
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

impl CustomOp3 for Depthwise {
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

/// `(g, weight) ↦ gx` of [`Depthwise`] (`g` already masked).
struct DepthwiseInputGrad {
    op: Depthwise,
    h: usize,
    w: usize,
}

impl CustomOp2 for DepthwiseInputGrad {
    fn name(&self) -> &'static str {
        "kernels-depthwise-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, c, ho, wo] = dims4(self.name(), "grad", l1)?;
        let [_, _, k, _] = dims4(self.name(), "weight", l2)?;
        let s = DwShape {
            n,
            c,
            h: self.h,
            w: self.w,
            k,
            stride: self.op.stride,
            pad: self.op.pad,
        };
        if s.out() != Some((ho, wo)) || l2.dims() != [c, 1, k, k] {
            return Err(shape_err(
                self.name(),
                "grad",
                l1,
                "the output of the depthwise convolution".into(),
            ));
        }
        let g = data(self.name(), "grad", s1, l1)?;
        let wd = data(self.name(), "weight", s2, l2)?;
        let gx = depthwise::input_grad_nchw(Isa::detect(), &s, g, wd, None);
        Ok((CpuStorage::F32(gx), Shape::from((n, c, self.h, self.w))))
    }
}

/// `(g, x) ↦ gw` of [`Depthwise`] (`g` already masked).
struct DepthwiseWeightGrad {
    op: Depthwise,
    k: usize,
}

impl CustomOp2 for DepthwiseWeightGrad {
    fn name(&self) -> &'static str {
        "kernels-depthwise-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, c, ho, wo] = dims4(self.name(), "grad", l1)?;
        let [n2, c2, h, w] = dims4(self.name(), "x", l2)?;
        let s = DwShape {
            n,
            c,
            h,
            w,
            k: self.k,
            stride: self.op.stride,
            pad: self.op.pad,
        };
        if n2 != n || c2 != c || s.out() != Some((ho, wo)) {
            return Err(shape_err(
                self.name(),
                "x",
                l2,
                "the input of the depthwise convolution".into(),
            ));
        }
        let g = data(self.name(), "grad", s1, l1)?;
        let xd = data(self.name(), "x", s2, l2)?;
        let (gw, _) = depthwise::weight_grad_nchw(Isa::detect(), &s, xd, g, None);
        Ok((CpuStorage::F32(gw), Shape::from((c, 1, self.k, self.k))))
    }
}

/// 1 × 1 convolution `(x [n, c, h, w], weight [o, c (+ 1)] (, residual [n, o, h, w]))`: with
/// `bias_col` the weight's last column is the bias; the residual is added before the ReLU6.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pointwise {
    pub(crate) relu6: bool,
    pub(crate) bias_col: bool,
}

impl Pointwise {
    const NAME: &'static str = "kernels-pointwise";

    /// `(n, c, hw, o)` of the operands.
    fn shape(&self, xl: &Layout, wl: &Layout) -> Result<(usize, usize, usize, usize)> {
        let [n, c, h, w] = dims4(Self::NAME, "x", xl)?;
        let extra = usize::from(self.bias_col);
        match *wl.dims() {
            [o, cw] if cw == c + extra => Ok((n, c, h * w, o)),
            _ => Err(shape_err(
                Self::NAME,
                "weight",
                wl,
                format!("[o, {}]", c + extra),
            )),
        }
    }

    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        r: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, hw, o) = self.shape(x.1, w.1)?;
        let xd = data(Self::NAME, "x", x.0, x.1)?;
        let wd = data(Self::NAME, "weight", w.0, w.1)?;
        let [_, _, h, wdt] = dims4(Self::NAME, "x", x.1)?;
        let rd = match r {
            Some((rs, rl)) if rl.dims() == [n, o, h, wdt] => {
                Some(data(Self::NAME, "residual", rs, rl)?)
            }
            Some((_, rl)) => {
                return Err(shape_err(
                    Self::NAME,
                    "residual",
                    rl,
                    format!("[{n}, {o}, {h}, {wdt}]"),
                ));
            }
            None => None,
        };
        let isa = Isa::detect();
        let ldw = c + usize::from(self.bias_col);
        // One GEMM over the whole batch, `[o, c] · [c, n·hw]`: at the small maps of a network's
        // tail (7 × 7) one GEMM per image would be too narrow to keep the cores busy.
        let cols = n * hw;
        if cols == 0 || o == 0 {
            return Ok((CpuStorage::F32(Vec::new()), Shape::from((n, o, h, wdt))));
        }
        let xt = side_by_side(xd, n, c, hw);
        let mut yt = vec![0.0f32; o * cols];
        gemm(
            isa,
            o,
            cols,
            c,
            Mat::rows(wd, ldw),
            Mat::rows(&xt, cols),
            &mut yt,
            cols,
            false,
        );
        let (relu6, bias_col) = (self.relu6, self.bias_col);
        let mut y = vec![0.0f32; n * o * hw];
        y.par_chunks_mut(hw).enumerate().for_each(|(plane, yp)| {
            let (img, oc) = (plane / o, plane % o);
            let src = &yt[oc * cols + img * hw..][..hw];
            let b = if bias_col { wd[oc * ldw + c] } else { 0.0 };
            let rp = rd.map(|r| &r[plane * hw..(plane + 1) * hw]);
            for (p, (v, &s)) in yp.iter_mut().zip(src).enumerate() {
                let mut t = s + b;
                if let Some(r) = rp {
                    t += r[p];
                }
                *v = if relu6 { t.clamp(0.0, 6.0) } else { t };
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((n, o, h, wdt))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        r: Option<&Tensor>,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = masked(grad, res, self.relu6)?;
        let gx = if x.track_op() {
            Some(g.apply_op2_no_bwd(
                &w.contiguous()?,
                &PointwiseInputGrad {
                    bias_col: self.bias_col,
                },
            )?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(g.apply_op2_no_bwd(
                &x.contiguous()?,
                &PointwiseWeightGrad {
                    bias_col: self.bias_col,
                },
            )?)
        } else {
            None
        };
        let gr = match r {
            Some(r) if r.track_op() => Some(g),
            _ => None,
        };
        Ok((gx, gw, gr))
    }
}

impl CustomOp2 for Pointwise {
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

impl CustomOp3 for Pointwise {
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
        r: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.grads(x, w, Some(r), res, grad)
    }
}

/// `(g [n, o, h, w], weight [o, c (+ 1)]) ↦ gx [n, c, h, w] = Wᵀ g` of [`Pointwise`].
struct PointwiseInputGrad {
    bias_col: bool,
}

impl CustomOp2 for PointwiseInputGrad {
    fn name(&self) -> &'static str {
        "kernels-pointwise-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, o, h, w] = dims4(self.name(), "grad", l1)?;
        let (o2, ldw) = match *l2.dims() {
            [a, b] => (a, b),
            _ => return Err(shape_err(self.name(), "weight", l2, "rank 2".into())),
        };
        let c = ldw
            .checked_sub(usize::from(self.bias_col))
            .filter(|_| o2 == o);
        let Some(c) = c else {
            return Err(shape_err(self.name(), "weight", l2, format!("[{o}, c]")));
        };
        let g = data(self.name(), "grad", s1, l1)?;
        let wd = data(self.name(), "weight", s2, l2)?;
        let hw = h * w;
        let cols = n * hw;
        let gt = side_by_side(g, n, o, hw);
        let mut gxt = vec![0.0f32; c * cols];
        gemm(
            Isa::detect(),
            c,
            cols,
            o,
            Mat::cols(wd, ldw),
            Mat::rows(&gt, cols),
            &mut gxt,
            cols,
            false,
        );
        let gx = image_by_image(&gxt, n, c, hw);
        Ok((CpuStorage::F32(gx), Shape::from((n, c, h, w))))
    }
}

/// `(g [n, o, h, w], x [n, c, h, w]) ↦ gw [o, c (+ 1)] = Σₙ gₙ xₙᵀ (, Σ g)` of [`Pointwise`].
struct PointwiseWeightGrad {
    bias_col: bool,
}

impl CustomOp2 for PointwiseWeightGrad {
    fn name(&self) -> &'static str {
        "kernels-pointwise-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [n, o, h, w] = dims4(self.name(), "grad", l1)?;
        let [n2, c, h2, w2] = dims4(self.name(), "x", l2)?;
        if (n2, h2, w2) != (n, h, w) {
            return Err(shape_err(
                self.name(),
                "x",
                l2,
                format!("[{n}, c, {h}, {w}]"),
            ));
        }
        let g = data(self.name(), "grad", s1, l1)?;
        let xd = data(self.name(), "x", s2, l2)?;
        let hw = h * w;
        let ldw = c + usize::from(self.bias_col);
        // One GEMM reducing over the whole batch, `[o, n·hw] · [n·hw, c]`.
        let cols = n * hw;
        let gt = side_by_side(g, n, o, hw);
        let xt = side_by_side(xd, n, c, hw);
        let mut gw = vec![0.0f32; o * ldw];
        gemm(
            Isa::detect(),
            o,
            c,
            cols,
            Mat::rows(&gt, cols),
            Mat::cols(&xt, cols),
            &mut gw,
            ldw,
            false,
        );
        if self.bias_col {
            let sums: Vec<f64> = (0..o)
                .into_par_iter()
                .map(|oc| {
                    (0..n)
                        .map(|img| {
                            g[(img * o + oc) * hw..(img * o + oc + 1) * hw]
                                .iter()
                                .map(|&v| v as f64)
                                .sum::<f64>()
                        })
                        .sum()
                })
                .collect();
            for (oc, s) in sums.into_iter().enumerate() {
                gw[oc * ldw + c] = s as f32;
            }
        }
        Ok((CpuStorage::F32(gw), Shape::from((o, ldw))))
    }
}

/// Geometry of a strided convolution.
#[derive(Clone, Copy, Debug)]
struct StridedShape {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: Padding,
    ho: usize,
    wo: usize,
}

impl StridedShape {
    fn kk(&self) -> usize {
        self.c * self.k * self.k
    }

    fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// The im2col matrix `[c·k·k][ho·wo]` of image `xn`.
    fn im2col(&self, xn: &[f32], cols: &mut [f32]) {
        let (k, p) = (self.k, self.p());
        cols.par_chunks_mut(p).enumerate().for_each(|(row, dst)| {
            let (ci, t) = (row / (k * k), row % (k * k));
            let (i, j) = (t / k, t % k);
            for oh in 0..self.ho {
                let ih = (oh * self.stride + i).wrapping_sub(self.pad.top);
                for ow in 0..self.wo {
                    let iw = (ow * self.stride + j).wrapping_sub(self.pad.left);
                    dst[oh * self.wo + ow] = if ih < self.h && iw < self.w {
                        xn[(ci * self.h + ih) * self.w + iw]
                    } else {
                        0.0
                    };
                }
            }
        });
    }

    /// Adds the im2col-shaped gradient `gcols` back into image gradient `gxn` (planes in
    /// parallel).
    fn col2im(&self, gcols: &[f32], gxn: &mut [f32]) {
        let (k, p) = (self.k, self.p());
        gxn.par_chunks_mut(self.h * self.w)
            .enumerate()
            .for_each(|(ci, plane)| {
                for t in 0..k * k {
                    let (i, j) = (t / k, t % k);
                    let src = &gcols[(ci * k * k + t) * p..][..p];
                    for oh in 0..self.ho {
                        let ih = (oh * self.stride + i).wrapping_sub(self.pad.top);
                        if ih >= self.h {
                            continue;
                        }
                        for ow in 0..self.wo {
                            let iw = (ow * self.stride + j).wrapping_sub(self.pad.left);
                            if iw < self.w {
                                plane[ih * self.w + iw] += src[oh * self.wo + ow];
                            }
                        }
                    }
                }
            });
    }
}

/// A `k × k` convolution with stride and asymmetric padding, `(x [n, c, h, w], weight
/// [o, c, k, k] (, bias [o]))`, as im2col + GEMM.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StridedConv {
    pub(crate) stride: usize,
    pub(crate) pad: Padding,
    pub(crate) relu6: bool,
}

impl StridedConv {
    const NAME: &'static str = "kernels-strided-conv";

    fn shape(&self, op: &'static str, xl: &Layout, wl: &Layout) -> Result<StridedShape> {
        let [n, c, h, w] = dims4(op, "x", xl)?;
        let [o, c2, k, k2] = dims4(op, "weight", wl)?;
        let out = self.pad.output_size(h, w, k, self.stride);
        match out {
            Some((ho, wo)) if c2 == c && k == k2 => Ok(StridedShape {
                n,
                c,
                h,
                w,
                o,
                k,
                stride: self.stride,
                pad: self.pad,
                ho,
                wo,
            }),
            _ => Err(shape_err(
                op,
                "weight",
                wl,
                format!("[o, {c}, k, k] fitting the padded {h}×{w} input"),
            )),
        }
    }

    fn run(
        &self,
        x: (&CpuStorage, &Layout),
        w: (&CpuStorage, &Layout),
        b: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let s = self.shape(Self::NAME, x.1, w.1)?;
        let xd = data(Self::NAME, "x", x.0, x.1)?;
        let wd = data(Self::NAME, "weight", w.0, w.1)?;
        let bd = match b {
            Some((bs, bl)) if bl.dims() == [s.o] => Some(data(Self::NAME, "bias", bs, bl)?),
            Some((_, bl)) => return Err(shape_err(Self::NAME, "bias", bl, format!("[{}]", s.o))),
            None => None,
        };
        let (kk, p) = (s.kk(), s.p());
        let isa = Isa::detect();
        let mut cols = vec![0.0f32; kk * p];
        let mut y = vec![0.0f32; s.n * s.o * p];
        for (img, yn) in y.chunks_exact_mut(s.o * p).enumerate() {
            s.im2col(
                &xd[img * s.c * s.h * s.w..(img + 1) * s.c * s.h * s.w],
                &mut cols,
            );
            gemm(
                isa,
                s.o,
                p,
                kk,
                Mat::rows(wd, kk),
                Mat::rows(&cols, p),
                yn,
                p,
                false,
            );
        }
        let relu6 = self.relu6;
        y.par_chunks_mut(p).enumerate().for_each(|(plane, yp)| {
            let b = bd.map_or(0.0, |b| b[plane % s.o]);
            for v in yp.iter_mut() {
                let t = *v + b;
                *v = if relu6 { t.clamp(0.0, 6.0) } else { t };
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((s.n, s.o, s.ho, s.wo))))
    }

    fn grads(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = masked(grad, res, self.relu6)?;
        let x = x.contiguous()?;
        let w = w.contiguous()?;
        let gx = if x.track_op() {
            Some(g.apply_op3_no_bwd(
                &x,
                &w,
                &StridedConvGrad {
                    op: *self,
                    input: true,
                },
            )?)
        } else {
            None
        };
        let gw = if w.track_op() {
            Some(g.apply_op3_no_bwd(
                &x,
                &w,
                &StridedConvGrad {
                    op: *self,
                    input: false,
                },
            )?)
        } else {
            None
        };
        let gb = match b {
            Some(b) if b.track_op() => Some(g.sum((0, 2, 3))?),
            _ => None,
        };
        Ok((gx, gw, gb))
    }
}

impl CustomOp2 for StridedConv {
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

impl CustomOp3 for StridedConv {
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

/// `(g, x, weight) ↦ gx` (`input`) or `gw` of [`StridedConv`] (`g` already masked).
struct StridedConvGrad {
    op: StridedConv,
    input: bool,
}

impl CustomOp3 for StridedConvGrad {
    fn name(&self) -> &'static str {
        "kernels-strided-conv-grad"
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
        let s = self.op.shape(self.name(), l2, l3)?;
        if l1.dims() != [s.n, s.o, s.ho, s.wo] {
            return Err(shape_err(
                self.name(),
                "grad",
                l1,
                format!("[{}, {}, {}, {}]", s.n, s.o, s.ho, s.wo),
            ));
        }
        let g = data(self.name(), "grad", s1, l1)?;
        let xd = data(self.name(), "x", s2, l2)?;
        let wd = data(self.name(), "weight", s3, l3)?;
        let (kk, p) = (s.kk(), s.p());
        let isa = Isa::detect();
        let mut cols = vec![0.0f32; kk * p];
        if self.input {
            let mut gx = vec![0.0f32; s.n * s.c * s.h * s.w];
            for (img, gxn) in gx.chunks_exact_mut(s.c * s.h * s.w).enumerate() {
                let gn = &g[img * s.o * p..(img + 1) * s.o * p];
                gemm(
                    isa,
                    kk,
                    p,
                    s.o,
                    Mat::cols(wd, kk),
                    Mat::rows(gn, p),
                    &mut cols,
                    p,
                    false,
                );
                s.col2im(&cols, gxn);
            }
            Ok((CpuStorage::F32(gx), Shape::from((s.n, s.c, s.h, s.w))))
        } else {
            let mut gw = vec![0.0f32; s.o * kk];
            for img in 0..s.n {
                s.im2col(
                    &xd[img * s.c * s.h * s.w..(img + 1) * s.c * s.h * s.w],
                    &mut cols,
                );
                let gn = &g[img * s.o * p..(img + 1) * s.o * p];
                gemm(
                    isa,
                    s.o,
                    kk,
                    p,
                    Mat::rows(gn, p),
                    Mat::cols(&cols, p),
                    &mut gw,
                    kk,
                    img > 0,
                );
            }
            Ok((CpuStorage::F32(gw), Shape::from((s.o, s.c, s.k, s.k))))
        }
    }
}
