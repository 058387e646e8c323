//! Winograd F(4×4, 3×3) convolution (AVX-512, and AVX2 + FMA).
//!
//! The output is cut into 4 × 4 tiles; each needs a 6 × 6 input patch. With the transforms of
//! Lavin & Gray (interpolation points 0, ±1, ±2, ∞), a tile costs 36 multiplications per
//! (input channel, output channel) pair instead of 144: `Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A`.
//! Summed over input channels, the element-wise products become 36 independent GEMMs
//! `M_ξ[o, t] = Σ_c U_ξ[o, c] · V_ξ[c, t]` over tiles `t`, run by the packed micro-kernel of
//! [`crate::gemm`] with tiles along the vector lanes.
//!
//! Tiles of the whole batch are processed in chunks (one task each): the input transform gathers
//! the patches of 16 tiles per vector straight from a zero-padded copy of the input and writes
//! them in packed-panel order, the 36 GEMMs fill a per-chunk buffer, and the output transform
//! adds the bias, applies the ReLU and scatters the 4 × 4 tiles into the NCHW output.
//!
//! The AVX2 + FMA path (`x86::avx2`) has the same structure with 8 tiles per vector: masked
//! AVX2 gathers for the input transform, the AVX2 micro-kernel of [`crate::gemm`] (4 × 24
//! pieces, 12 accumulators + 3 loads + 1 broadcast in the 16 ymm registers) for the GEMMs, and
//! two 8 × 8 register transposes instead of the gathers in the output transform. Chunks, panel
//! widths and buffer layouts are shared with the AVX-512 path.

use crate::gemm::{self, LANES, MR, NR};
use crate::isa::Isa;
use crate::scratch::{with_pooled, with_scratch};
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Points of the transformed tile.
const XI: usize = 36;
/// Target number of tiles per chunk.
const TILES_PER_CHUNK: usize = 96;

/// Whether the Winograd path can run `s` with `isa` (3 × 3 kernel, AVX-512 or AVX2 + FMA,
/// offsets that fit in the 32-bit gather indices).
pub(crate) fn supports(isa: Isa, s: &ConvShape) -> bool {
    if !matches!(isa, Isa::Avx512 | Isa::Avx2) || s.kh != 3 || s.kw != 3 || !s.is_valid() {
        return false;
    }
    (s.n * s.c * s.h * s.w) < (i32::MAX as usize) / 2
}

/// Fills `u` (`XI · o-panels · MR · c` floats) with the transformed weights packed as the `A`
/// operand of the 36 GEMMs: `[ξ][o-panel][c][MR]`.
fn pack_weights(isa: Isa, s: &ConvShape, weight: &[f32], u: &mut [f32]) {
    let op = s.o.div_ceil(MR) * MR;
    assert_eq!(u.len(), XI * op * s.c);
    let us = SharedMut(u.as_mut_ptr());
    (0..op / MR).into_par_iter().for_each(|panel| {
        if isa == Isa::Avx512 {
            // SAFETY: AVX-512 support is a precondition of this path; each panel writes its own
            // elements.
            unsafe { x86::pack_weights_panel(weight, s.c, s.o, panel, op, us) };
        } else {
            // SAFETY: AVX2 + FMA support is a precondition of this path (`supports`); each
            // panel writes its own elements.
            unsafe { x86::avx2::pack_weights_panel(weight, s.c, s.o, panel, op, us) };
        }
    });
}

/// Forward convolution (see the module docs) with `isa` (AVX-512 or AVX2, see [`supports`]);
/// same contract as [`crate::direct::forward`].
pub(crate) fn forward(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    // The transformed weights (36 × o × c floats, 38 MB for 512 × 512) come from the shared pool:
    // a fresh allocation per call would page-fault them in every time.
    debug_assert!(supports(isa, s) && isa.is_supported());
    let op = s.o.div_ceil(MR) * MR;
    with_pooled(XI * op * s.c, |u| {
        pack_weights(isa, s, weight, u);
        forward_packed(isa, s, x, u, bias, relu)
    })
}

/// [`forward`] with the weights already transformed and packed by [`pack_weights`].
fn forward_packed(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (ho, wo) = (s.ho(), s.wo());
    let (th, tw) = (ho.div_ceil(4), wo.div_ceil(4));
    let tiles = s.n * th * tw;

    let threads = rayon::current_num_threads().max(1);
    let chunks = threads * tiles.div_ceil(threads * TILES_PER_CHUNK);
    let tb = tiles.div_ceil(chunks).div_ceil(LANES) * LANES;
    let chunks = tiles.div_ceil(tb);
    let op = s.o.div_ceil(MR) * MR;

    let mut y = vec![0.0f32; s.n * s.o * ho * wo];
    let yp = SharedMut(y.as_mut_ptr());
    let geo = Geometry {
        s: *s,
        th,
        tw,
        ho,
        wo,
    };

    let vsize = XI * s.c * tb;
    let msize = XI * op * tb;
    (0..chunks).into_par_iter().for_each(|chunk| {
        with_scratch(vsize + msize, |buf| {
            let (vbuf, mbuf) = buf.split_at_mut(vsize);
            let t0 = chunk * tb;
            let nt = tb.min(tiles - t0);
            let ntp = nt.div_ceil(LANES) * LANES;
            if isa == Isa::Avx512 {
                // SAFETY: AVX-512 support is a precondition of this path (`supports`).
                unsafe {
                    x86::input_transform(&geo, x, t0, nt, ntp, vbuf);
                }
            } else {
                // SAFETY: AVX2 + FMA support is a precondition of this path (`supports`).
                unsafe {
                    x86::avx2::input_transform(&geo, x, t0, nt, ntp, vbuf);
                }
            }
            for xi in 0..XI {
                let v = &vbuf[xi * s.c * ntp..];
                let m = &mut mbuf[xi * op * ntp..];
                let a_xi = &u[xi * op * s.c..];
                for ip in 0..op / MR {
                    let a = &a_xi[ip * s.c * MR..];
                    let mut col = 0;
                    while col < nt {
                        let width = gemm::panel_width(NR.min(nt - col));
                        // SAFETY: `a` holds c·MR floats, the panel c·width floats, and the
                        // target MR rows of ntp ≥ col + width floats.
                        unsafe {
                            gemm::micro(
                                isa,
                                s.c,
                                a.as_ptr(),
                                v[col * s.c..].as_ptr(),
                                width,
                                m[ip * MR * ntp + col..].as_mut_ptr(),
                                ntp,
                                false,
                            );
                        }
                        col += width;
                    }
                }
            }
            if isa == Isa::Avx512 {
                // SAFETY: as above; each chunk writes the output pixels of its own tiles.
                unsafe {
                    x86::output_transform(&geo, mbuf, op, t0, nt, ntp, bias, relu, yp);
                }
            } else {
                // SAFETY: as above.
                unsafe {
                    x86::avx2::output_transform(&geo, mbuf, op, t0, nt, ntp, bias, relu, yp);
                }
            }
        })
    });
    y
}

/// Tile geometry shared by the transforms.
struct Geometry {
    s: ConvShape,
    th: usize,
    tw: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    /// `(n, tile row, tile column)` of global tile `t`.
    fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per = self.th * self.tw;
        (t / per, (t % per) / self.tw, t % self.tw)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Geometry, SharedMut, XI};
    use crate::gemm::NR;
    use std::arch::x86_64::*;

    /// `Bᵀ · d` for six vectors.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    fn bt(d: [__m512; 6]) -> [__m512; 6] {
        let four = _mm512_set1_ps(4.0);
        let five = _mm512_set1_ps(5.0);
        let two = _mm512_set1_ps(2.0);
        let t1 = _mm512_fnmadd_ps(four, d[2], d[4]); // d4 - 4 d2
        let t2 = _mm512_fnmadd_ps(four, d[1], d[3]); // d3 - 4 d1
        let t3 = _mm512_sub_ps(d[4], d[2]);
        let t4 = _mm512_mul_ps(two, _mm512_sub_ps(d[3], d[1]));
        [
            _mm512_add_ps(
                _mm512_fnmadd_ps(five, d[2], _mm512_mul_ps(four, d[0])),
                d[4],
            ),
            _mm512_add_ps(t1, t2),
            _mm512_sub_ps(t1, t2),
            _mm512_add_ps(t3, t4),
            _mm512_sub_ps(t3, t4),
            _mm512_add_ps(
                _mm512_fnmadd_ps(five, d[3], _mm512_mul_ps(four, d[1])),
                d[5],
            ),
        ]
    }

    /// `Aᵀ · m` for six vectors.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    fn at(m: [__m512; 6]) -> [__m512; 4] {
        let a = _mm512_add_ps(m[1], m[2]);
        let b = _mm512_sub_ps(m[1], m[2]);
        let c = _mm512_add_ps(m[3], m[4]);
        let d = _mm512_sub_ps(m[3], m[4]);
        [
            _mm512_add_ps(_mm512_add_ps(m[0], a), c),
            _mm512_fmadd_ps(_mm512_set1_ps(2.0), d, b),
            _mm512_fmadd_ps(_mm512_set1_ps(4.0), c, a),
            _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), d, b), m[5]),
        ]
    }

    /// Transforms the patches of tiles `t0..t0 + nt` for every input channel into
    /// `vbuf[ξ][panel][c][width]` (panels of up to [`NR`] tiles). Patches are gathered straight
    /// from the NCHW input, 16 tiles per vector, with the zero padding supplied by the gather
    /// masks.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn input_transform(
        g: &Geometry,
        x: &[f32],
        t0: usize,
        nt: usize,
        ntp: usize,
        vbuf: &mut [f32],
    ) {
        let (c_in, h, w, pad) = (g.s.c, g.s.h, g.s.w, g.s.pad as isize);
        let plane = h * w;
        let groups = ntp / 16;
        let mut vidx = Vec::with_capacity(groups);
        let mut masks = vec![[0u16; XI]; groups];
        for (grp, gm) in masks.iter_mut().enumerate() {
            let mut idx = [0i32; 16];
            for (l, slot) in idx.iter_mut().enumerate() {
                let t = grp * 16 + l;
                if t >= nt {
                    continue;
                }
                let (n, tr, tc) = g.tile(t0 + t);
                let (ih0, iw0) = (4 * tr as isize - pad, 4 * tc as isize - pad);
                *slot = ((n * c_in * plane) as isize + ih0 * w as isize + iw0) as i32;
                for r in 0..6 {
                    let ih = ih0 + r as isize;
                    if ih < 0 || ih >= h as isize {
                        continue;
                    }
                    for s in 0..6 {
                        let iw = iw0 + s as isize;
                        if iw >= 0 && iw < w as isize {
                            gm[r * 6 + s] |= 1 << l;
                        }
                    }
                }
            }
            // SAFETY: the index array holds 16 i32.
            vidx.push(unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) });
        }
        let zero = _mm512_setzero_ps();
        // Channel-major, so that consecutive groups stream through the same input rows.
        for c in 0..c_in {
            let base = x[c * plane..].as_ptr();
            for grp in 0..groups {
                let col = grp * 16;
                let panel = col / NR;
                let width = crate::gemm::panel_width(NR.min(nt - panel * NR));
                let lane0 = col - panel * NR;
                let mut d = [[zero; 6]; 6];
                for (r, row) in d.iter_mut().enumerate() {
                    for (s, v) in row.iter_mut().enumerate() {
                        let m = masks[grp][r * 6 + s];
                        if m != 0 {
                            let off =
                                _mm512_add_epi32(vidx[grp], _mm512_set1_epi32((r * w + s) as i32));
                            // SAFETY: unmasked lanes address pixels inside the input (checked
                            // against the image bounds above).
                            *v = unsafe { _mm512_mask_i32gather_ps::<4>(zero, m, off, base) };
                        }
                    }
                }
                // Columns: t[r][s] = (Bᵀ d)[r][s].
                let mut t = [[zero; 6]; 6];
                for s in 0..6 {
                    let col_t = bt([d[0][s], d[1][s], d[2][s], d[3][s], d[4][s], d[5][s]]);
                    for r in 0..6 {
                        t[r][s] = col_t[r];
                    }
                }
                for (r, tr) in t.iter().enumerate() {
                    let v = bt(*tr);
                    for (s, vs) in v.into_iter().enumerate() {
                        let xi = r * 6 + s;
                        let off = xi * c_in * ntp + panel * NR * c_in + c * width + lane0;
                        // SAFETY: `off + 16` stays inside the chunk's `vbuf`.
                        unsafe { _mm512_storeu_ps(vbuf.as_mut_ptr().add(off), vs) };
                    }
                }
            }
        }
        debug_assert!(XI * c_in * ntp <= vbuf.len());
    }

    /// `G · (g0, g1, g2)` for eight kernels at once.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    fn g1d(g0: __m256, g1: __m256, g2: __m256) -> [__m256; 6] {
        let q = _mm256_set1_ps(0.25);
        let sixth = _mm256_set1_ps(1.0 / 6.0);
        let a = _mm256_add_ps(g0, g2);
        let p = _mm256_mul_ps(_mm256_add_ps(a, g1), sixth);
        let m = _mm256_mul_ps(_mm256_sub_ps(a, g1), sixth);
        // g0/24 + g2/6 and g1/12.
        let e = _mm256_fmadd_ps(g0, _mm256_set1_ps(1.0 / 24.0), _mm256_mul_ps(g2, sixth));
        let f = _mm256_mul_ps(g1, _mm256_set1_ps(1.0 / 12.0));
        let zero = _mm256_setzero_ps();
        [
            _mm256_mul_ps(g0, q),
            _mm256_sub_ps(zero, p),
            _mm256_sub_ps(zero, m),
            _mm256_add_ps(e, f),
            _mm256_sub_ps(e, f),
            g2,
        ]
    }

    /// Transforms and packs the kernels of output channels `8·panel..8·panel + 8` (the rows past
    /// `o_total` repeat the last channel; their results are never read).
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) unsafe fn pack_weights_panel(
        weight: &[f32],
        c_in: usize,
        o_total: usize,
        panel: usize,
        op: usize,
        u: SharedMut,
    ) {
        let mut idx = [0i32; 8];
        for (l, slot) in idx.iter_mut().enumerate() {
            *slot = ((panel * 8 + l).min(o_total - 1) * c_in * 9) as i32;
        }
        // SAFETY: the index array holds 8 i32.
        let vidx = unsafe { _mm256_loadu_si256(idx.as_ptr().cast()) };
        let zero = _mm256_setzero_ps();
        for c in 0..c_in {
            let base = weight[c * 9..].as_ptr();
            let mut g = [zero; 9];
            for (k, v) in g.iter_mut().enumerate() {
                // SAFETY: every lane addresses element (o, c, k) of the weight.
                *v = unsafe { _mm256_i32gather_ps::<4>(base.add(k), vidx) };
            }
            let mut tmp = [[zero; 3]; 6];
            for k2 in 0..3 {
                let col = g1d(g[k2], g[3 + k2], g[6 + k2]);
                for r in 0..6 {
                    tmp[r][k2] = col[r];
                }
            }
            for (r, tr) in tmp.iter().enumerate() {
                let row = g1d(tr[0], tr[1], tr[2]);
                for (s, v) in row.into_iter().enumerate() {
                    let xi = r * 6 + s;
                    let off = ((xi * op / crate::gemm::MR + panel) * c_in + c) * crate::gemm::MR;
                    // SAFETY: each panel writes its own 8 floats per (ξ, c).
                    unsafe { _mm256_storeu_ps(u.ptr().add(off), v) };
                }
            }
        }
    }

    /// Inverse-transforms the chunk's GEMM results, adds the bias, applies the ReLU and writes
    /// the valid pixels of every tile into the NCHW output.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn output_transform(
        g: &Geometry,
        mbuf: &[f32],
        op: usize,
        t0: usize,
        nt: usize,
        ntp: usize,
        bias: Option<&[f32]>,
        relu: bool,
        y: SharedMut,
    ) {
        let (ho, wo) = (g.ho, g.wo);
        let groups = ntp / 16;
        // Per tile: output offset within an output plane, valid rows and columns.
        let tiles: Vec<(usize, usize, usize, usize)> = (0..nt)
            .map(|t| {
                let (n, tr, tc) = g.tile(t0 + t);
                let (oh0, ow0) = (4 * tr, 4 * tc);
                (n, oh0 * wo + ow0, 4.min(ho - oh0), 4.min(wo - ow0))
            })
            .collect();
        let mut scratch = [0.0f32; 256];
        let zero = _mm512_setzero_ps();
        let mut lane_idx = [0i32; 16];
        for (p, v) in lane_idx.iter_mut().enumerate() {
            *v = (p * 16) as i32;
        }
        // SAFETY: the index array holds 16 i32.
        let lane_idx = unsafe { _mm512_loadu_si512(lane_idx.as_ptr().cast()) };
        for o in 0..g.s.o {
            let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[o]));
            for grp in 0..groups {
                let lanes = 16.min(nt - grp * 16);
                let mut m = [zero; XI];
                for (xi, v) in m.iter_mut().enumerate() {
                    // SAFETY: inside the chunk's `mbuf`.
                    *v = unsafe {
                        _mm512_loadu_ps(mbuf.as_ptr().add((xi * op + o) * ntp + grp * 16))
                    };
                }
                // Columns first: t[i][s] = (Aᵀ m)[i][s].
                let mut t = [[zero; 6]; 4];
                for s in 0..6 {
                    let col = at([m[s], m[6 + s], m[12 + s], m[18 + s], m[24 + s], m[30 + s]]);
                    for i in 0..4 {
                        t[i][s] = col[i];
                    }
                }
                for (i, ti) in t.iter().enumerate() {
                    let row = at(*ti);
                    for (j, v) in row.into_iter().enumerate() {
                        let mut v = _mm512_add_ps(v, bv);
                        if relu {
                            v = _mm512_max_ps(v, zero);
                        }
                        // SAFETY: 16 floats inside `scratch`.
                        unsafe { _mm512_storeu_ps(scratch.as_mut_ptr().add((i * 4 + j) * 16), v) };
                    }
                }
                for l in 0..lanes {
                    let (n, off, rows, cols) = tiles[grp * 16 + l];
                    // The 16 pixels of tile `l`, row-major.
                    // SAFETY: indices 16·p + l < 256 stay inside `scratch`.
                    let px = unsafe {
                        _mm512_i32gather_ps::<4>(lane_idx, scratch.as_ptr().add(l).cast())
                    };
                    let dst = y.ptr().wrapping_add((n * g.s.o + o) * ho * wo + off);
                    if rows == 4 && cols == 4 {
                        // SAFETY: each chunk writes the pixels of its own tiles, all inside
                        // the output.
                        unsafe {
                            _mm_storeu_ps(dst, _mm512_extractf32x4_ps::<0>(px));
                            _mm_storeu_ps(dst.add(wo), _mm512_extractf32x4_ps::<1>(px));
                            _mm_storeu_ps(dst.add(2 * wo), _mm512_extractf32x4_ps::<2>(px));
                            _mm_storeu_ps(dst.add(3 * wo), _mm512_extractf32x4_ps::<3>(px));
                        }
                    } else {
                        let mut vals = [0.0f32; 16];
                        // SAFETY: 16 floats.
                        unsafe { _mm512_storeu_ps(vals.as_mut_ptr(), px) };
                        for i in 0..rows {
                            for j in 0..cols {
                                // SAFETY: a valid pixel of this chunk's tile.
                                unsafe { *dst.add(i * wo + j) = vals[i * 4 + j] };
                            }
                        }
                    }
                }
            }
        }
    }

    /// The AVX2 + FMA transforms: 8 tiles (or output channels) per ymm vector, the same buffer
    /// layouts as the AVX-512 functions above.
    pub(in super::super) mod avx2 {
        use super::super::{Geometry, SharedMut, XI};
        use crate::gemm::NR;
        use std::arch::x86_64::*;

        /// Tiles per vector.
        const L: usize = 8;

        /// `Bᵀ · d` for six vectors.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn bt(d: [__m256; 6]) -> [__m256; 6] {
            let four = _mm256_set1_ps(4.0);
            let five = _mm256_set1_ps(5.0);
            let two = _mm256_set1_ps(2.0);
            let t1 = _mm256_fnmadd_ps(four, d[2], d[4]); // d4 - 4 d2
            let t2 = _mm256_fnmadd_ps(four, d[1], d[3]); // d3 - 4 d1
            let t3 = _mm256_sub_ps(d[4], d[2]);
            let t4 = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
            [
                _mm256_add_ps(
                    _mm256_fnmadd_ps(five, d[2], _mm256_mul_ps(four, d[0])),
                    d[4],
                ),
                _mm256_add_ps(t1, t2),
                _mm256_sub_ps(t1, t2),
                _mm256_add_ps(t3, t4),
                _mm256_sub_ps(t3, t4),
                _mm256_add_ps(
                    _mm256_fnmadd_ps(five, d[3], _mm256_mul_ps(four, d[1])),
                    d[5],
                ),
            ]
        }

        /// `Aᵀ · m` for six vectors.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn at(m: [__m256; 6]) -> [__m256; 4] {
            let a = _mm256_add_ps(m[1], m[2]);
            let b = _mm256_sub_ps(m[1], m[2]);
            let c = _mm256_add_ps(m[3], m[4]);
            let d = _mm256_sub_ps(m[3], m[4]);
            [
                _mm256_add_ps(_mm256_add_ps(m[0], a), c),
                _mm256_fmadd_ps(_mm256_set1_ps(2.0), d, b),
                _mm256_fmadd_ps(_mm256_set1_ps(4.0), c, a),
                _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0), d, b), m[5]),
            ]
        }

        /// Transposes the 8 × 8 matrix of rows `r`: lane `j` of output `i` is lane `i` of
        /// input `j`.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn transpose8(r: &[__m256; 8]) -> [__m256; 8] {
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ]
        }

        /// Transforms the patches of tiles `t0..t0 + nt` for every input channel into
        /// `vbuf[ξ][panel][c][width]` (panels of up to [`NR`] tiles), as the AVX-512
        /// `input_transform`, gathering 8 tiles per vector with masked AVX2 gathers (unmasked
        /// where every lane is inside the image, none where no lane is).
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super::super) unsafe fn input_transform(
            g: &Geometry,
            x: &[f32],
            t0: usize,
            nt: usize,
            ntp: usize,
            vbuf: &mut [f32],
        ) {
            let (c_in, h, w, pad) = (g.s.c, g.s.h, g.s.w, g.s.pad as isize);
            let plane = h * w;
            let groups = ntp / L;
            let mut vidx = Vec::with_capacity(groups);
            let mut bits = vec![[0u8; XI]; groups];
            for (grp, gm) in bits.iter_mut().enumerate() {
                let mut idx = [0i32; L];
                for (l, slot) in idx.iter_mut().enumerate() {
                    let t = grp * L + l;
                    if t >= nt {
                        continue;
                    }
                    let (n, tr, tc) = g.tile(t0 + t);
                    let (ih0, iw0) = (4 * tr as isize - pad, 4 * tc as isize - pad);
                    *slot = ((n * c_in * plane) as isize + ih0 * w as isize + iw0) as i32;
                    for r in 0..6 {
                        let ih = ih0 + r as isize;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        for s in 0..6 {
                            let iw = iw0 + s as isize;
                            if iw >= 0 && iw < w as isize {
                                gm[r * 6 + s] |= 1 << l;
                            }
                        }
                    }
                }
                // SAFETY: the index array holds 8 i32.
                vidx.push(unsafe { _mm256_loadu_si256(idx.as_ptr().cast()) });
            }
            // The lane masks as vectors (all bits set in the lanes to gather).
            let lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            let mut masks = vec![[_mm256_setzero_ps(); XI]; groups];
            for (gm, mv) in bits.iter().zip(masks.iter_mut()) {
                for (&b, v) in gm.iter().zip(mv.iter_mut()) {
                    let sel = _mm256_and_si256(_mm256_set1_epi32(i32::from(b)), lane_bit);
                    *v = _mm256_castsi256_ps(_mm256_cmpeq_epi32(sel, lane_bit));
                }
            }
            let zero = _mm256_setzero_ps();
            // Channel-major, so that consecutive groups stream through the same input rows.
            for c in 0..c_in {
                let base = x[c * plane..].as_ptr();
                for grp in 0..groups {
                    let col = grp * L;
                    let panel = col / NR;
                    let width = crate::gemm::panel_width(NR.min(nt - panel * NR));
                    let lane0 = col - panel * NR;
                    let mut d = [[zero; 6]; 6];
                    for (r, row) in d.iter_mut().enumerate() {
                        for (s, v) in row.iter_mut().enumerate() {
                            let b = bits[grp][r * 6 + s];
                            if b == 0 {
                                continue;
                            }
                            let off =
                                _mm256_add_epi32(vidx[grp], _mm256_set1_epi32((r * w + s) as i32));
                            *v = if b == u8::MAX {
                                // SAFETY: every lane addresses a pixel inside the input (checked
                                // against the image bounds above).
                                unsafe { _mm256_i32gather_ps::<4>(base, off) }
                            } else {
                                // SAFETY: unmasked lanes address pixels inside the input.
                                unsafe {
                                    _mm256_mask_i32gather_ps::<4>(
                                        zero,
                                        base,
                                        off,
                                        masks[grp][r * 6 + s],
                                    )
                                }
                            };
                        }
                    }
                    // Columns: t[r][s] = (Bᵀ d)[r][s].
                    let mut t = [[zero; 6]; 6];
                    for s in 0..6 {
                        let col_t = bt([d[0][s], d[1][s], d[2][s], d[3][s], d[4][s], d[5][s]]);
                        for r in 0..6 {
                            t[r][s] = col_t[r];
                        }
                    }
                    for (r, tr) in t.iter().enumerate() {
                        let v = bt(*tr);
                        for (s, vs) in v.into_iter().enumerate() {
                            let xi = r * 6 + s;
                            let off = xi * c_in * ntp + panel * NR * c_in + c * width + lane0;
                            // SAFETY: `off + 8` stays inside the chunk's `vbuf`
                            // (`lane0 + 8 ≤ width`).
                            unsafe { _mm256_storeu_ps(vbuf.as_mut_ptr().add(off), vs) };
                        }
                    }
                }
            }
            debug_assert!(XI * c_in * ntp <= vbuf.len());
        }

        /// `G · (g0, g1, g2)` for eight kernels at once.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn g1d(g0: __m256, g1: __m256, g2: __m256) -> [__m256; 6] {
            let q = _mm256_set1_ps(0.25);
            let sixth = _mm256_set1_ps(1.0 / 6.0);
            let a = _mm256_add_ps(g0, g2);
            let p = _mm256_mul_ps(_mm256_add_ps(a, g1), sixth);
            let m = _mm256_mul_ps(_mm256_sub_ps(a, g1), sixth);
            // g0/24 + g2/6 and g1/12.
            let e = _mm256_fmadd_ps(g0, _mm256_set1_ps(1.0 / 24.0), _mm256_mul_ps(g2, sixth));
            let f = _mm256_mul_ps(g1, _mm256_set1_ps(1.0 / 12.0));
            let zero = _mm256_setzero_ps();
            [
                _mm256_mul_ps(g0, q),
                _mm256_sub_ps(zero, p),
                _mm256_sub_ps(zero, m),
                _mm256_add_ps(e, f),
                _mm256_sub_ps(e, f),
                g2,
            ]
        }

        /// Transforms and packs the kernels of output channels `8·panel..8·panel + 8`, as the
        /// AVX-512 `pack_weights_panel` (the rows past `o_total` repeat the last channel; their
        /// results are never read).
        #[target_feature(enable = "avx2,fma")]
        pub(in super::super::super) unsafe fn pack_weights_panel(
            weight: &[f32],
            c_in: usize,
            o_total: usize,
            panel: usize,
            op: usize,
            u: SharedMut,
        ) {
            let mut idx = [0i32; 8];
            for (l, slot) in idx.iter_mut().enumerate() {
                *slot = ((panel * 8 + l).min(o_total - 1) * c_in * 9) as i32;
            }
            // SAFETY: the index array holds 8 i32.
            let vidx = unsafe { _mm256_loadu_si256(idx.as_ptr().cast()) };
            let zero = _mm256_setzero_ps();
            for c in 0..c_in {
                let base = weight[c * 9..].as_ptr();
                let mut g = [zero; 9];
                for (k, v) in g.iter_mut().enumerate() {
                    // SAFETY: every lane addresses element (o, c, k) of the weight.
                    *v = unsafe { _mm256_i32gather_ps::<4>(base.add(k), vidx) };
                }
                let mut tmp = [[zero; 3]; 6];
                for k2 in 0..3 {
                    let col = g1d(g[k2], g[3 + k2], g[6 + k2]);
                    for r in 0..6 {
                        tmp[r][k2] = col[r];
                    }
                }
                for (r, tr) in tmp.iter().enumerate() {
                    let row = g1d(tr[0], tr[1], tr[2]);
                    for (s, v) in row.into_iter().enumerate() {
                        let xi = r * 6 + s;
                        let off =
                            ((xi * op / crate::gemm::MR + panel) * c_in + c) * crate::gemm::MR;
                        // SAFETY: each panel writes its own 8 floats per (ξ, c).
                        unsafe { _mm256_storeu_ps(u.ptr().add(off), v) };
                    }
                }
            }
        }

        /// Inverse-transforms the chunk's GEMM results, adds the bias, applies the ReLU and
        /// writes the valid pixels of every tile into the NCHW output, 8 tiles per vector; two
        /// 8 × 8 transposes turn the 16 pixel vectors into the rows of each tile.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        pub(in super::super::super) unsafe fn output_transform(
            g: &Geometry,
            mbuf: &[f32],
            op: usize,
            t0: usize,
            nt: usize,
            ntp: usize,
            bias: Option<&[f32]>,
            relu: bool,
            y: SharedMut,
        ) {
            let (ho, wo) = (g.ho, g.wo);
            // Per tile: output offset within an output plane, valid rows and columns.
            let tiles: Vec<(usize, usize, usize, usize)> = (0..nt)
                .map(|t| {
                    let (n, tr, tc) = g.tile(t0 + t);
                    let (oh0, ow0) = (4 * tr, 4 * tc);
                    (n, oh0 * wo + ow0, 4.min(ho - oh0), 4.min(wo - ow0))
                })
                .collect();
            let zero = _mm256_setzero_ps();
            debug_assert!((XI - 1) * op * ntp + g.s.o * ntp <= mbuf.len());
            for o in 0..g.s.o {
                let bv = _mm256_set1_ps(bias.map_or(0.0, |b| b[o]));
                for grp in 0..nt.div_ceil(L) {
                    let lanes = L.min(nt - grp * L);
                    let mut m = [zero; XI];
                    for (xi, v) in m.iter_mut().enumerate() {
                        // SAFETY: inside the chunk's `mbuf` (`grp·8 + 8 ≤ ntp`).
                        *v = unsafe {
                            _mm256_loadu_ps(mbuf.as_ptr().add((xi * op + o) * ntp + grp * L))
                        };
                    }
                    // Columns first: t[i][s] = (Aᵀ m)[i][s].
                    let mut t = [[zero; 6]; 4];
                    for s in 0..6 {
                        let col = at([m[s], m[6 + s], m[12 + s], m[18 + s], m[24 + s], m[30 + s]]);
                        for i in 0..4 {
                            t[i][s] = col[i];
                        }
                    }
                    // Pixel `4i + j` of the 8 tiles.
                    let mut px = [[zero; 8]; 2];
                    for (i, ti) in t.iter().enumerate() {
                        let row = at(*ti);
                        for (j, v) in row.into_iter().enumerate() {
                            let mut v = _mm256_add_ps(v, bv);
                            if relu {
                                v = _mm256_max_ps(v, zero);
                            }
                            px[i / 2][(i % 2) * 4 + j] = v;
                        }
                    }
                    // Rows 0–1 and rows 2–3 of each tile.
                    let (top, bottom) = (transpose8(&px[0]), transpose8(&px[1]));
                    for l in 0..lanes {
                        let (n, off, rows, cols) = tiles[grp * L + l];
                        let dst = y.ptr().wrapping_add((n * g.s.o + o) * ho * wo + off);
                        if rows == 4 && cols == 4 {
                            // SAFETY: each chunk writes the pixels of its own tiles, all inside
                            // the output.
                            unsafe {
                                _mm_storeu_ps(dst, _mm256_castps256_ps128(top[l]));
                                _mm_storeu_ps(dst.add(wo), _mm256_extractf128_ps::<1>(top[l]));
                                _mm_storeu_ps(dst.add(2 * wo), _mm256_castps256_ps128(bottom[l]));
                                _mm_storeu_ps(
                                    dst.add(3 * wo),
                                    _mm256_extractf128_ps::<1>(bottom[l]),
                                );
                            }
                        } else {
                            let mut vals = [0.0f32; 16];
                            // SAFETY: 2 × 8 floats inside `vals`.
                            unsafe {
                                _mm256_storeu_ps(vals.as_mut_ptr(), top[l]);
                                _mm256_storeu_ps(vals.as_mut_ptr().add(8), bottom[l]);
                            }
                            for i in 0..rows {
                                for j in 0..cols {
                                    // SAFETY: a valid pixel of this chunk's tile.
                                    unsafe { *dst.add(i * wo + j) = vals[i * 4 + j] };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

    #[test]
    fn matches_direct() {
        for s in [
            ConvShape {
                n: 2,
                c: 5,
                h: 9,
                w: 11,
                o: 7,
                kh: 3,
                kw: 3,
                pad: 1,
            },
            ConvShape {
                n: 3,
                c: 17,
                h: 13,
                w: 10,
                o: 20,
                kh: 3,
                kw: 3,
                pad: 0,
            },
            ConvShape {
                n: 1,
                c: 33,
                h: 4,
                w: 5,
                o: 9,
                kh: 3,
                kw: 3,
                pad: 2,
            },
            ConvShape {
                n: 5,
                c: 8,
                h: 23,
                w: 23,
                o: 16,
                kh: 3,
                kw: 3,
                pad: 1,
            },
        ] {
            let x: Vec<f32> = (0..s.n * s.c * s.h * s.w)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..s.o * s.c * 9)
                .map(|i| ((i * 17) % 29) as f32 / 14.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..s.o).map(|i| i as f32 * 0.25 - 1.0).collect();
            let want = crate::direct::forward(Isa::Portable, &s, &x, &w, Some(&b), true);
            let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for isa in Isa::available() {
                if !supports(isa, &s) {
                    continue;
                }
                let got = forward(isa, &s, &x, &w, Some(&b), true);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale.max(1.0),
                        "{isa:?} {s:?}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
