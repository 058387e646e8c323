//! Weight gradient of a 3 × 3, stride-1 convolution as dot products along pixels.
//!
//! `gw[o, c, i, j] = Σ_{n,oh,ow} gy[n, o, oh, ow] · xpad[n, c, oh + i, ow + j]`. Both operands are
//! laid out channel-major across the whole batch in padded-width form (`[channel][n][hp·wp]`,
//! output gradient zero outside the valid `ho × wo` pixels). Then every tap `(i, j)` is the dot
//! product of an output-gradient row with the input row shifted by `i·wp + j`, over the whole
//! batch at once. The AVX-512 kernel holds `3 output channels × 9 taps` of 16-lane partial sums
//! in 27 registers and reads the nine shifted input vectors straight from memory; no packing.

use crate::isa::Isa;
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Taps of a 3 × 3 kernel.
const TAPS: usize = 9;
/// Output channels per register block.
const RB: usize = 3;
/// Pixels per cache block.
const QC: usize = 4096;

/// Weight gradient `[o, c, 3, 3]` of the convolution `s` (3 × 3 kernel) from the input `x`
/// ([n, c, h, w]) and the output gradient `gy` ([n, o, ho, wo]).
pub(crate) fn weight_grad(isa: Isa, s: &ConvShape, x: &[f32], gy: &[f32]) -> Vec<f32> {
    debug_assert!(s.kh == 3 && s.kw == 3);
    let (hp, wp, ho, wo) = (s.hp(), s.wp(), s.ho(), s.wo());
    let plane = hp * wp;
    let len = (s.n * plane).div_ceil(16) * 16;
    let slack = 2 * wp + 2 + 16;
    let xrow = len + slack;

    // Input, channel-major, zero-padded.
    let mut xc = vec![0.0f32; s.c * xrow];
    xc.par_chunks_mut(xrow).enumerate().for_each(|(c, dst)| {
        for n in 0..s.n {
            let src = &x[(n * s.c + c) * s.h * s.w..][..s.h * s.w];
            for r in 0..s.h {
                let d = n * plane + (r + s.pad) * wp + s.pad;
                dst[d..d + s.w].copy_from_slice(&src[r * s.w..r * s.w + s.w]);
            }
        }
    });
    // Output gradient, channel-major, in padded-width columns.
    let mut gc = vec![0.0f32; s.o * len];
    gc.par_chunks_mut(len).enumerate().for_each(|(o, dst)| {
        for n in 0..s.n {
            let src = &gy[(n * s.o + o) * ho * wo..][..ho * wo];
            for r in 0..ho {
                let d = n * plane + r * wp;
                dst[d..d + wo].copy_from_slice(&src[r * wo..r * wo + wo]);
            }
        }
    });

    let offs: [usize; TAPS] = std::array::from_fn(|t| (t / 3) * wp + t % 3);
    let mut gw = vec![0.0f32; s.o * s.c * TAPS];
    let gwp = SharedMut(gw.as_mut_ptr());
    let blocks = s.o.div_ceil(RB);
    (0..blocks).into_par_iter().for_each(|blk| {
        let o0 = blk * RB;
        let rows = RB.min(s.o - o0);
        for q0 in (0..len).step_by(QC) {
            let qn = QC.min(len - q0);
            for c in 0..s.c {
                let mut sums = [[0.0f32; TAPS]; RB];
                let xr = &xc[c * xrow + q0..];
                let g: [&[f32]; RB] = std::array::from_fn(|r| {
                    let o = o0 + r.min(rows - 1);
                    &gc[o * len + q0..o * len + q0 + qn]
                });
                dots(isa, &g[..rows], xr, &offs, qn, &mut sums);
                for (r, sr) in sums.iter().take(rows).enumerate() {
                    let base = ((o0 + r) * s.c + c) * TAPS;
                    for (t, &v) in sr.iter().enumerate() {
                        // SAFETY: this task owns output channels o0..o0 + rows.
                        unsafe { *gwp.ptr().add(base + t) += v };
                    }
                }
            }
        }
    });
    gw
}

/// `sums[r][t] = Σ_{q < qn} g[r][q] · x[q + offs[t]]`; `qn` is a multiple of 16 and `x` holds at
/// least `qn + max(offs)` floats.
fn dots(
    isa: Isa,
    g: &[&[f32]],
    x: &[f32],
    offs: &[usize; TAPS],
    qn: usize,
    sums: &mut [[f32; TAPS]; RB],
) {
    debug_assert!(qn.is_multiple_of(16) && x.len() >= qn + offs[TAPS - 1]);
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: AVX-512 is supported (the dispatch only passes supported levels), and the
        // extents were checked above.
        unsafe {
            match g.len() {
                3 => x86::dots3(g, x, offs, qn, sums),
                2 => x86::dots2(g, x, offs, qn, sums),
                _ => x86::dots1(g, x, offs, qn, sums),
            }
        }
        return;
    }
    let _ = isa;
    for (r, gr) in g.iter().enumerate() {
        for (t, &off) in offs.iter().enumerate() {
            let mut lanes = [0.0f32; 16];
            for (gq, xq) in gr[..qn]
                .chunks_exact(16)
                .zip(x[off..off + qn].chunks_exact(16))
            {
                for l in 0..16 {
                    lanes[l] += gq[l] * xq[l];
                }
            }
            sums[r][t] = lanes.iter().sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{RB, TAPS};
    use std::arch::x86_64::*;

    /// AVX-512 kernel for 1 output-gradient row(s): 9 zmm partial sums.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn dots1(
        g: &[&[f32]],
        x: &[f32],
        offs: &[usize; TAPS],
        qn: usize,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let g0 = g[0].as_ptr();
        let xp = x.as_ptr();
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let mut a00 = _mm512_setzero_ps();
        let mut a01 = _mm512_setzero_ps();
        let mut a02 = _mm512_setzero_ps();
        let mut a03 = _mm512_setzero_ps();
        let mut a04 = _mm512_setzero_ps();
        let mut a05 = _mm512_setzero_ps();
        let mut a06 = _mm512_setzero_ps();
        let mut a07 = _mm512_setzero_ps();
        let mut a08 = _mm512_setzero_ps();
        // SAFETY: the caller checked that every read is in bounds.
        unsafe {
            let mut q = 0;
            while q < qn {
                let v0 = _mm512_loadu_ps(g0.add(q));
                let x0 = _mm512_loadu_ps(xp.add(q + o0));
                a00 = _mm512_fmadd_ps(v0, x0, a00);
                let x1 = _mm512_loadu_ps(xp.add(q + o1));
                a01 = _mm512_fmadd_ps(v0, x1, a01);
                let x2 = _mm512_loadu_ps(xp.add(q + o2));
                a02 = _mm512_fmadd_ps(v0, x2, a02);
                let x3 = _mm512_loadu_ps(xp.add(q + o3));
                a03 = _mm512_fmadd_ps(v0, x3, a03);
                let x4 = _mm512_loadu_ps(xp.add(q + o4));
                a04 = _mm512_fmadd_ps(v0, x4, a04);
                let x5 = _mm512_loadu_ps(xp.add(q + o5));
                a05 = _mm512_fmadd_ps(v0, x5, a05);
                let x6 = _mm512_loadu_ps(xp.add(q + o6));
                a06 = _mm512_fmadd_ps(v0, x6, a06);
                let x7 = _mm512_loadu_ps(xp.add(q + o7));
                a07 = _mm512_fmadd_ps(v0, x7, a07);
                let x8 = _mm512_loadu_ps(xp.add(q + o8));
                a08 = _mm512_fmadd_ps(v0, x8, a08);
                q += 16;
            }
        }
        sums[0] = [
            _mm512_reduce_add_ps(a00),
            _mm512_reduce_add_ps(a01),
            _mm512_reduce_add_ps(a02),
            _mm512_reduce_add_ps(a03),
            _mm512_reduce_add_ps(a04),
            _mm512_reduce_add_ps(a05),
            _mm512_reduce_add_ps(a06),
            _mm512_reduce_add_ps(a07),
            _mm512_reduce_add_ps(a08),
        ];
    }

    /// AVX-512 kernel for 2 output-gradient row(s): 18 zmm partial sums.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn dots2(
        g: &[&[f32]],
        x: &[f32],
        offs: &[usize; TAPS],
        qn: usize,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let g0 = g[0].as_ptr();
        let g1 = g[1].as_ptr();
        let xp = x.as_ptr();
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let mut a00 = _mm512_setzero_ps();
        let mut a01 = _mm512_setzero_ps();
        let mut a02 = _mm512_setzero_ps();
        let mut a03 = _mm512_setzero_ps();
        let mut a04 = _mm512_setzero_ps();
        let mut a05 = _mm512_setzero_ps();
        let mut a06 = _mm512_setzero_ps();
        let mut a07 = _mm512_setzero_ps();
        let mut a08 = _mm512_setzero_ps();
        let mut a10 = _mm512_setzero_ps();
        let mut a11 = _mm512_setzero_ps();
        let mut a12 = _mm512_setzero_ps();
        let mut a13 = _mm512_setzero_ps();
        let mut a14 = _mm512_setzero_ps();
        let mut a15 = _mm512_setzero_ps();
        let mut a16 = _mm512_setzero_ps();
        let mut a17 = _mm512_setzero_ps();
        let mut a18 = _mm512_setzero_ps();
        // SAFETY: the caller checked that every read is in bounds.
        unsafe {
            let mut q = 0;
            while q < qn {
                let v0 = _mm512_loadu_ps(g0.add(q));
                let v1 = _mm512_loadu_ps(g1.add(q));
                let x0 = _mm512_loadu_ps(xp.add(q + o0));
                a00 = _mm512_fmadd_ps(v0, x0, a00);
                a10 = _mm512_fmadd_ps(v1, x0, a10);
                let x1 = _mm512_loadu_ps(xp.add(q + o1));
                a01 = _mm512_fmadd_ps(v0, x1, a01);
                a11 = _mm512_fmadd_ps(v1, x1, a11);
                let x2 = _mm512_loadu_ps(xp.add(q + o2));
                a02 = _mm512_fmadd_ps(v0, x2, a02);
                a12 = _mm512_fmadd_ps(v1, x2, a12);
                let x3 = _mm512_loadu_ps(xp.add(q + o3));
                a03 = _mm512_fmadd_ps(v0, x3, a03);
                a13 = _mm512_fmadd_ps(v1, x3, a13);
                let x4 = _mm512_loadu_ps(xp.add(q + o4));
                a04 = _mm512_fmadd_ps(v0, x4, a04);
                a14 = _mm512_fmadd_ps(v1, x4, a14);
                let x5 = _mm512_loadu_ps(xp.add(q + o5));
                a05 = _mm512_fmadd_ps(v0, x5, a05);
                a15 = _mm512_fmadd_ps(v1, x5, a15);
                let x6 = _mm512_loadu_ps(xp.add(q + o6));
                a06 = _mm512_fmadd_ps(v0, x6, a06);
                a16 = _mm512_fmadd_ps(v1, x6, a16);
                let x7 = _mm512_loadu_ps(xp.add(q + o7));
                a07 = _mm512_fmadd_ps(v0, x7, a07);
                a17 = _mm512_fmadd_ps(v1, x7, a17);
                let x8 = _mm512_loadu_ps(xp.add(q + o8));
                a08 = _mm512_fmadd_ps(v0, x8, a08);
                a18 = _mm512_fmadd_ps(v1, x8, a18);
                q += 16;
            }
        }
        sums[0] = [
            _mm512_reduce_add_ps(a00),
            _mm512_reduce_add_ps(a01),
            _mm512_reduce_add_ps(a02),
            _mm512_reduce_add_ps(a03),
            _mm512_reduce_add_ps(a04),
            _mm512_reduce_add_ps(a05),
            _mm512_reduce_add_ps(a06),
            _mm512_reduce_add_ps(a07),
            _mm512_reduce_add_ps(a08),
        ];
        sums[1] = [
            _mm512_reduce_add_ps(a10),
            _mm512_reduce_add_ps(a11),
            _mm512_reduce_add_ps(a12),
            _mm512_reduce_add_ps(a13),
            _mm512_reduce_add_ps(a14),
            _mm512_reduce_add_ps(a15),
            _mm512_reduce_add_ps(a16),
            _mm512_reduce_add_ps(a17),
            _mm512_reduce_add_ps(a18),
        ];
    }

    /// AVX-512 kernel for 3 output-gradient row(s): 27 zmm partial sums.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn dots3(
        g: &[&[f32]],
        x: &[f32],
        offs: &[usize; TAPS],
        qn: usize,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let g0 = g[0].as_ptr();
        let g1 = g[1].as_ptr();
        let g2 = g[2].as_ptr();
        let xp = x.as_ptr();
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let mut a00 = _mm512_setzero_ps();
        let mut a01 = _mm512_setzero_ps();
        let mut a02 = _mm512_setzero_ps();
        let mut a03 = _mm512_setzero_ps();
        let mut a04 = _mm512_setzero_ps();
        let mut a05 = _mm512_setzero_ps();
        let mut a06 = _mm512_setzero_ps();
        let mut a07 = _mm512_setzero_ps();
        let mut a08 = _mm512_setzero_ps();
        let mut a10 = _mm512_setzero_ps();
        let mut a11 = _mm512_setzero_ps();
        let mut a12 = _mm512_setzero_ps();
        let mut a13 = _mm512_setzero_ps();
        let mut a14 = _mm512_setzero_ps();
        let mut a15 = _mm512_setzero_ps();
        let mut a16 = _mm512_setzero_ps();
        let mut a17 = _mm512_setzero_ps();
        let mut a18 = _mm512_setzero_ps();
        let mut a20 = _mm512_setzero_ps();
        let mut a21 = _mm512_setzero_ps();
        let mut a22 = _mm512_setzero_ps();
        let mut a23 = _mm512_setzero_ps();
        let mut a24 = _mm512_setzero_ps();
        let mut a25 = _mm512_setzero_ps();
        let mut a26 = _mm512_setzero_ps();
        let mut a27 = _mm512_setzero_ps();
        let mut a28 = _mm512_setzero_ps();
        // SAFETY: the caller checked that every read is in bounds.
        unsafe {
            let mut q = 0;
            while q < qn {
                let v0 = _mm512_loadu_ps(g0.add(q));
                let v1 = _mm512_loadu_ps(g1.add(q));
                let v2 = _mm512_loadu_ps(g2.add(q));
                let x0 = _mm512_loadu_ps(xp.add(q + o0));
                a00 = _mm512_fmadd_ps(v0, x0, a00);
                a10 = _mm512_fmadd_ps(v1, x0, a10);
                a20 = _mm512_fmadd_ps(v2, x0, a20);
                let x1 = _mm512_loadu_ps(xp.add(q + o1));
                a01 = _mm512_fmadd_ps(v0, x1, a01);
                a11 = _mm512_fmadd_ps(v1, x1, a11);
                a21 = _mm512_fmadd_ps(v2, x1, a21);
                let x2 = _mm512_loadu_ps(xp.add(q + o2));
                a02 = _mm512_fmadd_ps(v0, x2, a02);
                a12 = _mm512_fmadd_ps(v1, x2, a12);
                a22 = _mm512_fmadd_ps(v2, x2, a22);
                let x3 = _mm512_loadu_ps(xp.add(q + o3));
                a03 = _mm512_fmadd_ps(v0, x3, a03);
                a13 = _mm512_fmadd_ps(v1, x3, a13);
                a23 = _mm512_fmadd_ps(v2, x3, a23);
                let x4 = _mm512_loadu_ps(xp.add(q + o4));
                a04 = _mm512_fmadd_ps(v0, x4, a04);
                a14 = _mm512_fmadd_ps(v1, x4, a14);
                a24 = _mm512_fmadd_ps(v2, x4, a24);
                let x5 = _mm512_loadu_ps(xp.add(q + o5));
                a05 = _mm512_fmadd_ps(v0, x5, a05);
                a15 = _mm512_fmadd_ps(v1, x5, a15);
                a25 = _mm512_fmadd_ps(v2, x5, a25);
                let x6 = _mm512_loadu_ps(xp.add(q + o6));
                a06 = _mm512_fmadd_ps(v0, x6, a06);
                a16 = _mm512_fmadd_ps(v1, x6, a16);
                a26 = _mm512_fmadd_ps(v2, x6, a26);
                let x7 = _mm512_loadu_ps(xp.add(q + o7));
                a07 = _mm512_fmadd_ps(v0, x7, a07);
                a17 = _mm512_fmadd_ps(v1, x7, a17);
                a27 = _mm512_fmadd_ps(v2, x7, a27);
                let x8 = _mm512_loadu_ps(xp.add(q + o8));
                a08 = _mm512_fmadd_ps(v0, x8, a08);
                a18 = _mm512_fmadd_ps(v1, x8, a18);
                a28 = _mm512_fmadd_ps(v2, x8, a28);
                q += 16;
            }
        }
        sums[0] = [
            _mm512_reduce_add_ps(a00),
            _mm512_reduce_add_ps(a01),
            _mm512_reduce_add_ps(a02),
            _mm512_reduce_add_ps(a03),
            _mm512_reduce_add_ps(a04),
            _mm512_reduce_add_ps(a05),
            _mm512_reduce_add_ps(a06),
            _mm512_reduce_add_ps(a07),
            _mm512_reduce_add_ps(a08),
        ];
        sums[1] = [
            _mm512_reduce_add_ps(a10),
            _mm512_reduce_add_ps(a11),
            _mm512_reduce_add_ps(a12),
            _mm512_reduce_add_ps(a13),
            _mm512_reduce_add_ps(a14),
            _mm512_reduce_add_ps(a15),
            _mm512_reduce_add_ps(a16),
            _mm512_reduce_add_ps(a17),
            _mm512_reduce_add_ps(a18),
        ];
        sums[2] = [
            _mm512_reduce_add_ps(a20),
            _mm512_reduce_add_ps(a21),
            _mm512_reduce_add_ps(a22),
            _mm512_reduce_add_ps(a23),
            _mm512_reduce_add_ps(a24),
            _mm512_reduce_add_ps(a25),
            _mm512_reduce_add_ps(a26),
            _mm512_reduce_add_ps(a27),
            _mm512_reduce_add_ps(a28),
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(s: &ConvShape, x: &[f32], gy: &[f32]) -> Vec<f32> {
        let (ho, wo) = (s.ho(), s.wo());
        let mut gw = vec![0.0f32; s.o * s.c * 9];
        for o in 0..s.o {
            for c in 0..s.c {
                for i in 0..3 {
                    for j in 0..3 {
                        let mut acc = 0.0f64;
                        for n in 0..s.n {
                            for oh in 0..ho {
                                for ow in 0..wo {
                                    let ih = (oh + i) as isize - s.pad as isize;
                                    let iw = (ow + j) as isize - s.pad as isize;
                                    if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize
                                    {
                                        continue;
                                    }
                                    acc += gy[((n * s.o + o) * ho + oh) * wo + ow] as f64
                                        * x[((n * s.c + c) * s.h + ih as usize) * s.w + iw as usize]
                                            as f64;
                                }
                            }
                        }
                        gw[(o * s.c + c) * 9 + i * 3 + j] = acc as f32;
                    }
                }
            }
        }
        gw
    }

    #[test]
    fn matches_naive_for_every_isa() {
        for s in [
            ConvShape {
                n: 2,
                c: 3,
                h: 9,
                w: 7,
                o: 5,
                kh: 3,
                kw: 3,
                pad: 1,
            },
            ConvShape {
                n: 3,
                c: 4,
                h: 12,
                w: 13,
                o: 7,
                kh: 3,
                kw: 3,
                pad: 0,
            },
            ConvShape {
                n: 1,
                c: 2,
                h: 5,
                w: 5,
                o: 2,
                kh: 3,
                kw: 3,
                pad: 2,
            },
        ] {
            let x: Vec<f32> = (0..s.n * s.c * s.h * s.w)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let gy: Vec<f32> = (0..s.n * s.o * s.ho() * s.wo())
                .map(|i| ((i * 13) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let want = naive(&s, &x, &gy);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                let got = weight_grad(isa, &s, &x, &gy);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{isa:?} {s:?}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
