//! Weight gradient of a 3 × 3, stride-1 convolution by Winograd F(3×3, 3×3).
//!
//! `gw[o, c, i, j] = Σ_{n, p} gy[n, o, p] · xpad[n, c, p + (i, j)]` is a correlation of the
//! input with the output gradient whose result is 3 × 3. Cut the output gradient into 3 × 3
//! tiles: each tile contributes the F(3×3, 3×3) Winograd correlation of its 5 × 5 input patch
//! `d` with the gradient tile `g`, `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` (interpolation points 0, ±1, 2,
//! ∞). The output transform is linear, so the element-wise products are summed over tiles and
//! images first: 25 GEMMs `M_ξ[o, c] = Σ_t U_ξ[o, t] · V_ξ[t, c]`, then one output transform per
//! (o, c) pair. That is 25 multiplications per (o, c, tile) instead of 81: 3.24× fewer than the
//! direct GEMM of [`crate::wgrad_gemm`], which pays off when the channel counts make the GEMMs
//! dominate (block 5 of VGG16 has 512 × 512 channel pairs and 9 × 9 outputs, exactly 3 × 3
//! tiles).
//!
//! The transforms are those of [`crate::winograd3`]. Both operands are first copied
//! channels-last (the gradient masked by the ReLU). Tiles of the whole batch are processed in
//! chunks of up to [`TC`]: the gradient transform writes `U` as packed [`MR`]-row panels, the
//! input transform writes `V` as packed column panels of up to [`NR`] input channels. Each GEMM
//! task owns [`OB`] output-channel panels × one input-channel panel and accumulates all 25
//! products in a private block, so tasks never share writes; after the last chunk it applies
//! the output transform and writes its 3 × 3 kernels.

use crate::gemm::{LANES, MR, NR, micro, panel_width};
use crate::isa::{Isa, dispatch_isa};
use crate::scratch::{with_pooled, with_scratch};
use crate::shape::{ConvShape, SharedMut};
use crate::winograd3::{
    Geometry, PATCH, STAGE, TILE, XI, channels_last, inverse, transform_kernel, transform_patch,
};
use rayon::prelude::*;

/// Tiles per chunk: the reduction length of one round of GEMMs.
const TC: usize = 256;

/// Whether the Winograd weight gradient applies to `s` (3 × 3 kernel, valid shape).
pub(crate) fn supports(s: &ConvShape) -> bool {
    s.kh == 3 && s.kw == 3 && s.is_valid()
}

/// Whether the Winograd weight gradient is the fastest measured choice for `s`: enough channel
/// pairs for the 25 GEMMs to dominate the transforms (`cargo bench -p kernels --bench conv --
/// wgrad`: about 2× the GEMM from 64 × 64 channels up, slower than the row-dot kernel at 32).
pub(crate) fn preferred(s: &ConvShape) -> bool {
    supports(s) && s.c >= 64 && s.o >= 64
}

/// Output-channel panels per GEMM task: the task's accumulators (25 × 32 × 48 floats) stay in
/// L2 while each `V` panel is read once per ξ.
const OB: usize = 4;

/// Weight gradient `[o, c, 3, 3]` of the convolution `s` from the input `x` ([n, c, h, w]) and
/// the output gradient `gy` ([n, o, ho, wo]); with `relu_out` (the forward output, same shape as
/// `gy`), `gy` is first masked by `relu_out > 0`.
pub(crate) fn weight_grad(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    debug_assert!(supports(s));
    let geo = Geometry::new(s);
    let o_panels = s.o.div_ceil(MR);
    let c_panels = s.c.div_ceil(NR);
    let o_blocks = o_panels.div_ceil(OB);
    // Columns of a full row of `V` panels: `c` rounded up to whole lanes.
    let cw = s.c.div_ceil(LANES) * LANES;
    let tiles = s.n * geo.th * geo.tw;
    let tc = TC.min(tiles);
    // Per task: the accumulators of OB o-panels × one c-panel for every ξ.
    let acc_len = XI * OB * MR * NR;
    let (u_len, v_len) = (XI * o_panels * tc * MR, XI * tc * cw);
    let (plane_in, plane_out) = (s.h * s.w, s.ho() * s.wo());
    let (xt_len, gt_len) = (s.n * plane_in * cw, s.n * plane_out * o_panels * MR);

    let mut gw = vec![0.0f32; s.o * s.c * 9];
    let gwp = SharedMut(gw.as_mut_ptr());
    let len = xt_len + gt_len + u_len + v_len + o_blocks * c_panels * acc_len;
    with_pooled(len, |buf| {
        let (xt, rest) = buf.split_at_mut(xt_len);
        let (gt, rest) = rest.split_at_mut(gt_len);
        let (u, rest) = rest.split_at_mut(u_len);
        let (v, acc) = rest.split_at_mut(v_len);
        let accp = SharedMut(acc.as_mut_ptr());
        channels_last(x, s.c, plane_in, None, xt);
        channels_last(gy, s.o, plane_out, relu_out, gt);
        let (xt, gt) = (&*xt, &*gt);
        for t0 in (0..tiles).step_by(TC) {
            let nt = TC.min(tiles - t0);
            let last = t0 + nt == tiles;
            transform_gradient(isa, &geo, gt, t0, nt, u);
            transform_input(isa, &geo, xt, t0, nt, cw, v);
            let (u, v) = (&*u, &*v);
            (0..o_blocks * c_panels).into_par_iter().for_each(|task| {
                let (ob, cp) = (task / c_panels, task % c_panels);
                let w = panel_width(NR.min(s.c - cp * NR));
                let ops = ob * OB..o_panels.min(ob * OB + OB);
                // SAFETY: each task owns its accumulator block.
                let acc = unsafe {
                    std::slice::from_raw_parts_mut(accp.ptr().add(task * acc_len), acc_len)
                };
                for xi in 0..XI {
                    let b = &v[xi * nt * cw + cp * NR * nt..][..nt * w];
                    for (k, op) in ops.clone().enumerate() {
                        let a = &u[(xi * o_panels + op) * nt * MR..][..nt * MR];
                        // SAFETY: `a` holds nt·MR floats and `b` nt·w; the target is the
                        // task's MR × w tile for (ξ, op), row stride `w`.
                        unsafe {
                            micro(
                                isa,
                                nt,
                                a.as_ptr(),
                                b.as_ptr(),
                                w,
                                acc[(xi * OB + k) * MR * w..].as_mut_ptr(),
                                w,
                                t0 > 0,
                            );
                        }
                    }
                }
                if last {
                    let rows = (ops.end - ops.start) * MR;
                    let block = OutputBlock {
                        o0: ob * OB * MR,
                        rows: rows.min(s.o - ob * OB * MR),
                        c0: cp * NR,
                        cols: NR.min(s.c - cp * NR),
                        stride: OB * MR * w,
                        w,
                    };
                    // SAFETY: the block's (o, c) pairs belong to this task alone.
                    dispatch_isa!(isa, output_block(s, acc, &block, gwp));
                }
            });
        }
    });
    gw
}

/// Fills `u` as `[ξ][o-panel][nt][MR]` with `G g Gᵀ` of the gradient tiles `t0..t0 + nt`, from
/// the channels-last gradient `gt` ([n, ho, wo, o-panels·MR]).
fn transform_gradient(isa: Isa, geo: &Geometry, gt: &[f32], t0: usize, nt: usize, u: &mut [f32]) {
    let s = &geo.s;
    let o_panels = s.o.div_ceil(MR);
    let up = SharedMut(u.as_mut_ptr());
    (0..o_panels).into_par_iter().for_each(|op| {
        // SAFETY: each o-panel writes its own `[nt][MR]` blocks of `u`.
        // At most AVX2: with AVX-512 the compiler turns the lane shuffles into gathers and
        // scatters, which measure 3× slower here.
        dispatch_isa!(isa.min(Isa::Avx2), gradient_panel(geo, gt, t0, nt, op, up));
    });
}

/// The gradient transform of one o-panel (see [`transform_gradient`]).
#[inline(always)]
fn gradient_panel(geo: &Geometry, gt: &[f32], t0: usize, nt: usize, op: usize, u: SharedMut) {
    let s = &geo.s;
    let (ho, wo) = (s.ho(), s.wo());
    let o_panels = s.o.div_ceil(MR);
    let lanes = o_panels * MR;
    let mut stage = [[0.0f32; MR * STAGE]; XI];
    for b0 in (0..nt).step_by(STAGE) {
        let nb = STAGE.min(nt - b0);
        for tl in 0..nb {
            let (n, ty, tx) = geo.tile(t0 + b0 + tl);
            let mut g = [[[0.0f32; MR]; TILE]; TILE];
            for (i, gi) in g.iter_mut().enumerate().take(ho - ty * TILE) {
                for (j, gij) in gi.iter_mut().enumerate().take(wo - tx * TILE) {
                    let at = ((n * ho + ty * TILE + i) * wo + tx * TILE + j) * lanes + op * MR;
                    gij.copy_from_slice(&gt[at..at + MR]);
                }
            }
            for (xi, val) in transform_kernel(&g).iter().flatten().enumerate() {
                stage[xi][tl * MR..][..MR].copy_from_slice(val);
            }
        }
        for (xi, st) in stage.iter().enumerate() {
            // SAFETY: tiles `b0..b0 + nb` of block `[ξ][op]` lie inside `u` (XI·o_panels·nt·MR
            // floats) and belong to this o-panel.
            unsafe {
                let dst = u.ptr().add(((xi * o_panels + op) * nt + b0) * MR);
                std::ptr::copy_nonoverlapping(st.as_ptr(), dst, nb * MR);
            }
        }
    }
}

/// Fills `v` as `[ξ][c-panel][nt][width]` with `Bᵀ d B` of the input patches of tiles
/// `t0..t0 + nt` (`cw` columns per ξ), from the channels-last input `xt` ([n, h, w, cw]).
fn transform_input(
    isa: Isa,
    geo: &Geometry,
    xt: &[f32],
    t0: usize,
    nt: usize,
    cw: usize,
    v: &mut [f32],
) {
    let vp = SharedMut(v.as_mut_ptr());
    (0..geo.s.c.div_ceil(NR)).into_par_iter().for_each(|cp| {
        // SAFETY: each c-panel writes its own rows of `v` (whole rows, so no two threads share a
        // cache line).
        with_scratch(XI * STAGE * NR, |stage| {
            dispatch_isa!(isa, input_panel(geo, xt, t0, nt, cw, cp, stage, vp));
        });
    });
}

/// The input transform of c-panel `cp` (see [`transform_input`]), staged by blocks of
/// [`STAGE`] tiles so that each ξ receives one contiguous run.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn input_panel(
    geo: &Geometry,
    xt: &[f32],
    t0: usize,
    nt: usize,
    cw: usize,
    cp: usize,
    stage: &mut [f32],
    v: SharedMut,
) {
    let s = &geo.s;
    let w = panel_width(NR.min(s.c - cp * NR));
    {
        for b0 in (0..nt).step_by(STAGE) {
            let nb = STAGE.min(nt - b0);
            for tl in 0..nb {
                for lane0 in (0..w).step_by(LANES) {
                    let d = geo.patch(xt, cw, t0 + b0 + tl, cp * NR + lane0);
                    for (xi, val) in transform_patch(&d).iter().flatten().enumerate() {
                        stage[(xi * STAGE + tl) * w + lane0..][..LANES].copy_from_slice(val);
                    }
                }
            }
            for xi in 0..XI {
                // SAFETY: rows `b0..b0 + nb` of panel `cp` of the ξ-th `V` lie inside `v`
                // (XI·nt·cw floats) and belong to this panel.
                unsafe {
                    let dst = v.ptr().add(xi * nt * cw + cp * NR * nt + b0 * w);
                    std::ptr::copy_nonoverlapping(stage[xi * STAGE * w..].as_ptr(), dst, nb * w);
                }
            }
        }
    }
}

/// The accumulators of one GEMM task: `rows` output channels from `o0` and `cols` input
/// channels from `c0`, stored `[ξ][row][w]` with `stride` floats per ξ.
struct OutputBlock {
    o0: usize,
    rows: usize,
    c0: usize,
    cols: usize,
    stride: usize,
    w: usize,
}

/// `gw[o, c, 3, 3] = Aᵀ M[·][o, c] A` for the channel pairs of one task.
#[inline(always)]
fn output_block(s: &ConvShape, acc: &[f32], blk: &OutputBlock, gw: SharedMut) {
    for r in 0..blk.rows {
        for l0 in (0..blk.cols).step_by(LANES) {
            let mut m = [[[0.0f32; LANES]; PATCH]; PATCH];
            for (xi, mv) in m.iter_mut().flatten().enumerate() {
                mv.copy_from_slice(&acc[xi * blk.stride + r * blk.w + l0..][..LANES]);
            }
            // The 16 channels' 3 × 3 kernels are contiguous in `gw`: transpose into place.
            let mut out = [0.0f32; LANES * 9];
            for (k, taps) in inverse(&m).iter().flatten().enumerate() {
                for (l, &x) in taps.iter().enumerate() {
                    out[l * 9 + k] = x;
                }
            }
            let lanes = LANES.min(blk.cols - l0);
            // SAFETY: the pairs (o0 + r, c0 + l0 .. c0 + l0 + lanes) belong to this task.
            unsafe {
                let dst = gw.ptr().add(((blk.o0 + r) * s.c + blk.c0 + l0) * 9);
                std::ptr::copy_nonoverlapping(out.as_ptr(), dst, lanes * 9);
            }
        }
    }
}
