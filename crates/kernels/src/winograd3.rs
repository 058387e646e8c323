//! Winograd F(3×3, 3×3): the transforms, shared with the weight gradient of
//! [`crate::wgrad_winograd`], and a forward convolution for small feature maps.
//!
//! A 3 × 3 output tile of a 3 × 3 correlation needs a 5 × 5 input patch `d`; with the
//! interpolation points 0, ±1, 2, ∞ it is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`, 25 multiplications per
//! (input channel, output channel) pair instead of 81. F(4×4, 3×3) ([`crate::winograd`]) needs
//! 36 per 16 outputs and is the better choice for large maps, but 4 × 4 tiles waste most of a
//! 9 × 9 map (block 5 of VGG16 at 150 × 150: 144 computed outputs for 81), which 3 × 3 tiles
//! cover exactly: there F(3×3) does 31% fewer multiplications.
//!
//! The forward convolution computes, for every point ξ, the product of the transformed input
//! tiles (packed [`MR`] tiles to a panel) with the transformed weights (packed [`NR`] output
//! channels to a panel) over the input channels, with the packed micro-kernel of
//! [`crate::gemm`]. Each task owns a block of tiles × one panel of output channels: it keeps all
//! 25 products in a private accumulator and finishes with the output transform, bias and ReLU.
//! The transforms work on vectors of channels (channels-last copies of the operands), written as
//! plain array arithmetic that the compiler vectorises for the detected instruction set.

use crate::gemm::{LANES, MR, NR, micro, panel_width};
use crate::isa::{Isa, dispatch_isa};
use crate::scratch::{with_pooled, with_scratch};
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Points of the transformed tile (5 × 5).
pub(crate) const XI: usize = 25;
/// Output tile edge.
pub(crate) const TILE: usize = 3;
/// Input patch edge.
pub(crate) const PATCH: usize = 5;
/// Rows (channels or tiles) transformed into a staging buffer before they are copied out.
pub(crate) const STAGE: usize = 16;
/// Tile panels per forward task: 48 tiles, so the accumulators (25 × 48 × 48 floats) stay in L2.
const TB: usize = 6;
/// Tiles per forward chunk (bounds the transformed input to 25 × 1536 × c floats).
const CHUNK: usize = 1536;

/// A `[L]`-lane vector for each of `R × C` positions.
pub(crate) type Block<const L: usize, const R: usize, const C: usize> = [[[f32; L]; C]; R];

/// Tile geometry of one problem: `th × tw` tiles of 3 × 3 outputs per image.
pub(crate) struct Geometry {
    /// The convolution.
    pub(crate) s: ConvShape,
    /// Tile rows per image.
    pub(crate) th: usize,
    /// Tile columns per image.
    pub(crate) tw: usize,
}

impl Geometry {
    pub(crate) fn new(s: &ConvShape) -> Geometry {
        Geometry {
            s: *s,
            th: s.ho().div_ceil(TILE),
            tw: s.wo().div_ceil(TILE),
        }
    }

    /// Tiles of the whole batch.
    pub(crate) fn tiles(&self) -> usize {
        self.s.n * self.th * self.tw
    }

    /// Image, tile row and tile column of tile `t`.
    pub(crate) fn tile(&self, t: usize) -> (usize, usize, usize) {
        let per = self.th * self.tw;
        (t / per, (t % per) / self.tw, t % self.tw)
    }

    /// The 5 × 5 input patch of tile `t` for the 16 channels from `c0`, from the channels-last
    /// input `xt` ([n, h, w, cw]); positions in the padding are zero.
    #[inline(always)]
    pub(crate) fn patch(&self, xt: &[f32], cw: usize, t: usize, c0: usize) -> Block<LANES, 5, 5> {
        let s = &self.s;
        let (n, ty, tx) = self.tile(t);
        let mut d = [[[0.0f32; LANES]; PATCH]; PATCH];
        for (i, di) in d.iter_mut().enumerate() {
            let Some(y) = (ty * TILE + i).checked_sub(s.pad).filter(|&y| y < s.h) else {
                continue;
            };
            for (j, dij) in di.iter_mut().enumerate() {
                let Some(x) = (tx * TILE + j).checked_sub(s.pad).filter(|&x| x < s.w) else {
                    continue;
                };
                let at = ((n * s.h + y) * s.w + x) * cw + c0;
                dij.copy_from_slice(&xt[at..at + LANES]);
            }
        }
        d
    }
}

/// Copies `src` ([n, ch, plane]) to `dst` as [n, plane, lanes] with `lanes = dst.len() / (n ·
/// plane) ≥ ch`, the lanes past `ch` zero; with `mask`, values whose `mask` entry is not
/// positive become zero (the gradient through a ReLU).
pub(crate) fn channels_last(
    src: &[f32],
    ch: usize,
    plane: usize,
    mask: Option<&[f32]>,
    dst: &mut [f32],
) {
    const BLOCK: usize = 64;
    let lanes = dst.len() / (src.len() / ch);
    dst.par_chunks_mut(BLOCK * lanes)
        .enumerate()
        .for_each(|(blk, out)| {
            // Positions `blk·BLOCK..` of the flattened [n, plane], split at image boundaries.
            let mut q = blk * BLOCK;
            let end = q + out.len() / lanes;
            while q < end {
                let (n, p0) = (q / plane, q % plane);
                let len = (plane - p0).min(end - q);
                let o = &mut out[(q - blk * BLOCK) * lanes..][..len * lanes];
                for c in 0..ch {
                    let at = (n * ch + c) * plane + p0;
                    let vals = &src[at..at + len];
                    match mask {
                        Some(m) => {
                            for (k, (&v, &mv)) in vals.iter().zip(&m[at..at + len]).enumerate() {
                                o[k * lanes + c] = if mv > 0.0 { v } else { 0.0 };
                            }
                        }
                        None => {
                            for (k, &v) in vals.iter().enumerate() {
                                o[k * lanes + c] = v;
                            }
                        }
                    }
                }
                for k in 0..len {
                    o[k * lanes + ch..(k + 1) * lanes].fill(0.0);
                }
                q += len;
            }
        });
}

/// Whether the F(3×3) forward convolution applies to `s` (3 × 3 kernel, valid shape).
pub(crate) fn supports(s: &ConvShape) -> bool {
    s.kh == 3 && s.kw == 3 && s.is_valid()
}

/// Whether F(3×3) beats F(4×4) on `s`: fewer transformed points in all (25 per 3 × 3 tile
/// against 36 per 4 × 4 tile), by a margin that pays for its costlier transforms.
pub(crate) fn preferred(s: &ConvShape) -> bool {
    let (ho, wo) = (s.ho(), s.wo());
    let f3 = 25 * ho.div_ceil(3) * wo.div_ceil(3);
    let f4 = 36 * ho.div_ceil(4) * wo.div_ceil(4);
    supports(s) && s.c >= 64 && s.o >= 64 && 5 * f3 < 4 * f4
}

/// Forward convolution of `x` ([n, c, h, w]) with `weight` ([o, c, 3, 3]), optional `bias`
/// ([o]) and optional fused ReLU; returns [n, o, ho, wo].
pub(crate) fn forward(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    debug_assert!(supports(s));
    let geo = Geometry::new(s);
    let tiles = geo.tiles();
    let cw = s.c.div_ceil(LANES) * LANES;
    let ow = s.o.div_ceil(LANES) * LANES;
    let o_panels = s.o.div_ceil(NR);
    let chunk = CHUNK.min(tiles.div_ceil(MR) * MR);
    let (xt_len, u_len, v_len) = (s.n * s.h * s.w * cw, XI * s.c * ow, XI * chunk * s.c);

    let mut y = vec![0.0f32; s.n * s.o * s.ho() * s.wo()];
    let yp = SharedMut(y.as_mut_ptr());
    with_pooled(xt_len + u_len + v_len, |buf| {
        let (xt, rest) = buf.split_at_mut(xt_len);
        let (u, v) = rest.split_at_mut(u_len);
        channels_last(x, s.c, s.h * s.w, None, xt);
        transform_weights(isa, s, weight, ow, u);
        let (xt, u) = (&*xt, &*u);
        for t0 in (0..tiles).step_by(chunk) {
            let nt = chunk.min(tiles - t0);
            let t_panels = nt.div_ceil(MR);
            transform_tiles(isa, &geo, xt, cw, t0, nt, v);
            let v = &*v;
            let t_blocks = t_panels.div_ceil(TB);
            (0..t_blocks * o_panels).into_par_iter().for_each(|task| {
                let (tb, op) = (task / o_panels, task % o_panels);
                let w = panel_width(NR.min(s.o - op * NR));
                let tps = tb * TB..t_panels.min(tb * TB + TB);
                let rows = (tps.end - tps.start) * MR;
                with_scratch(XI * rows * w, |acc| {
                    for xi in 0..XI {
                        let b = &u[xi * s.c * ow + op * NR * s.c..][..s.c * w];
                        for (k, tp) in tps.clone().enumerate() {
                            let a = &v[(xi * t_panels + tp) * s.c * MR..][..s.c * MR];
                            // SAFETY: `a` holds c·MR floats and `b` c·w; the target is the
                            // MR × w tile (ξ, k) of the task's accumulator, row stride `w`.
                            unsafe {
                                micro(
                                    isa,
                                    s.c,
                                    a.as_ptr(),
                                    b.as_ptr(),
                                    w,
                                    acc[(xi * rows + k * MR) * w..].as_mut_ptr(),
                                    w,
                                    false,
                                );
                            }
                        }
                    }
                    let block = TileBlock {
                        t0: t0 + tps.start * MR,
                        tiles: rows.min(nt - tps.start * MR),
                        o0: op * NR,
                        outs: NR.min(s.o - op * NR),
                        rows,
                        w,
                    };
                    // SAFETY: the task's tiles × output channels are written by it alone.
                    dispatch_isa!(isa, output_tiles(&geo, acc, &block, bias, relu, yp));
                });
            });
        }
    });
    y
}

/// Fills `u` as `[ξ][o-panel][c][width]` (`ow` columns per (ξ, c) row of panels) with
/// `G g Gᵀ` of every 3 × 3 kernel.
fn transform_weights(isa: Isa, s: &ConvShape, weight: &[f32], ow: usize, u: &mut [f32]) {
    let up = SharedMut(u.as_mut_ptr());
    (0..s.o.div_ceil(NR)).into_par_iter().for_each(|op| {
        // SAFETY: each o-panel writes its own rows of `u` (whole rows, so no two threads share
        // a cache line).
        with_scratch(XI * STAGE * NR, |stage| {
            // At most AVX2: with AVX-512 the compiler turns the lane shuffles into gathers and
            // scatters, which measure 3× slower here.
            dispatch_isa!(
                isa.min(Isa::Avx2),
                weight_panel(s, weight, ow, op, stage, up)
            );
        });
    });
}

/// The weight transform of o-panel `op` (see [`transform_weights`]). Blocks of [`STAGE`] input
/// channels are transformed into a staging buffer first, so that each ξ receives one
/// contiguous run instead of 25 scattered rows per channel (which would miss the TLB on every
/// store).
#[inline(always)]
fn weight_panel(
    s: &ConvShape,
    weight: &[f32],
    ow: usize,
    op: usize,
    stage: &mut [f32],
    u: SharedMut,
) {
    let w = panel_width(NR.min(s.o - op * NR));
    {
        for c0 in (0..s.c).step_by(STAGE) {
            let nc = STAGE.min(s.c - c0);
            for ci in 0..nc {
                for lane0 in (0..w).step_by(LANES) {
                    let o0 = op * NR + lane0;
                    let mut g = [[[0.0f32; LANES]; TILE]; TILE];
                    for (l, o) in (o0..s.o.min(o0 + LANES)).enumerate() {
                        let k = &weight[(o * s.c + c0 + ci) * 9..][..9];
                        for (t, &v) in k.iter().enumerate() {
                            g[t / TILE][t % TILE][l] = v;
                        }
                    }
                    for (xi, val) in transform_kernel(&g).iter().flatten().enumerate() {
                        stage[(xi * STAGE + ci) * w + lane0..][..LANES].copy_from_slice(val);
                    }
                }
            }
            for xi in 0..XI {
                // SAFETY: rows `c0..c0 + nc` of panel `op` of the ξ-th `U` lie inside `u`
                // (XI·c·ow floats) and belong to this panel.
                unsafe {
                    let dst = u.ptr().add(xi * s.c * ow + op * NR * s.c + c0 * w);
                    std::ptr::copy_nonoverlapping(stage[xi * STAGE * w..].as_ptr(), dst, nc * w);
                }
            }
        }
    }
}

/// Fills `v` as `[ξ][tile-panel][c][MR]` with `Bᵀ d B` of the input patches of tiles
/// `t0..t0 + nt` (the tiles past `nt` in the last panel zero).
fn transform_tiles(
    isa: Isa,
    geo: &Geometry,
    xt: &[f32],
    cw: usize,
    t0: usize,
    nt: usize,
    v: &mut [f32],
) {
    let t_panels = nt.div_ceil(MR);
    let vp = SharedMut(v.as_mut_ptr());
    (0..t_panels).into_par_iter().for_each(|tp| {
        // SAFETY: each tile panel writes its own `[c][MR]` blocks of `v`.
        dispatch_isa!(isa, tile_panel(geo, xt, cw, t0, nt, tp, vp));
    });
}

/// The input transform of tile panel `tp` (see [`transform_tiles`]).
#[inline(always)]
fn tile_panel(
    geo: &Geometry,
    xt: &[f32],
    cw: usize,
    t0: usize,
    nt: usize,
    tp: usize,
    v: SharedMut,
) {
    let c = geo.s.c;
    let t_panels = nt.div_ceil(MR);
    let count = MR.min(nt - tp * MR);
    for c0 in (0..c).step_by(LANES) {
        // [ξ][channel][tile]: transposed so that each channel's MR tiles are contiguous.
        let mut out = [[[0.0f32; MR]; LANES]; XI];
        #[allow(clippy::needless_range_loop)] // `l` is the tile and the innermost index of `out`
        for l in 0..count {
            let d = geo.patch(xt, cw, t0 + tp * MR + l, c0);
            let td = transform_patch(&d);
            for (xi, val) in td.iter().flatten().enumerate() {
                for (k, &x) in val.iter().enumerate() {
                    out[xi][k][l] = x;
                }
            }
        }
        let lanes = LANES.min(c - c0);
        for (xi, o) in out.iter().enumerate() {
            // SAFETY: rows `c0..c0 + lanes` of panel `tp` of the ξ-th `V` lie inside `v`
            // (XI·t_panels·c·MR floats) and belong to this panel.
            unsafe {
                let dst = v.ptr().add(((xi * t_panels + tp) * c + c0) * MR);
                std::ptr::copy_nonoverlapping(o.as_ptr().cast::<f32>(), dst, lanes * MR);
            }
        }
    }
}

/// The accumulators of one forward task: `tiles` tiles from `t0` by `outs` output channels from
/// `o0`, stored `[ξ][rows][w]`.
struct TileBlock {
    t0: usize,
    tiles: usize,
    o0: usize,
    outs: usize,
    rows: usize,
    w: usize,
}

/// Output transform, bias and ReLU of one forward task, scattered into the NCHW output `y`.
#[inline(always)]
fn output_tiles(
    geo: &Geometry,
    acc: &[f32],
    blk: &TileBlock,
    bias: Option<&[f32]>,
    relu: bool,
    y: SharedMut,
) {
    let s = &geo.s;
    let (ho, wo) = (s.ho(), s.wo());
    for r in 0..blk.tiles {
        let (n, ty, tx) = geo.tile(blk.t0 + r);
        for l0 in (0..blk.outs).step_by(LANES) {
            let mut m = [[[0.0f32; LANES]; PATCH]; PATCH];
            for (xi, mv) in m.iter_mut().flatten().enumerate() {
                mv.copy_from_slice(&acc[(xi * blk.rows + r) * blk.w + l0..][..LANES]);
            }
            let mut out = inverse(&m);
            let mut b = [0.0f32; LANES];
            let lanes = LANES.min(blk.outs - l0);
            if let Some(bias) = bias {
                b[..lanes].copy_from_slice(&bias[blk.o0 + l0..][..lanes]);
            }
            for v in out.iter_mut().flatten() {
                for (x, &bv) in v.iter_mut().zip(&b) {
                    *x += bv;
                    if relu {
                        *x = x.max(0.0);
                    }
                }
            }
            for (i, oi) in out.iter().enumerate().take(ho - ty * TILE) {
                for (j, v) in oi.iter().enumerate().take(wo - tx * TILE) {
                    let p = (ty * TILE + i) * wo + tx * TILE + j;
                    for (l, &x) in v.iter().enumerate().take(lanes) {
                        let o = blk.o0 + l0 + l;
                        // SAFETY: (n, o, p) is an output of this task's tiles and channels.
                        unsafe { *y.ptr().add((n * s.o + o) * ho * wo + p) = x };
                    }
                }
            }
        }
    }
}

/// Lane-wise `Σ_k coef[k] · v[k]`.
#[inline(always)]
fn lin<const L: usize, const K: usize>(coef: [f32; K], v: [&[f32; L]; K]) -> [f32; L] {
    let mut out = [0.0f32; L];
    for (k, &cf) in coef.iter().enumerate() {
        if cf != 0.0 {
            for (o, &x) in out.iter_mut().zip(v[k]) {
                *o += cf * x;
            }
        }
    }
    out
}

/// `G g` for one column of three lane vectors (rows scaled so that `Bᵀ` is integral).
#[inline(always)]
fn apply_g<const L: usize>(r: [&[f32; L]; 3]) -> [[f32; L]; PATCH] {
    const S: f32 = 1.0 / 6.0;
    [
        lin([0.5, 0.0, 0.0], r),
        lin([0.5, 0.5, 0.5], r),
        lin([S, -S, S], r),
        lin([S, 2.0 * S, 4.0 * S], r),
        lin([0.0, 0.0, 1.0], r),
    ]
}

/// `Bᵀ d` for one column of five lane vectors.
#[inline(always)]
fn apply_bt<const L: usize>(r: [&[f32; L]; PATCH]) -> [[f32; L]; PATCH] {
    [
        lin([2.0, -1.0, -2.0, 1.0, 0.0], r),
        lin([0.0, 2.0, 1.0, -1.0, 0.0], r),
        lin([0.0, -2.0, 3.0, -1.0, 0.0], r),
        lin([0.0, -1.0, 0.0, 1.0, 0.0], r),
        lin([0.0, 2.0, -1.0, -2.0, 1.0], r),
    ]
}

/// `Aᵀ m` for one column of five lane vectors.
#[inline(always)]
fn apply_at<const L: usize>(r: [&[f32; L]; PATCH]) -> [[f32; L]; TILE] {
    [
        lin([1.0, 1.0, 1.0, 1.0, 0.0], r),
        lin([0.0, 1.0, -1.0, 2.0, 0.0], r),
        lin([0.0, 1.0, 1.0, 4.0, 1.0], r),
    ]
}

/// `G g Gᵀ`: a 3 × 3 kernel (or gradient tile) to the 5 × 5 transformed domain.
#[inline(always)]
pub(crate) fn transform_kernel<const L: usize>(g: &Block<L, 3, 3>) -> Block<L, 5, 5> {
    let mut cols = [[[0.0f32; L]; PATCH]; TILE];
    for (j, col) in cols.iter_mut().enumerate() {
        *col = apply_g([&g[0][j], &g[1][j], &g[2][j]]);
    }
    let mut out = [[[0.0f32; L]; PATCH]; PATCH];
    for (a, row) in out.iter_mut().enumerate() {
        *row = apply_g([&cols[0][a], &cols[1][a], &cols[2][a]]);
    }
    out
}

/// `Bᵀ d B`: a 5 × 5 input patch to the transformed domain.
#[inline(always)]
pub(crate) fn transform_patch<const L: usize>(d: &Block<L, 5, 5>) -> Block<L, 5, 5> {
    let mut cols = [[[0.0f32; L]; PATCH]; PATCH];
    for (j, col) in cols.iter_mut().enumerate() {
        *col = apply_bt([&d[0][j], &d[1][j], &d[2][j], &d[3][j], &d[4][j]]);
    }
    let mut out = [[[0.0f32; L]; PATCH]; PATCH];
    for (a, row) in out.iter_mut().enumerate() {
        *row = apply_bt([
            &cols[0][a],
            &cols[1][a],
            &cols[2][a],
            &cols[3][a],
            &cols[4][a],
        ]);
    }
    out
}

/// `Aᵀ m A`: a transformed tile back to its 3 × 3 outputs.
#[inline(always)]
pub(crate) fn inverse<const L: usize>(m: &Block<L, 5, 5>) -> Block<L, 3, 3> {
    let mut cols = [[[0.0f32; L]; TILE]; PATCH];
    for (b, col) in cols.iter_mut().enumerate() {
        *col = apply_at([&m[0][b], &m[1][b], &m[2][b], &m[3][b], &m[4][b]]);
    }
    let mut out = [[[0.0f32; L]; TILE]; TILE];
    for (i, row) in out.iter_mut().enumerate() {
        *row = apply_at([
            &cols[0][i],
            &cols[1][i],
            &cols[2][i],
            &cols[3][i],
            &cols[4][i],
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tile of the 1-D transforms reproduces the direct correlation (up to rounding):
    /// `Aᵀ [(G g) ⊙ (Bᵀ d)]`.
    #[test]
    fn one_dimensional_transform_is_a_correlation() {
        let g = [0.3f32, -1.2, 0.7];
        let d = [1.0f32, -0.5, 2.0, 0.25, -1.5];
        let (g1, d1) = (g.map(|v| [v]), d.map(|v| [v]));
        let gg = apply_g([&g1[0], &g1[1], &g1[2]]);
        let bd = apply_bt([&d1[0], &d1[1], &d1[2], &d1[3], &d1[4]]);
        let p: [[f32; 1]; PATCH] = std::array::from_fn(|k| [gg[k][0] * bd[k][0]]);
        let y = apply_at([&p[0], &p[1], &p[2], &p[3], &p[4]]);
        for i in 0..TILE {
            let want: f32 = (0..3).map(|s| g[s] * d[i + s]).sum();
            assert!(
                (y[i][0] - want).abs() < 1e-5,
                "tap {i}: {} vs {want}",
                y[i][0]
            );
        }
    }

    /// The 2-D transforms: `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` is the 3 × 3 correlation of a patch.
    #[test]
    fn two_dimensional_transform_is_a_correlation() {
        let g: Block<1, 3, 3> =
            std::array::from_fn(|i| std::array::from_fn(|j| [((i * 3 + j) as f32 * 0.37).sin()]));
        let d: Block<1, 5, 5> =
            std::array::from_fn(|i| std::array::from_fn(|j| [((i * 5 + j) as f32 * 0.71).cos()]));
        let (tg, td) = (transform_kernel(&g), transform_patch(&d));
        let m: Block<1, 5, 5> =
            std::array::from_fn(|a| std::array::from_fn(|b| [tg[a][b][0] * td[a][b][0]]));
        let y = inverse(&m);
        for i in 0..TILE {
            for j in 0..TILE {
                let want: f32 = (0..9)
                    .map(|k| g[k / 3][k % 3][0] * d[i + k / 3][j + k % 3][0])
                    .sum();
                assert!(
                    (y[i][j][0] - want).abs() < 1e-5,
                    "({i}, {j}): {} vs {want}",
                    y[i][j][0]
                );
            }
        }
    }
}
