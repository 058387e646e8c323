//! A general strided matrix product on the packed micro-kernels of [`crate::gemm`], for the
//! differentiable 1 × 1 and strided convolutions (forward, input and weight gradients).
//!
//! `C (+)= A · B` with `A` `m × k` and `B` `k × n` given as strided views, so transposed
//! operands need no copy beyond the packing every GEMM does: `A` is packed into [`MR`]-row
//! panels once, `B` into `[kc][width]` panels per task. Tasks own a block of up to 192 columns
//! and 32 rows of `C` and write disjoint parts of it.

use crate::gemm::{MR, NR, micro, panel_width};
use crate::isa::Isa;
use crate::scratch::with_scratch;
use crate::shape::SharedMut;
use rayon::prelude::*;

/// Reduction steps per packed block of `B`.
const KC: usize = 256;
/// Columns per task.
const NC: usize = 4 * NR;
/// Row panels per task.
const RP: usize = 4;

/// A strided view of a matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major view with row stride `ld`.
    pub(crate) fn rows(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with row stride `ld`.
    pub(crate) fn cols(data: &'a [f32], ld: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: ld,
        }
    }
}

/// `c[i·ldc + j] (+)= Σ_kk a(i, kk) · b(kk, j)` for `i < m`, `j < n` (added to `c` when
/// `accumulate`, else overwriting it).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * ldc..i * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let mpanels = m.div_ceil(MR);
    let mut apack = vec![0.0f32; mpanels * k * MR];
    apack
        .par_chunks_mut(k * MR)
        .enumerate()
        .for_each(|(p, dst)| {
            for r in 0..MR.min(m - p * MR) {
                let row = p * MR + r;
                for kk in 0..k {
                    dst[kk * MR + r] = a.data[row * a.rs + kk * a.cs];
                }
            }
        });
    let cblocks = n.div_ceil(NC);
    let rchunks = mpanels.div_ceil(RP);
    let cp = SharedMut(c.as_mut_ptr());
    let bsize = KC.min(k) * NC;
    (0..cblocks * rchunks).into_par_iter().for_each(|task| {
        let (cb, rc) = (task / rchunks, task % rchunks);
        let j0 = cb * NC;
        let cols = NC.min(n - j0);
        let p0 = rc * RP;
        let p1 = (p0 + RP).min(mpanels);
        with_scratch(bsize + RP * MR * NC, |buf| {
            let (bpack, cbuf) = buf.split_at_mut(bsize);
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                pack_b(b, kb, kc, j0, cols, bpack);
                for p in p0..p1 {
                    let ap = &apack[(p * k + kb) * MR..];
                    let mut col = 0;
                    while col < cols {
                        let width = panel_width(NR.min(cols - col));
                        // SAFETY: `ap` holds kc·MR floats of this panel, the B panel kc·width,
                        // and the C tile MR rows of NC ≥ col + width floats.
                        unsafe {
                            micro(
                                isa,
                                kc,
                                ap.as_ptr(),
                                bpack[col * kc..].as_ptr(),
                                width,
                                cbuf[(p - p0) * MR * NC + col..].as_mut_ptr(),
                                NC,
                                kb > 0,
                            )
                        };
                        col += NR.min(cols - col);
                    }
                }
            }
            for p in p0..p1 {
                for r in 0..MR.min(m - p * MR) {
                    let i = p * MR + r;
                    let src = &cbuf[((p - p0) * MR + r) * NC..][..cols];
                    // SAFETY: this task owns rows p0·MR.. and columns j0..j0 + cols of C.
                    let dst =
                        unsafe { std::slice::from_raw_parts_mut(cp.ptr().add(i * ldc + j0), cols) };
                    if accumulate {
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d += s;
                        }
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
            }
        });
    });
}

/// Packs rows `kb..kb + kc` and columns `j0..j0 + cols` of `b` into `[panel][kc][width]`
/// panels of up to [`NR`] columns (panel `p` at offset `p·NR·kc`), zero-filled to the width.
fn pack_b(b: Mat<'_>, kb: usize, kc: usize, j0: usize, cols: usize, out: &mut [f32]) {
    let mut col = 0;
    while col < cols {
        let nc = NR.min(cols - col);
        let width = panel_width(nc);
        let panel = &mut out[col * kc..col * kc + kc * width];
        for kk in 0..kc {
            let dst = &mut panel[kk * width..(kk + 1) * width];
            let base = (kb + kk) * b.rs + (j0 + col) * b.cs;
            if b.cs == 1 {
                dst[..nc].copy_from_slice(&b.data[base..base + nc]);
            } else {
                for (j, d) in dst[..nc].iter_mut().enumerate() {
                    *d = b.data[base + j * b.cs];
                }
            }
            dst[nc..].fill(0.0);
        }
        col += nc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_the_definition() {
        for &(m, n, k) in &[(1, 1, 1), (9, 50, 3), (17, 200, 300), (40, 7, 19)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 11) as f32 / 5.0 - 1.0)
                .collect();
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                // A row-major, B transposed (stored n × k).
                let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                let mut c = vec![1.0f32; m * n];
                gemm(
                    isa,
                    m,
                    n,
                    k,
                    Mat::rows(&a, k),
                    Mat::cols(&bt, k),
                    &mut c,
                    n,
                    true,
                );
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = 1.0
                            + (0..k)
                                .map(|kk| a[i * k + kk] as f64 * b[kk * n + j] as f64)
                                .sum::<f64>();
                        assert!(
                            (c[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "{isa:?}"
                        );
                    }
                }
            }
        }
    }
}
