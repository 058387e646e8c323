//! Weight gradient of a 3 × 3, stride-1 convolution as dot products along output rows.
//!
//! `gw[o, c, i, j] = Σ_{n,oh,ow} gy[n, o, oh, ow] · xpad[n, c, oh + i, ow + j]`. The input is
//! copied once into zero-padded planes of width `wp`; the output gradient is read in place
//! (NCHW). For an output row `oh`, tap `(i, j)` pairs the gradient row with the padded input row
//! `oh + i` shifted by `j`. The AVX-512 kernel holds `3 output channels × 9 taps` of 16-lane
//! partial sums in 27 registers, reads the nine shifted input vectors straight from memory (no
//! packing) and masks the row tails. When the convolution had a fused ReLU, the gradient through
//! it (`gy · [y > 0]`) is applied on the fly from the forward output, so the masked gradient is
//! never materialised.

use crate::direct::pad_planes;
use crate::isa::Isa;
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Taps of a 3 × 3 kernel.
const TAPS: usize = 9;
/// Output channels per register block.
const RB: usize = 3;

/// Weight gradient `[o, c, 3, 3]` of the convolution `s` (3 × 3 kernel) from the input `x`
/// ([n, c, h, w]) and the output gradient `gy` ([n, o, ho, wo]); with `relu_out` (the forward
/// output, same shape as `gy`), `gy` is first masked by `relu_out > 0`.
pub(crate) fn weight_grad(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    debug_assert!(s.kh == 3 && s.kw == 3);
    let (wp, ho, wo) = (s.wp(), s.ho(), s.wo());
    // Slack for the vector loads past the last row (a row tail rounds up to 16 lanes).
    let (xp, stride) = pad_planes(x, s.n * s.c, s.h, s.w, s.pad, 2 * 16 + 2);
    let offs: [usize; TAPS] = std::array::from_fn(|t| (t / 3) * wp + t % 3);
    let rows = Rows { ho, wo, wp };
    let out_plane = ho * wo;

    let mut gw = vec![0.0f32; s.o * s.c * TAPS];
    let gwp = SharedMut(gw.as_mut_ptr());
    let blocks = s.o.div_ceil(RB);
    (0..blocks).into_par_iter().for_each(|blk| {
        let o0 = blk * RB;
        let nr = RB.min(s.o - o0);
        for n in 0..s.n {
            let g: [&[f32]; RB] = std::array::from_fn(|r| {
                let o = o0 + r.min(nr - 1);
                &gy[(n * s.o + o) * out_plane..][..out_plane]
            });
            let m: Option<[&[f32]; RB]> = relu_out.map(|y| {
                std::array::from_fn(|r| {
                    let o = o0 + r.min(nr - 1);
                    &y[(n * s.o + o) * out_plane..][..out_plane]
                })
            });
            for c in 0..s.c {
                let mut sums = [[0.0f32; TAPS]; RB];
                let xr = &xp[(n * s.c + c) * stride..][..stride];
                dots(
                    isa,
                    &g[..nr],
                    m.as_ref().map(|m| &m[..nr]),
                    xr,
                    &offs,
                    rows,
                    &mut sums,
                );
                for (r, sr) in sums.iter().take(nr).enumerate() {
                    let base = ((o0 + r) * s.c + c) * TAPS;
                    for (t, &v) in sr.iter().enumerate() {
                        // SAFETY: this task owns output channels o0..o0 + nr.
                        unsafe { *gwp.ptr().add(base + t) += v };
                    }
                }
            }
        }
    });
    gw
}

/// Output-row geometry for [`dots`].
#[derive(Clone, Copy)]
struct Rows {
    ho: usize,
    wo: usize,
    wp: usize,
}

/// `sums[r][t] = Σ_{oh, ow} g'[r][oh·wo + ow] · x[oh·wp + ow + offs[t]]` where `g' = g`, or
/// `g · [m > 0]` when `m` is given. `x` must hold `(ho - 1)·wp + wo.next_multiple_of(16) +
/// max(offs)` floats.
fn dots(
    isa: Isa,
    g: &[&[f32]],
    m: Option<&[&[f32]]>,
    x: &[f32],
    offs: &[usize; TAPS],
    rows: Rows,
    sums: &mut [[f32; TAPS]; RB],
) {
    let Rows { ho, wo, wp } = rows;
    assert!(x.len() >= (ho - 1) * wp + wo.next_multiple_of(16) + offs[TAPS - 1]);
    assert!(
        g.iter().all(|r| r.len() >= ho * wo)
            && m.is_none_or(|m| m.iter().all(|r| r.len() >= ho * wo))
    );
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        let gp: [*const f32; RB] = std::array::from_fn(|r| g[r.min(g.len() - 1)].as_ptr());
        let mp: Option<[*const f32; RB]> =
            m.map(|m| std::array::from_fn(|r| m[r.min(m.len() - 1)].as_ptr()));
        // SAFETY: AVX-512 is supported (the dispatch only passes supported levels), and the
        // extents were checked above.
        unsafe {
            match g.len() {
                3 => x86::rows3(gp, mp, x.as_ptr(), offs, rows, sums),
                2 => x86::rows2(gp, mp, x.as_ptr(), offs, rows, sums),
                _ => x86::rows1(gp, mp, x.as_ptr(), offs, rows, sums),
            }
        }
        return;
    }
    let _ = isa;
    for (r, gr) in g.iter().enumerate() {
        let mut acc = [0.0f32; TAPS];
        for oh in 0..ho {
            for ow in 0..wo {
                let q = oh * wo + ow;
                let gv = match m {
                    Some(m) if m[r][q] <= 0.0 => continue,
                    _ => gr[q],
                };
                let xb = oh * wp + ow;
                for (a, &off) in acc.iter_mut().zip(offs) {
                    *a += gv * x[xb + off];
                }
            }
        }
        sums[r] = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{RB, Rows, TAPS};
    use std::arch::x86_64::*;

    /// AVX-512 kernel for 1 output-gradient row(s): 9 zmm partial sums.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn rows1(
        g: [*const f32; RB],
        m: Option<[*const f32; RB]>,
        xp: *const f32,
        offs: &[usize; TAPS],
        rows: Rows,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let Rows { ho, wo, wp } = rows;
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let zero = _mm512_setzero_ps();
        let mut a00 = zero;
        let mut a01 = zero;
        let mut a02 = zero;
        let mut a03 = zero;
        let mut a04 = zero;
        let mut a05 = zero;
        let mut a06 = zero;
        let mut a07 = zero;
        let mut a08 = zero;
        // SAFETY: the caller checked that every read is in bounds; masked-off lanes are not read.
        unsafe {
            for oh in 0..ho {
                let xr = xp.add(oh * wp);
                let go = oh * wo;
                let mut ow = 0;
                while ow < wo {
                    let left = wo - ow;
                    let tail: __mmask16 = if left >= 16 {
                        0xffff
                    } else {
                        ((1u32 << left) - 1) as u16
                    };
                    let k0 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[0].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v0 = _mm512_maskz_loadu_ps(k0, g[0].add(go + ow));
                    let x0 = _mm512_loadu_ps(xr.add(ow + o0));
                    a00 = _mm512_fmadd_ps(v0, x0, a00);
                    let x1 = _mm512_loadu_ps(xr.add(ow + o1));
                    a01 = _mm512_fmadd_ps(v0, x1, a01);
                    let x2 = _mm512_loadu_ps(xr.add(ow + o2));
                    a02 = _mm512_fmadd_ps(v0, x2, a02);
                    let x3 = _mm512_loadu_ps(xr.add(ow + o3));
                    a03 = _mm512_fmadd_ps(v0, x3, a03);
                    let x4 = _mm512_loadu_ps(xr.add(ow + o4));
                    a04 = _mm512_fmadd_ps(v0, x4, a04);
                    let x5 = _mm512_loadu_ps(xr.add(ow + o5));
                    a05 = _mm512_fmadd_ps(v0, x5, a05);
                    let x6 = _mm512_loadu_ps(xr.add(ow + o6));
                    a06 = _mm512_fmadd_ps(v0, x6, a06);
                    let x7 = _mm512_loadu_ps(xr.add(ow + o7));
                    a07 = _mm512_fmadd_ps(v0, x7, a07);
                    let x8 = _mm512_loadu_ps(xr.add(ow + o8));
                    a08 = _mm512_fmadd_ps(v0, x8, a08);
                    ow += 16;
                }
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
    pub(super) unsafe fn rows2(
        g: [*const f32; RB],
        m: Option<[*const f32; RB]>,
        xp: *const f32,
        offs: &[usize; TAPS],
        rows: Rows,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let Rows { ho, wo, wp } = rows;
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let zero = _mm512_setzero_ps();
        let mut a00 = zero;
        let mut a01 = zero;
        let mut a02 = zero;
        let mut a03 = zero;
        let mut a04 = zero;
        let mut a05 = zero;
        let mut a06 = zero;
        let mut a07 = zero;
        let mut a08 = zero;
        let mut a10 = zero;
        let mut a11 = zero;
        let mut a12 = zero;
        let mut a13 = zero;
        let mut a14 = zero;
        let mut a15 = zero;
        let mut a16 = zero;
        let mut a17 = zero;
        let mut a18 = zero;
        // SAFETY: the caller checked that every read is in bounds; masked-off lanes are not read.
        unsafe {
            for oh in 0..ho {
                let xr = xp.add(oh * wp);
                let go = oh * wo;
                let mut ow = 0;
                while ow < wo {
                    let left = wo - ow;
                    let tail: __mmask16 = if left >= 16 {
                        0xffff
                    } else {
                        ((1u32 << left) - 1) as u16
                    };
                    let k0 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[0].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v0 = _mm512_maskz_loadu_ps(k0, g[0].add(go + ow));
                    let k1 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[1].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v1 = _mm512_maskz_loadu_ps(k1, g[1].add(go + ow));
                    let x0 = _mm512_loadu_ps(xr.add(ow + o0));
                    a00 = _mm512_fmadd_ps(v0, x0, a00);
                    a10 = _mm512_fmadd_ps(v1, x0, a10);
                    let x1 = _mm512_loadu_ps(xr.add(ow + o1));
                    a01 = _mm512_fmadd_ps(v0, x1, a01);
                    a11 = _mm512_fmadd_ps(v1, x1, a11);
                    let x2 = _mm512_loadu_ps(xr.add(ow + o2));
                    a02 = _mm512_fmadd_ps(v0, x2, a02);
                    a12 = _mm512_fmadd_ps(v1, x2, a12);
                    let x3 = _mm512_loadu_ps(xr.add(ow + o3));
                    a03 = _mm512_fmadd_ps(v0, x3, a03);
                    a13 = _mm512_fmadd_ps(v1, x3, a13);
                    let x4 = _mm512_loadu_ps(xr.add(ow + o4));
                    a04 = _mm512_fmadd_ps(v0, x4, a04);
                    a14 = _mm512_fmadd_ps(v1, x4, a14);
                    let x5 = _mm512_loadu_ps(xr.add(ow + o5));
                    a05 = _mm512_fmadd_ps(v0, x5, a05);
                    a15 = _mm512_fmadd_ps(v1, x5, a15);
                    let x6 = _mm512_loadu_ps(xr.add(ow + o6));
                    a06 = _mm512_fmadd_ps(v0, x6, a06);
                    a16 = _mm512_fmadd_ps(v1, x6, a16);
                    let x7 = _mm512_loadu_ps(xr.add(ow + o7));
                    a07 = _mm512_fmadd_ps(v0, x7, a07);
                    a17 = _mm512_fmadd_ps(v1, x7, a17);
                    let x8 = _mm512_loadu_ps(xr.add(ow + o8));
                    a08 = _mm512_fmadd_ps(v0, x8, a08);
                    a18 = _mm512_fmadd_ps(v1, x8, a18);
                    ow += 16;
                }
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
    pub(super) unsafe fn rows3(
        g: [*const f32; RB],
        m: Option<[*const f32; RB]>,
        xp: *const f32,
        offs: &[usize; TAPS],
        rows: Rows,
        sums: &mut [[f32; TAPS]; RB],
    ) {
        let Rows { ho, wo, wp } = rows;
        let [o0, o1, o2, o3, o4, o5, o6, o7, o8] = *offs;
        let zero = _mm512_setzero_ps();
        let mut a00 = zero;
        let mut a01 = zero;
        let mut a02 = zero;
        let mut a03 = zero;
        let mut a04 = zero;
        let mut a05 = zero;
        let mut a06 = zero;
        let mut a07 = zero;
        let mut a08 = zero;
        let mut a10 = zero;
        let mut a11 = zero;
        let mut a12 = zero;
        let mut a13 = zero;
        let mut a14 = zero;
        let mut a15 = zero;
        let mut a16 = zero;
        let mut a17 = zero;
        let mut a18 = zero;
        let mut a20 = zero;
        let mut a21 = zero;
        let mut a22 = zero;
        let mut a23 = zero;
        let mut a24 = zero;
        let mut a25 = zero;
        let mut a26 = zero;
        let mut a27 = zero;
        let mut a28 = zero;
        // SAFETY: the caller checked that every read is in bounds; masked-off lanes are not read.
        unsafe {
            for oh in 0..ho {
                let xr = xp.add(oh * wp);
                let go = oh * wo;
                let mut ow = 0;
                while ow < wo {
                    let left = wo - ow;
                    let tail: __mmask16 = if left >= 16 {
                        0xffff
                    } else {
                        ((1u32 << left) - 1) as u16
                    };
                    let k0 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[0].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v0 = _mm512_maskz_loadu_ps(k0, g[0].add(go + ow));
                    let k1 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[1].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v1 = _mm512_maskz_loadu_ps(k1, g[1].add(go + ow));
                    let k2 = match m {
                        Some(m) => _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(
                            tail,
                            _mm512_maskz_loadu_ps(tail, m[2].add(go + ow)),
                            zero,
                        ),
                        None => tail,
                    };
                    let v2 = _mm512_maskz_loadu_ps(k2, g[2].add(go + ow));
                    let x0 = _mm512_loadu_ps(xr.add(ow + o0));
                    a00 = _mm512_fmadd_ps(v0, x0, a00);
                    a10 = _mm512_fmadd_ps(v1, x0, a10);
                    a20 = _mm512_fmadd_ps(v2, x0, a20);
                    let x1 = _mm512_loadu_ps(xr.add(ow + o1));
                    a01 = _mm512_fmadd_ps(v0, x1, a01);
                    a11 = _mm512_fmadd_ps(v1, x1, a11);
                    a21 = _mm512_fmadd_ps(v2, x1, a21);
                    let x2 = _mm512_loadu_ps(xr.add(ow + o2));
                    a02 = _mm512_fmadd_ps(v0, x2, a02);
                    a12 = _mm512_fmadd_ps(v1, x2, a12);
                    a22 = _mm512_fmadd_ps(v2, x2, a22);
                    let x3 = _mm512_loadu_ps(xr.add(ow + o3));
                    a03 = _mm512_fmadd_ps(v0, x3, a03);
                    a13 = _mm512_fmadd_ps(v1, x3, a13);
                    a23 = _mm512_fmadd_ps(v2, x3, a23);
                    let x4 = _mm512_loadu_ps(xr.add(ow + o4));
                    a04 = _mm512_fmadd_ps(v0, x4, a04);
                    a14 = _mm512_fmadd_ps(v1, x4, a14);
                    a24 = _mm512_fmadd_ps(v2, x4, a24);
                    let x5 = _mm512_loadu_ps(xr.add(ow + o5));
                    a05 = _mm512_fmadd_ps(v0, x5, a05);
                    a15 = _mm512_fmadd_ps(v1, x5, a15);
                    a25 = _mm512_fmadd_ps(v2, x5, a25);
                    let x6 = _mm512_loadu_ps(xr.add(ow + o6));
                    a06 = _mm512_fmadd_ps(v0, x6, a06);
                    a16 = _mm512_fmadd_ps(v1, x6, a16);
                    a26 = _mm512_fmadd_ps(v2, x6, a26);
                    let x7 = _mm512_loadu_ps(xr.add(ow + o7));
                    a07 = _mm512_fmadd_ps(v0, x7, a07);
                    a17 = _mm512_fmadd_ps(v1, x7, a17);
                    a27 = _mm512_fmadd_ps(v2, x7, a27);
                    let x8 = _mm512_loadu_ps(xr.add(ow + o8));
                    a08 = _mm512_fmadd_ps(v0, x8, a08);
                    a18 = _mm512_fmadd_ps(v1, x8, a18);
                    a28 = _mm512_fmadd_ps(v2, x8, a28);
                    ow += 16;
                }
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
                let got = weight_grad(isa, &s, &x, &gy, None);
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
