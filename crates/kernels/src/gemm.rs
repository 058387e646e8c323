//! Packed single-precision GEMM micro-kernels.
//!
//! Every convolution algorithm in the crate reduces to many small products
//! `C[MR × w] (+)= A[MR × kc] · B[kc × w]` where `A` is packed as `[kc][MR]` (one column of `MR`
//! values per reduction step, broadcast lane by lane) and `B` is packed as `[kc][w]` with
//! `w ∈ {16, 32, 48}` (vector loads). The AVX-512 kernel keeps the whole `8 × 48` tile in 24
//! registers; the AVX2 kernel walks it in `4 × 24` pieces; the portable kernel is plain Rust.

use crate::isa::Isa;

/// Rows of a micro-tile (output channels for convolutions).
pub(crate) const MR: usize = 8;
/// Widest panel of `B` (three 16-lane vectors).
pub(crate) const NR: usize = 48;
/// Panel widths are multiples of this many lanes.
pub(crate) const LANES: usize = 16;

/// Width of the packed panel that holds `cols` (≤ [`NR`]) columns: `cols` rounded up to 16.
pub(crate) fn panel_width(cols: usize) -> usize {
    debug_assert!(cols > 0 && cols <= NR);
    cols.div_ceil(LANES) * LANES
}

/// Packs the `m × k` row-major matrix `a` (row stride `lda`) into panels of [`MR`] rows laid out
/// `[panel][k][MR]`, zero-filling the rows past `m`.
pub(crate) fn pack_a(a: &[f32], m: usize, k: usize, lda: usize) -> Vec<f32> {
    let panels = m.div_ceil(MR);
    let mut out = vec![0.0f32; panels * k * MR];
    for (p, dst) in out.chunks_mut(k * MR).enumerate() {
        for i in 0..MR {
            let row = p * MR + i;
            if row >= m {
                break;
            }
            let src = &a[row * lda..row * lda + k];
            for (kk, &v) in src.iter().enumerate() {
                dst[kk * MR + i] = v;
            }
        }
    }
    out
}

/// `C[MR × w] (+)= A[kc][MR] · B[kc][w]`.
///
/// # Safety
/// `a` must hold `kc * MR` floats, `b` must hold `kc * w` floats, `c` must address `MR` rows of
/// `w` writable floats with row stride `ldc`, `w` must be 16, 32 or 48, and `isa` must be
/// supported by the running CPU.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro(
    isa: Isa,
    kc: usize,
    a: *const f32,
    b: *const f32,
    w: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    debug_assert!(w == 16 || w == 32 || w == 48);
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => match w {
                48 => x86::avx512_w48(kc, a, b, c, ldc, accumulate),
                32 => x86::avx512_w32(kc, a, b, c, ldc, accumulate),
                _ => x86::avx512_w16(kc, a, b, c, ldc, accumulate),
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::avx2(kc, a, b, w, c, ldc, accumulate),
            _ => portable(kc, a, b, w, c, ldc, accumulate),
        }
    }
}

/// Plain-Rust micro-kernel.
///
/// # Safety
/// See [`micro`].
unsafe fn portable(
    kc: usize,
    a: *const f32,
    b: *const f32,
    w: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the caller guarantees the extents of `a`, `b` and `c`.
    unsafe {
        let a = std::slice::from_raw_parts(a, kc * MR);
        let b = std::slice::from_raw_parts(b, kc * w);
        for k in 0..kc {
            let bk = &b[k * w..k * w + w];
            for (i, row) in acc.iter_mut().enumerate() {
                let av = a[k * MR + i];
                for (r, &bv) in row[..w].iter_mut().zip(bk) {
                    *r += av * bv;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let dst = std::slice::from_raw_parts_mut(c.add(i * ldc), w);
            if accumulate {
                for (d, &r) in dst.iter_mut().zip(&row[..w]) {
                    *d += r;
                }
            } else {
                dst.copy_from_slice(&row[..w]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::MR;
    use std::arch::x86_64::*;

    /// Row `i` of the tile gets `av · b` for every vector `v` of the panel.
    macro_rules! avx512_row {
        ($acc:ident, $av:ident, $bv:ident, $i:literal, [$($v:literal)*]) => {
            $( $acc[$i][$v] = _mm512_fmadd_ps($av, $bv[$v], $acc[$i][$v]); )*
        };
    }

    /// One reduction step of the AVX-512 kernel: row `i` of the tile gets `a[i] · b`.
    macro_rules! avx512_rows {
        ($acc:ident, $ap:ident, $bv:ident, $vs:tt; $($i:literal)*) => {
            $(
                let av = _mm512_set1_ps(*$ap.add($i));
                avx512_row!($acc, av, $bv, $i, $vs);
            )*
        };
    }

    /// AVX-512 kernels: an `8 × 16·NV` tile in `8·NV` zmm accumulators.
    macro_rules! avx512_kernel {
        ($name:ident, $nv:literal, [$($v:literal)*]) => {
            #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
            pub(super) unsafe fn $name(
                kc: usize,
                a: *const f32,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                accumulate: bool,
            ) {
                const W: usize = $nv * 16;
                let zero = _mm512_setzero_ps();
                let mut acc = [[zero; $nv]; MR];
                // SAFETY: the caller guarantees the extents of `a`, `b` and `c`.
                unsafe {
                    let mut ap = a;
                    let mut bp = b;
                    for _ in 0..kc {
                        let mut bv = [zero; $nv];
                        $( bv[$v] = _mm512_loadu_ps(bp.add($v * 16)); )*
                        avx512_rows!(acc, ap, bv, [$($v)*]; 0 1 2 3 4 5 6 7);
                        ap = ap.add(MR);
                        bp = bp.add(W);
                    }
                    for (i, row) in acc.iter().enumerate() {
                        for (v, &r) in row.iter().enumerate() {
                            let p = c.add(i * ldc + v * 16);
                            let r = if accumulate {
                                _mm512_add_ps(_mm512_loadu_ps(p), r)
                            } else {
                                r
                            };
                            _mm512_storeu_ps(p, r);
                        }
                    }
                }
            }
        };
    }

    avx512_kernel!(avx512_w16, 1, [0]);
    avx512_kernel!(avx512_w32, 2, [0 1]);
    avx512_kernel!(avx512_w48, 3, [0 1 2]);

    /// AVX2 kernel: `4 × 8·NY` pieces of the tile.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_piece<const NY: usize>(
        kc: usize,
        a: *const f32,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NY]; 4];
        // SAFETY: the caller guarantees the extents of `a`, `b` and `c`.
        unsafe {
            let mut ap = a;
            let mut bp = b;
            for _ in 0..kc {
                let mut bv = [_mm256_setzero_ps(); NY];
                for (v, slot) in bv.iter_mut().enumerate() {
                    *slot = _mm256_loadu_ps(bp.add(v * 8));
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*ap.add(i));
                    for (r, &bb) in row.iter_mut().zip(&bv) {
                        *r = _mm256_fmadd_ps(av, bb, *r);
                    }
                }
                ap = ap.add(MR);
                bp = bp.add(ldb);
            }
            for (i, row) in acc.iter().enumerate() {
                for (v, &r) in row.iter().enumerate() {
                    let p = c.add(i * ldc + v * 8);
                    let r = if accumulate {
                        _mm256_add_ps(_mm256_loadu_ps(p), r)
                    } else {
                        r
                    };
                    _mm256_storeu_ps(p, r);
                }
            }
        }
    }

    /// AVX2 kernel for a whole `8 × w` tile.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(
        kc: usize,
        a: *const f32,
        b: *const f32,
        w: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        // SAFETY: the pieces stay inside the tile the caller vouched for.
        unsafe {
            for half in 0..2 {
                let ah = a.add(half * 4);
                let ch = c.add(half * 4 * ldc);
                let mut col = 0;
                while col < w {
                    let left = w - col;
                    if left >= 24 {
                        avx2_piece::<3>(kc, ah, b.add(col), w, ch.add(col), ldc, accumulate);
                        col += 24;
                    } else if left >= 16 {
                        avx2_piece::<2>(kc, ah, b.add(col), w, ch.add(col), ldc, accumulate);
                        col += 16;
                    } else {
                        avx2_piece::<1>(kc, ah, b.add(col), w, ch.add(col), ldc, accumulate);
                        col += 8;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(kc: usize, a: &[f32], b: &[f32], w: usize) -> Vec<f32> {
        let mut c = vec![0.0f32; MR * w];
        for i in 0..MR {
            for j in 0..w {
                let mut s = 0.0f64;
                for k in 0..kc {
                    s += a[k * MR + i] as f64 * b[k * w + j] as f64;
                }
                c[i * w + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn every_kernel_matches_the_reference() {
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            for w in [16, 32, 48] {
                for kc in [1, 7, 64] {
                    let a: Vec<f32> = (0..kc * MR).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
                    let b: Vec<f32> = (0..kc * w).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
                    let want = reference(kc, &a, &b, w);
                    let ldc = w + 3;
                    let mut c = vec![1.0f32; MR * ldc];
                    // SAFETY: extents match the contract of `micro`.
                    unsafe {
                        micro(
                            isa,
                            kc,
                            a.as_ptr(),
                            b.as_ptr(),
                            w,
                            c.as_mut_ptr(),
                            ldc,
                            false,
                        )
                    };
                    for i in 0..MR {
                        assert_eq!(&c[i * ldc..i * ldc + w], &want[i * w..i * w + w], "{isa:?}");
                        assert_eq!(c[i * ldc + w], 1.0, "wrote past the tile");
                    }
                    // SAFETY: as above.
                    unsafe {
                        micro(
                            isa,
                            kc,
                            a.as_ptr(),
                            b.as_ptr(),
                            w,
                            c.as_mut_ptr(),
                            ldc,
                            true,
                        )
                    };
                    for i in 0..MR {
                        for j in 0..w {
                            assert_eq!(c[i * ldc + j], 2.0 * want[i * w + j], "{isa:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pack_a_zero_fills_the_last_panel() {
        let m = 10;
        let k = 3;
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 + 1.0).collect();
        let p = pack_a(&a, m, k, k);
        assert_eq!(p.len(), 2 * k * MR);
        assert_eq!(p[0], 1.0);
        assert_eq!(p[1], 4.0);
        assert_eq!(p[MR], 2.0);
        let second = &p[k * MR..];
        assert_eq!(second[0], a[8 * k]);
        assert_eq!(second[1], a[9 * k]);
        assert!(second[2..MR].iter().all(|&v| v == 0.0));
    }
}
