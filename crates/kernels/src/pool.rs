//! Max-pooling with a `k × k` window and stride `k` (floor mode), forward and backward.
//!
//! The backward pass routes each output gradient to the first position (in row-major order) of
//! its window that holds the window's maximum, as PyTorch and TensorFlow do.

use crate::isa::Isa;
use rayon::prelude::*;

/// Forward: `x` is `planes` planes of `h × w`; returns `planes` planes of `(h / k) × (w / k)`.
pub(crate) fn forward(x: &[f32], planes: usize, h: usize, w: usize, k: usize) -> Vec<f32> {
    let (ho, wo) = (h / k, w / k);
    let mut y = vec![0.0f32; planes * ho * wo];
    if ho == 0 || wo == 0 {
        return y;
    }
    let fast = k == 2 && Isa::detect() == Isa::Avx512;
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for (oh, yrow) in yp.chunks_mut(wo).enumerate() {
                let rows = &xp[oh * k * w..(oh * k + k) * w];
                if fast {
                    #[cfg(target_arch = "x86_64")]
                    {
                        let (r0, r1) = rows.split_at(w);
                        // SAFETY: AVX-512 was detected; the rows hold 2·wo floats each.
                        unsafe { x86::forward2(r0, r1, yrow) };
                    }
                } else if k == 2 {
                    let (r0, r1) = rows.split_at(w);
                    for (ow, out) in yrow.iter_mut().enumerate() {
                        let a = r0[2 * ow].max(r0[2 * ow + 1]);
                        let b = r1[2 * ow].max(r1[2 * ow + 1]);
                        *out = a.max(b);
                    }
                } else {
                    for (ow, out) in yrow.iter_mut().enumerate() {
                        let mut m = f32::NEG_INFINITY;
                        for r in 0..k {
                            for &v in &rows[r * w + ow * k..r * w + ow * k + k] {
                                m = m.max(v);
                            }
                        }
                        *out = m;
                    }
                }
            }
        });
    y
}

/// Backward: the input gradient for `x` given the output gradient `gy`.
pub(crate) fn backward(
    x: &[f32],
    gy: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    k: usize,
) -> Vec<f32> {
    let (ho, wo) = (h / k, w / k);
    let mut gx = vec![0.0f32; planes * h * w];
    if ho == 0 || wo == 0 {
        return gx;
    }
    let fast = k == 2 && Isa::detect() == Isa::Avx512;
    gx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(gy.par_chunks(ho * wo))
        .for_each(|((gxp, xp), gyp)| {
            for oh in 0..ho {
                if fast {
                    #[cfg(target_arch = "x86_64")]
                    {
                        let (g0, g1) = gxp[2 * oh * w..(2 * oh + 2) * w].split_at_mut(w);
                        let (r0, r1) = xp[2 * oh * w..(2 * oh + 2) * w].split_at(w);
                        // SAFETY: AVX-512 was detected; every row holds 2·wo floats.
                        unsafe { x86::backward2(r0, r1, &gyp[oh * wo..(oh + 1) * wo], g0, g1) };
                    }
                    continue;
                }
                for ow in 0..wo {
                    let mut best = (oh * k) * w + ow * k;
                    let mut m = xp[best];
                    for r in 0..k {
                        let base = (oh * k + r) * w + ow * k;
                        for (j, &v) in xp[base..base + k].iter().enumerate() {
                            if v > m {
                                m = v;
                                best = base + j;
                            }
                        }
                    }
                    gxp[best] = gyp[oh * wo + ow];
                }
            }
        });
    gx
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Lane masks for `n` (≤ 16) outputs: the two input vectors and the output vector.
    fn masks(n: usize) -> (__mmask16, __mmask16, __mmask16) {
        let bits = |m: usize| {
            if m >= 16 {
                0xffff
            } else {
                ((1u32 << m) - 1) as u16
            }
        };
        (bits(2 * n), bits((2 * n).saturating_sub(16)), bits(n))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    fn even_odd_idx() -> (__m512i, __m512i) {
        (
            _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
            _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31),
        )
    }

    /// `y[i] = max(r0[2i], r0[2i + 1], r1[2i], r1[2i + 1])` for `i < y.len()`.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn forward2(r0: &[f32], r1: &[f32], y: &mut [f32]) {
        let wo = y.len();
        assert!(r0.len() >= 2 * wo && r1.len() >= 2 * wo);
        let (ie, io) = even_odd_idx();
        let mut i = 0;
        while i < wo {
            let (ma, mb, my) = masks(wo - i);
            // SAFETY: masked lanes stay inside the rows and the output.
            unsafe {
                let a0 = _mm512_maskz_loadu_ps(ma, r0.as_ptr().add(2 * i));
                let b0 = _mm512_maskz_loadu_ps(mb, r0.as_ptr().add(2 * i + 16));
                let a1 = _mm512_maskz_loadu_ps(ma, r1.as_ptr().add(2 * i));
                let b1 = _mm512_maskz_loadu_ps(mb, r1.as_ptr().add(2 * i + 16));
                let m0 = _mm512_max_ps(
                    _mm512_permutex2var_ps(a0, ie, b0),
                    _mm512_permutex2var_ps(a0, io, b0),
                );
                let m1 = _mm512_max_ps(
                    _mm512_permutex2var_ps(a1, ie, b1),
                    _mm512_permutex2var_ps(a1, io, b1),
                );
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), my, _mm512_max_ps(m0, m1));
            }
            i += 16;
        }
    }

    /// Routes `gy[i]` to the first maximum of window `i` (row-major) of the rows `r0`, `r1`;
    /// writes every element of `g0[..2·len]` and `g1[..2·len]`.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn backward2(
        r0: &[f32],
        r1: &[f32],
        gy: &[f32],
        g0: &mut [f32],
        g1: &mut [f32],
    ) {
        let wo = gy.len();
        assert!(r0.len() >= 2 * wo && r1.len() >= 2 * wo);
        assert!(g0.len() >= 2 * wo && g1.len() >= 2 * wo);
        let (ie, io) = even_odd_idx();
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let mut i = 0;
        while i < wo {
            let (ma, mb, my) = masks(wo - i);
            // SAFETY: masked lanes stay inside the rows and the gradients.
            unsafe {
                let a0 = _mm512_maskz_loadu_ps(ma, r0.as_ptr().add(2 * i));
                let b0 = _mm512_maskz_loadu_ps(mb, r0.as_ptr().add(2 * i + 16));
                let a1 = _mm512_maskz_loadu_ps(ma, r1.as_ptr().add(2 * i));
                let b1 = _mm512_maskz_loadu_ps(mb, r1.as_ptr().add(2 * i + 16));
                let (e0, o0) = (
                    _mm512_permutex2var_ps(a0, ie, b0),
                    _mm512_permutex2var_ps(a0, io, b0),
                );
                let (e1, o1) = (
                    _mm512_permutex2var_ps(a1, ie, b1),
                    _mm512_permutex2var_ps(a1, io, b1),
                );
                let m = _mm512_max_ps(_mm512_max_ps(e0, o0), _mm512_max_ps(e1, o1));
                let g = _mm512_maskz_loadu_ps(my, gy.as_ptr().add(i));
                let s0 = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(e0, m);
                let s1 = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(o0, m) & !s0;
                let s2 = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(e1, m) & !(s0 | s1);
                let s3 = !(s0 | s1 | s2);
                let (ge0, go0) = (_mm512_maskz_mov_ps(s0, g), _mm512_maskz_mov_ps(s1, g));
                let (ge1, go1) = (_mm512_maskz_mov_ps(s2, g), _mm512_maskz_mov_ps(s3, g));
                _mm512_mask_storeu_ps(
                    g0.as_mut_ptr().add(2 * i),
                    ma,
                    _mm512_permutex2var_ps(ge0, lo, go0),
                );
                _mm512_mask_storeu_ps(
                    g0.as_mut_ptr().add(2 * i + 16),
                    mb,
                    _mm512_permutex2var_ps(ge0, hi, go0),
                );
                _mm512_mask_storeu_ps(
                    g1.as_mut_ptr().add(2 * i),
                    ma,
                    _mm512_permutex2var_ps(ge1, lo, go1),
                );
                _mm512_mask_storeu_ps(
                    g1.as_mut_ptr().add(2 * i + 16),
                    mb,
                    _mm512_permutex2var_ps(ge1, hi, go1),
                );
            }
            i += 16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_maximum_gets_the_gradient() {
        // One 3 × 5 plane, k = 2: a 1 × 2 output; the last row and column are dropped.
        let x = [
            1.0, 4.0, 4.0, 0.0, 9.0, //
            4.0, 2.0, 3.0, 4.0, 9.0, //
            9.0, 9.0, 9.0, 9.0, 9.0,
        ];
        let y = forward(&x, 1, 3, 5, 2);
        assert_eq!(y, vec![4.0, 4.0]);
        let gx = backward(&x, &[1.0, 2.0], 1, 3, 5, 2);
        let mut want = [0.0f32; 15];
        want[1] = 1.0;
        want[2] = 2.0;
        assert_eq!(gx.as_slice(), want.as_slice());
    }

    #[test]
    fn general_window() {
        let x: Vec<f32> = (0..2 * 7 * 7).map(|i| ((i * 31) % 17) as f32).collect();
        let y = forward(&x, 2, 7, 7, 3);
        for p in 0..2 {
            for oh in 0..2 {
                for ow in 0..2 {
                    let mut m = f32::NEG_INFINITY;
                    for r in 0..3 {
                        for c in 0..3 {
                            m = m.max(x[p * 49 + (oh * 3 + r) * 7 + ow * 3 + c]);
                        }
                    }
                    assert_eq!(y[p * 4 + oh * 2 + ow], m);
                }
            }
        }
    }
}
