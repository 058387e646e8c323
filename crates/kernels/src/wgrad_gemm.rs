//! Weight gradient of a 3 × 3, stride-1 convolution as one packed GEMM over the whole batch.
//!
//! `gw[o, (c, i, j)] = Σ_{n, p} gy[n, o, p] · xpad[n, c, p + (i, j)]`: a product of the output
//! gradient, seen as an `o × (n·ho·wo)` matrix, and the im2col matrix of the input,
//! `(n·ho·wo) × (c·9)`. The row-dot kernel of [`crate::wgrad`] vectorises along output rows,
//! which wastes most lanes when the rows are short (block 5 of VGG16 at 150 × 150 has 9 × 9
//! outputs); here the vectors run along `c·9`, so small images keep every lane busy.
//!
//! The gradient is packed once into [`MR`]-row panels (masked by the ReLU output when the
//! convolution had a fused ReLU). Each task owns one panel of up to [`NR`] gradient columns:
//! it gathers the matching im2col columns chunk by chunk of the reduction into an L2-sized
//! `[kc][48]` panel and runs the micro-kernel over every output-channel panel into a private
//! accumulator, so tasks never share writes.

use crate::direct::pad_planes;
use crate::gemm::{LANES, MR, NR, micro, panel_width};
use crate::isa::Isa;
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Taps of a 3 × 3 kernel.
const TAPS: usize = 9;
/// Reduction rows per packed `B` chunk (`KC × 48` floats = 48 KiB).
const KC: usize = 256;

/// Weight gradient `[o, c, 3, 3]` of the convolution `s` from the input `x` ([n, c, h, w]) and
/// the output gradient `gy` ([n, o, ho, wo]); with `relu_out` (the forward output, same shape
/// as `gy`), `gy` is first masked by `relu_out > 0`.
pub(crate) fn weight_grad(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    debug_assert!(s.kh == 3 && s.kw == 3);
    let (ho, wo, wp) = (s.ho(), s.wo(), s.wp());
    let plane = ho * wo;
    let k = s.n * plane;
    let cols = s.c * TAPS;
    let a = pack_gradient(s, gy, relu_out);
    let (xp, stride) = pad_planes(x, s.n * s.c, s.h, s.w, s.pad, 0);
    let o_panels = s.o.div_ceil(MR);

    let mut gw = vec![0.0f32; s.o * cols];
    let gwp = SharedMut(gw.as_mut_ptr());
    (0..cols.div_ceil(NR)).into_par_iter().for_each(|panel| {
        let c0 = panel * NR;
        let nc = NR.min(cols - c0);
        let w = panel_width(nc);
        let mut b = vec![0.0f32; KC * w];
        let mut acc = vec![0.0f32; o_panels * MR * w];
        // Offset of each column's (c, i, j) in an image's padded planes.
        let col_off: Vec<usize> = (c0..c0 + nc)
            .map(|col| {
                let (c, t) = (col / TAPS, col % TAPS);
                c * stride + (t / 3) * wp + t % 3
            })
            .collect();
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            // Gather B[kk][col] = xpad[n, c, oh + i, ow + j] for reduction rows k0..k0 + kc.
            for (kk, row) in b.chunks_exact_mut(w).take(kc).enumerate() {
                let q = k0 + kk;
                let (n, p) = (q / plane, q % plane);
                let img = &xp[n * s.c * stride + (p / wo) * wp + p % wo..];
                for (v, &off) in row.iter_mut().zip(&col_off) {
                    *v = img[off];
                }
            }
            for op in 0..o_panels {
                // SAFETY: the A panel holds `k * MR` floats from which `kc * MR` are read at
                // `k0 * MR`; B holds `kc * w`; the accumulator tile is `MR × w` with stride `w`.
                unsafe {
                    micro(
                        isa,
                        kc,
                        a.as_ptr().add(op * k * MR + k0 * MR),
                        b.as_ptr(),
                        w,
                        acc.as_mut_ptr().add(op * MR * w),
                        w,
                        k0 > 0,
                    );
                }
            }
        }
        for o in 0..s.o {
            let src = &acc[o * w..o * w + nc];
            // SAFETY: this task owns columns c0..c0 + nc of every row of `gw`.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), gwp.ptr().add(o * cols + c0), nc);
            }
        }
    });
    gw
}

/// The output gradient as [`MR`]-row panels `[panel][n·ho·wo][MR]` (rows past `o` zero), masked
/// by `relu_out > 0` when given.
fn pack_gradient(s: &ConvShape, gy: &[f32], relu_out: Option<&[f32]>) -> Vec<f32> {
    let plane = s.ho() * s.wo();
    let k = s.n * plane;
    let mut a = vec![0.0f32; s.o.div_ceil(MR) * k * MR];
    a.par_chunks_mut(k * MR).enumerate().for_each(|(op, dst)| {
        for r in 0..MR.min(s.o - op * MR) {
            let o = op * MR + r;
            for n in 0..s.n {
                let src = (n * s.o + o) * plane;
                let g = &gy[src..src + plane];
                let d = &mut dst[n * plane * MR..(n + 1) * plane * MR];
                match relu_out {
                    Some(y) => {
                        let m = &y[src..src + plane];
                        for (p, (&gv, &mv)) in g.iter().zip(m).enumerate() {
                            d[p * MR + r] = if mv > 0.0 { gv } else { 0.0 };
                        }
                    }
                    None => {
                        for (p, &gv) in g.iter().enumerate() {
                            d[p * MR + r] = gv;
                        }
                    }
                }
            }
        }
    });
    a
}

/// Whether the GEMM formulation beats the row-dot kernel for `s`: output rows shorter than
/// this many vector lanes leave the row-dot kernel's vectors mostly idle.
pub(crate) fn preferred(s: &ConvShape) -> bool {
    s.wo() < 2 * LANES && s.c * TAPS >= LANES
}
