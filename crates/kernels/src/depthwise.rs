//! Depthwise convolution: one `k × k` filter per channel, any stride, asymmetric padding.
//!
//! Two layouts:
//! - channels-last rows ([`row_nhwc`]) for the frozen inference path: an output row is a sum
//!   over the `k²` taps of input rows times per-channel weight vectors, vectorised across
//!   channels (AVX2 + FMA: 4 pixels × 16 channels in eight accumulators);
//! - NCHW planes ([`forward_nchw`], [`input_grad_nchw`], [`weight_grad_nchw`]) for the
//!   differentiable op: each plane is zero-padded once into scratch memory, then the taps run
//!   along contiguous rows (vectorised by the compiler for the detected instruction set).

use crate::isa::{Isa, dispatch_isa};
use crate::padding::Padding;
use crate::scratch::with_scratch;
use rayon::prelude::*;

/// Geometry of a depthwise convolution over NCHW data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DwShape {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) k: usize,
    pub(crate) stride: usize,
    pub(crate) pad: Padding,
}

impl DwShape {
    /// Output `(ho, wo)`, `None` when the window does not fit.
    pub(crate) fn out(&self) -> Option<(usize, usize)> {
        self.pad.output_size(self.h, self.w, self.k, self.stride)
    }

    /// Padded height and width.
    fn padded(&self) -> (usize, usize) {
        (
            self.h + self.pad.top + self.pad.bottom,
            self.w + self.pad.left + self.pad.right,
        )
    }
}

/// Whether `y` lets a gradient through its fused activation: always without ReLU6, else
/// `0 < y < 6`.
#[inline(always)]
pub(crate) fn pass(relu6: bool, y: f32) -> bool {
    !relu6 || (y > 0.0 && y < 6.0)
}

/// Copies plane `src` (`h × w`) into `dst` (`hp × wp`, zeroed first) at `(top, left)`.
fn pad_plane(src: &[f32], s: &DwShape, dst: &mut [f32]) {
    let (_, wp) = s.padded();
    dst.fill(0.0);
    for r in 0..s.h {
        let d = (r + s.pad.top) * wp + s.pad.left;
        dst[d..d + s.w].copy_from_slice(&src[r * s.w..(r + 1) * s.w]);
    }
}

/// Forward: `x` [n, c, h, w], `weight` [c, k, k], `bias` [c]; returns [n, c, ho, wo].
pub(crate) fn forward_nchw(
    isa: Isa,
    s: &DwShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu6: bool,
) -> Vec<f32> {
    let Some((ho, wo)) = s.out() else {
        return Vec::new();
    };
    let (hp, wp) = s.padded();
    let mut y = vec![0.0f32; s.n * s.c * ho * wo];
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(s.h * s.w))
        .enumerate()
        .for_each(|(plane, (yp, xp))| {
            let c = plane % s.c;
            let wk = &weight[c * s.k * s.k..(c + 1) * s.k * s.k];
            let b = bias.map_or(0.0, |b| b[c]);
            with_scratch(hp * wp, |pad| {
                pad_plane(xp, s, pad);
                dispatch_isa!(isa, plane_forward(s, pad, wp, wk, b, relu6, yp, wo));
            });
        });
    y
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plane_forward(
    s: &DwShape,
    pad: &[f32],
    wp: usize,
    wk: &[f32],
    b: f32,
    relu6: bool,
    y: &mut [f32],
    wo: usize,
) {
    let (k, st) = (s.k, s.stride);
    for (oh, row) in y.chunks_exact_mut(wo).enumerate() {
        row.fill(b);
        for i in 0..k {
            let src = &pad[(oh * st + i) * wp..(oh * st + i + 1) * wp];
            for j in 0..k {
                let wv = wk[i * k + j];
                if st == 1 {
                    for (o, &v) in row.iter_mut().zip(&src[j..j + wo]) {
                        *o += wv * v;
                    }
                } else {
                    for (ow, o) in row.iter_mut().enumerate() {
                        *o += wv * src[ow * st + j];
                    }
                }
            }
        }
        if relu6 {
            for o in row.iter_mut() {
                *o = o.clamp(0.0, 6.0);
            }
        }
    }
}

/// Input gradient from the output gradient `gy` [n, c, ho, wo] (taken through the fused ReLU6
/// when `relu_out`, the forward output, is given); returns [n, c, h, w].
pub(crate) fn input_grad_nchw(
    isa: Isa,
    s: &DwShape,
    gy: &[f32],
    weight: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    let Some((ho, wo)) = s.out() else {
        return vec![0.0; s.n * s.c * s.h * s.w];
    };
    let (hp, wp) = s.padded();
    let mut gx = vec![0.0f32; s.n * s.c * s.h * s.w];
    gx.par_chunks_mut(s.h * s.w)
        .enumerate()
        .for_each(|(plane, gxp)| {
            let c = plane % s.c;
            let wk = &weight[c * s.k * s.k..(c + 1) * s.k * s.k];
            let g = &gy[plane * ho * wo..(plane + 1) * ho * wo];
            let y = relu_out.map(|y| &y[plane * ho * wo..(plane + 1) * ho * wo]);
            with_scratch(hp * wp + wo, |buf| {
                let (pad, grow) = buf.split_at_mut(hp * wp);
                pad.fill(0.0);
                dispatch_isa!(isa, plane_input_grad(s, pad, wp, wk, g, y, grow, wo));
                for r in 0..s.h {
                    let src = (r + s.pad.top) * wp + s.pad.left;
                    gxp[r * s.w..(r + 1) * s.w].copy_from_slice(&pad[src..src + s.w]);
                }
            });
        });
    gx
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn plane_input_grad(
    s: &DwShape,
    pad: &mut [f32],
    wp: usize,
    wk: &[f32],
    g: &[f32],
    y: Option<&[f32]>,
    grow: &mut [f32],
    wo: usize,
) {
    let (k, st) = (s.k, s.stride);
    for (oh, gr) in g.chunks_exact(wo).enumerate() {
        match y {
            Some(y) => {
                for ((d, &gv), &yv) in grow.iter_mut().zip(gr).zip(&y[oh * wo..(oh + 1) * wo]) {
                    *d = if pass(true, yv) { gv } else { 0.0 };
                }
            }
            None => grow.copy_from_slice(gr),
        }
        for i in 0..k {
            let dst = &mut pad[(oh * st + i) * wp..(oh * st + i + 1) * wp];
            for j in 0..k {
                let wv = wk[i * k + j];
                if st == 1 {
                    for (d, &gv) in dst[j..j + wo].iter_mut().zip(grow.iter()) {
                        *d += wv * gv;
                    }
                } else {
                    for (ow, &gv) in grow.iter().enumerate() {
                        dst[ow * st + j] += wv * gv;
                    }
                }
            }
        }
    }
}

/// Weight and bias gradients `([c, k, k], [c])` from the input `x` and the output gradient
/// `gy` (through the fused ReLU6 when `relu_out` is given).
pub(crate) fn weight_grad_nchw(
    isa: Isa,
    s: &DwShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let kk = s.k * s.k;
    let mut gw = vec![0.0f32; s.c * kk];
    let mut gb = vec![0.0f32; s.c];
    let Some((ho, wo)) = s.out() else {
        return (gw, gb);
    };
    let (hp, wp) = s.padded();
    gw.par_chunks_mut(kk)
        .zip(gb.par_iter_mut())
        .enumerate()
        .for_each(|(c, (gwc, gbc))| {
            let mut acc = vec![0.0f64; kk];
            let mut bacc = 0.0f64;
            with_scratch(hp * wp + ho * wo, |buf| {
                let (pad, gm) = buf.split_at_mut(hp * wp);
                for n in 0..s.n {
                    let plane = n * s.c + c;
                    pad_plane(&x[plane * s.h * s.w..(plane + 1) * s.h * s.w], s, pad);
                    let g = &gy[plane * ho * wo..(plane + 1) * ho * wo];
                    match relu_out {
                        Some(y) => {
                            let y = &y[plane * ho * wo..(plane + 1) * ho * wo];
                            for ((d, &gv), &yv) in gm.iter_mut().zip(g).zip(y) {
                                *d = if pass(true, yv) { gv } else { 0.0 };
                            }
                        }
                        None => gm.copy_from_slice(g),
                    }
                    bacc += gm.iter().map(|&v| v as f64).sum::<f64>();
                    dispatch_isa!(isa, plane_weight_grad(s, pad, wp, gm, wo, &mut acc));
                }
            });
            for (d, a) in gwc.iter_mut().zip(&acc) {
                *d = *a as f32;
            }
            *gbc = bacc as f32;
        });
    (gw, gb)
}

#[inline(always)]
fn plane_weight_grad(s: &DwShape, pad: &[f32], wp: usize, g: &[f32], wo: usize, acc: &mut [f64]) {
    let (k, st) = (s.k, s.stride);
    for i in 0..k {
        for j in 0..k {
            let mut lanes = [0.0f32; 8];
            let mut total = 0.0f64;
            for (oh, gr) in g.chunks_exact(wo).enumerate() {
                let src = &pad[(oh * st + i) * wp..];
                let mut row = 0.0f32;
                if st == 1 {
                    let xs = &src[j..j + wo];
                    let mut gc = gr.chunks_exact(8);
                    let mut xc = xs.chunks_exact(8);
                    for (ga, xa) in (&mut gc).zip(&mut xc) {
                        for l in 0..8 {
                            lanes[l] += ga[l] * xa[l];
                        }
                    }
                    for (&gv, &xv) in gc.remainder().iter().zip(xc.remainder()) {
                        row += gv * xv;
                    }
                } else {
                    for (ow, &gv) in gr.iter().enumerate() {
                        row += gv * src[ow * st + j];
                    }
                }
                total += row as f64;
            }
            total += lanes.iter().map(|&v| v as f64).sum::<f64>();
            acc[i * k + j] += total;
        }
    }
}

/// One output row of a channels-last depthwise convolution:
/// `out[ow][e] = act(bias[e] + Σ_{i, j < k} rows[i][(ow·s + j)·ch + e] · w[(i·k + j)·ch + e])`.
///
/// # Safety
/// Each of the `k` row pointers must address `((wo - 1)·stride + k)·ch` readable floats,
/// `weight` `k²·ch`, `bias` `ch`, and `out` `wo·ch` writable floats.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn row_nhwc(
    isa: Isa,
    rows: &[*const f32],
    k: usize,
    stride: usize,
    ch: usize,
    wo: usize,
    weight: *const f32,
    bias: *const f32,
    out: *mut f32,
    relu6: bool,
) {
    let args = RowArgs {
        rows,
        k,
        stride,
        ch,
        wo,
        weight,
        bias,
        out,
        relu6,
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if isa >= Isa::Avx2 && Isa::Avx2.is_supported() {
            return row_avx2(&args);
        }
        let _ = isa;
        row_portable(&args)
    }
}

/// The operands of [`row_nhwc`].
struct RowArgs<'a> {
    rows: &'a [*const f32],
    k: usize,
    stride: usize,
    ch: usize,
    wo: usize,
    weight: *const f32,
    bias: *const f32,
    out: *mut f32,
    relu6: bool,
}

/// Channels `e0..e1` of output pixels `ow0..ow0 + P`, in plain Rust.
///
/// # Safety
/// See [`row_nhwc`].
#[inline(always)]
unsafe fn pixels_scalar<const P: usize>(t: &RowArgs<'_>, ow0: usize, e0: usize, e1: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        for e in e0..e1 {
            let mut acc = [*t.bias.add(e); P];
            for (i, &rp) in t.rows.iter().enumerate().take(t.k) {
                for j in 0..t.k {
                    let wv = *t.weight.add((i * t.k + j) * t.ch + e);
                    for (q, a) in acc.iter_mut().enumerate() {
                        *a += *rp.add(((ow0 + q) * t.stride + j) * t.ch + e) * wv;
                    }
                }
            }
            for (q, &a) in acc.iter().enumerate() {
                *t.out.add((ow0 + q) * t.ch + e) = if t.relu6 { a.clamp(0.0, 6.0) } else { a };
            }
        }
    }
}

/// Plain-Rust row kernel: 8-channel lane arrays the compiler can vectorise.
///
/// # Safety
/// See [`row_nhwc`].
unsafe fn row_portable(t: &RowArgs<'_>) {
    const L: usize = 8;
    // SAFETY: forwarded from the caller.
    unsafe {
        for ow in 0..t.wo {
            let mut e = 0;
            while e + L <= t.ch {
                let mut acc = [0.0f32; L];
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = *t.bias.add(e + l);
                }
                for (i, &rp) in t.rows.iter().enumerate().take(t.k) {
                    for j in 0..t.k {
                        let wp = t.weight.add((i * t.k + j) * t.ch + e);
                        let xp = rp.add((ow * t.stride + j) * t.ch + e);
                        for (l, a) in acc.iter_mut().enumerate() {
                            *a += *xp.add(l) * *wp.add(l);
                        }
                    }
                }
                for (l, &a) in acc.iter().enumerate() {
                    *t.out.add(ow * t.ch + e + l) = if t.relu6 { a.clamp(0.0, 6.0) } else { a };
                }
                e += L;
            }
            if e < t.ch {
                pixels_scalar::<1>(t, ow, e, t.ch);
            }
        }
    }
}

/// AVX2 + FMA row kernel.
///
/// # Safety
/// See [`row_nhwc`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(t: &RowArgs<'_>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut ow = 0;
        while ow + 4 <= t.wo {
            pixels_avx2::<4>(t, ow);
            ow += 4;
        }
        while ow < t.wo {
            pixels_avx2::<1>(t, ow);
            ow += 1;
        }
    }
}

/// `P` output pixels from `ow0`, all channels: 16-channel then 8-channel vectors, then scalars.
///
/// # Safety
/// See [`row_nhwc`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn pixels_avx2<const P: usize>(t: &RowArgs<'_>, ow0: usize) {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let six = _mm256_set1_ps(6.0);
    let (k, st, ch) = (t.k, t.stride, t.ch);
    // SAFETY: forwarded from the caller.
    unsafe {
        let mut e = 0;
        while e + 16 <= ch {
            let b0 = _mm256_loadu_ps(t.bias.add(e));
            let b1 = _mm256_loadu_ps(t.bias.add(e + 8));
            let mut acc = [[b0, b1]; P];
            for (i, &rp) in t.rows.iter().enumerate().take(k) {
                for j in 0..k {
                    let wp = t.weight.add((i * k + j) * ch + e);
                    let w0 = _mm256_loadu_ps(wp);
                    let w1 = _mm256_loadu_ps(wp.add(8));
                    for (q, a) in acc.iter_mut().enumerate() {
                        let xp = rp.add(((ow0 + q) * st + j) * ch + e);
                        a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(xp), w0, a[0]);
                        a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(8)), w1, a[1]);
                    }
                }
            }
            for (q, a) in acc.iter().enumerate() {
                let op = t.out.add((ow0 + q) * ch + e);
                let (mut y0, mut y1) = (a[0], a[1]);
                if t.relu6 {
                    y0 = _mm256_min_ps(_mm256_max_ps(y0, zero), six);
                    y1 = _mm256_min_ps(_mm256_max_ps(y1, zero), six);
                }
                _mm256_storeu_ps(op, y0);
                _mm256_storeu_ps(op.add(8), y1);
            }
            e += 16;
        }
        while e + 8 <= ch {
            let mut acc = [_mm256_loadu_ps(t.bias.add(e)); P];
            for (i, &rp) in t.rows.iter().enumerate().take(k) {
                for j in 0..k {
                    let w0 = _mm256_loadu_ps(t.weight.add((i * k + j) * ch + e));
                    for (q, a) in acc.iter_mut().enumerate() {
                        let xp = rp.add(((ow0 + q) * st + j) * ch + e);
                        *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp), w0, *a);
                    }
                }
            }
            for (q, &a) in acc.iter().enumerate() {
                let y = if t.relu6 {
                    _mm256_min_ps(_mm256_max_ps(a, zero), six)
                } else {
                    a
                };
                _mm256_storeu_ps(t.out.add((ow0 + q) * ch + e), y);
            }
            e += 8;
        }
        if e < ch {
            pixels_scalar::<P>(t, ow0, e, ch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_last_row_matches_the_planes() {
        for &(ch, k, stride, w) in &[
            (35usize, 3usize, 1usize, 9usize),
            (16, 5, 2, 11),
            (8, 3, 2, 4),
            (3, 5, 1, 6),
        ] {
            let pad = Padding::same(5, w, k, stride);
            let s = DwShape {
                n: 1,
                c: ch,
                h: 5,
                w,
                k,
                stride,
                pad,
            };
            let (ho, wo) = s.out().unwrap();
            let x: Vec<f32> = (0..ch * 5 * w)
                .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let wt: Vec<f32> = (0..ch * k * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..ch).map(|i| i as f32 * 0.1).collect();
            let want = forward_nchw(Isa::Portable, &s, &x, &wt, Some(&b), true);
            // Channels-last padded copy of x, and [k·k][ch] weights.
            let (hp, wp) = s.padded();
            let mut xl = vec![0.0f32; hp * wp * ch];
            for c in 0..ch {
                for r in 0..5 {
                    for q in 0..w {
                        xl[((r + pad.top) * wp + q + pad.left) * ch + c] = x[(c * 5 + r) * w + q];
                    }
                }
            }
            let mut wl = vec![0.0f32; k * k * ch];
            for c in 0..ch {
                for t in 0..k * k {
                    wl[t * ch + c] = wt[c * k * k + t];
                }
            }
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                for oh in 0..ho {
                    let rows: Vec<*const f32> = (0..k)
                        .map(|i| xl[(oh * stride + i) * wp * ch..].as_ptr())
                        .collect();
                    let mut out = vec![0.0f32; wo * ch];
                    // SAFETY: the rows are full padded rows; the buffers have the sizes required.
                    unsafe {
                        row_nhwc(
                            isa,
                            &rows,
                            k,
                            stride,
                            ch,
                            wo,
                            wl.as_ptr(),
                            b.as_ptr(),
                            out.as_mut_ptr(),
                            true,
                        )
                    };
                    for c in 0..ch {
                        for q in 0..wo {
                            let g = out[q * ch + c];
                            let e = want[(c * ho + oh) * wo + q];
                            assert!(
                                (g - e).abs() < 1e-5,
                                "{isa:?} ch {ch} k {k} s {stride}: {g} vs {e}"
                            );
                        }
                    }
                }
            }
        }
    }
}
