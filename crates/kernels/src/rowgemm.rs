//! Channels-last GEMM with a fused epilogue, for 1 × 1 convolutions and im2col rows.
//!
//! `C[i, :] = act(A[i, :] · B + bias (+ R[i, :]))` for rows `i < m`, where each row of `A`
//! (the input channels of one pixel), of `C` and of the residual `R` is found through a
//! pointer function: the rows of a channels-last (NHWC) map, of a padded ring buffer or of an
//! im2col band all fit. `B` (the weights, `[k][n]`) is packed once into [`Panels`] of 16 (or,
//! for the last, 8) output channels. The micro-kernel keeps a `6 × 16` tile of `C` in twelve
//! 8-lane accumulators (AVX2 + FMA) and broadcasts `A` straight from its rows, so `A` is never
//! packed; bias, residual and ReLU6 are applied while the tile is stored.

use crate::isa::Isa;

/// Rows of `C` per micro-tile.
pub(crate) const TILE_ROWS: usize = 6;
/// Widest panel of `B`.
const PANEL: usize = 16;
/// Rows of `A` per cache block (each block runs every panel of `B` before the next block).
const ROW_BLOCK: usize = 96;

/// The weights `[k][n]` as panels of up to 16 columns, each `[k][width]` with `width` 8 or 16,
/// zero-filled past `n`, plus the bias zero-filled to the panel widths.
#[derive(Clone, Debug)]
pub(crate) struct Panels {
    k: usize,
    n: usize,
    data: Vec<f32>,
    bias: Vec<f32>,
    /// `(first column, width, offset in data)` of each panel.
    panels: Vec<(usize, usize, usize)>,
}

impl Panels {
    /// Packs `B[kk][col] = get(kk, col)` (`kk < k`, `col < n`) and `bias` (length `n`).
    pub(crate) fn new(k: usize, n: usize, bias: &[f32], get: impl Fn(usize, usize) -> f32) -> Self {
        let mut panels = Vec::new();
        let mut data = Vec::new();
        let mut padded_bias = Vec::new();
        let mut col = 0;
        while col < n {
            let left = n - col;
            let width = if left > 8 { PANEL } else { 8 };
            panels.push((col, width, data.len()));
            for kk in 0..k {
                for j in 0..width {
                    data.push(if col + j < n { get(kk, col + j) } else { 0.0 });
                }
            }
            for j in 0..width {
                padded_bias.push(if col + j < n { bias[col + j] } else { 0.0 });
            }
            col += width.min(left);
        }
        Panels {
            k,
            n,
            data,
            bias: padded_bias,
            panels,
        }
    }

    /// Reduction length (input channels).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Output columns (output channels).
    pub(crate) fn n(&self) -> usize {
        self.n
    }
}

/// Raw row pointers of one tile.
type Rows<T> = [T; TILE_ROWS];

/// `C[i] = act(A[i] · B + bias (+ R[i]))` for `i < m`; see the module documentation.
///
/// # Safety
/// For every `i < m`, `a_row(i)` must address `panels.k()` readable floats, `c_row(i)`
/// `panels.n()` writable floats (not overlapping any `A` row still to be read), and
/// `res_row(i)`, when given, `panels.n()` readable floats.
pub(crate) unsafe fn gemm_rows(
    isa: Isa,
    m: usize,
    panels: &Panels,
    relu6: bool,
    a_row: impl Fn(usize) -> *const f32,
    c_row: impl Fn(usize) -> *mut f32,
    res_row: Option<&dyn Fn(usize) -> *const f32>,
) {
    let simd = isa >= Isa::Avx2 && Isa::Avx2.is_supported();
    let k = panels.k;
    // Row pointers of one block, computed once for every panel.
    let mut ap = [std::ptr::null::<f32>(); ROW_BLOCK];
    let mut cp = [std::ptr::null_mut::<f32>(); ROW_BLOCK];
    let mut rp = [std::ptr::null::<f32>(); ROW_BLOCK];
    for r0 in (0..m).step_by(ROW_BLOCK) {
        let rows_here = ROW_BLOCK.min(m - r0);
        for i in 0..rows_here {
            ap[i] = a_row(r0 + i);
            cp[i] = c_row(r0 + i);
            if let Some(f) = res_row {
                rp[i] = f(r0 + i);
            }
        }
        for &(col0, width, off) in &panels.panels {
            let cols = width.min(panels.n - col0);
            let b = panels.data[off..].as_ptr();
            // Every panel before the last is full, so its padded bias starts at its column.
            let bias = panels.bias[col0..].as_ptr();
            let mut t = 0;
            while t < rows_here {
                let rows = TILE_ROWS.min(rows_here - t);
                let mut a: Rows<*const f32> = [std::ptr::null(); TILE_ROWS];
                let mut c: Rows<*mut f32> = [std::ptr::null_mut(); TILE_ROWS];
                let mut r: Rows<*const f32> = [std::ptr::null(); TILE_ROWS];
                for i in 0..TILE_ROWS {
                    // Rows past `rows` repeat the last one (read, never stored).
                    let row = t + i.min(rows - 1);
                    a[i] = ap[row];
                    c[i] = cp[row].wrapping_add(col0);
                    r[i] = rp[row].wrapping_add(col0);
                }
                let t_args = TileArgs {
                    k,
                    a: &a,
                    b,
                    bias,
                    c: &c,
                    res: res_row.map(|_| &r),
                    cols,
                    relu6,
                };
                // SAFETY: as vouched by the caller; panels hold k·width floats.
                unsafe { run_tile(simd, rows, width, &t_args) };
                t += rows;
            }
        }
    }
}

/// The operands of one micro-tile.
struct TileArgs<'a> {
    k: usize,
    a: &'a Rows<*const f32>,
    b: *const f32,
    bias: *const f32,
    c: &'a Rows<*mut f32>,
    res: Option<&'a Rows<*const f32>>,
    cols: usize,
    relu6: bool,
}

/// Runs the micro-kernel for `rows` rows and a panel of `width` (8 or 16) columns.
///
/// # Safety
/// See [`gemm_rows`].
unsafe fn run_tile(simd: bool, rows: usize, width: usize, t: &TileArgs<'_>) {
    macro_rules! by_rows {
        ($f:ident, $nv:literal) => {
            match rows {
                6 => $f::<6, $nv>(t),
                5 => $f::<5, $nv>(t),
                4 => $f::<4, $nv>(t),
                3 => $f::<3, $nv>(t),
                2 => $f::<2, $nv>(t),
                _ => $f::<1, $nv>(t),
            }
        };
    }
    // SAFETY: forwarded from the caller; `simd` is only set when AVX2 + FMA are present.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if simd {
            if width == 16 {
                by_rows!(tile_avx2, 2)
            } else {
                by_rows!(tile_avx2, 1)
            }
            return;
        }
        let _ = simd;
        if width == 16 {
            by_rows!(tile_portable, 2)
        } else {
            by_rows!(tile_portable, 1)
        }
    }
}

/// Applies bias, residual and ReLU6 to one finished row of the tile and stores its valid
/// columns.
///
/// # Safety
/// `c` must address `cols` writable floats, `res` (when non-null) `cols` readable floats.
#[inline(always)]
unsafe fn store_row(
    acc: &[f32],
    bias: *const f32,
    c: *mut f32,
    res: *const f32,
    cols: usize,
    relu6: bool,
) {
    // SAFETY: forwarded from the caller; the bias is padded to the panel width.
    unsafe {
        for (j, &v) in acc.iter().enumerate().take(cols) {
            let mut v = v + *bias.add(j);
            if !res.is_null() {
                v += *res.add(j);
            }
            if relu6 {
                v = v.clamp(0.0, 6.0);
            }
            *c.add(j) = v;
        }
    }
}

/// Plain-Rust micro-kernel: `R` rows × `8·NV` columns.
///
/// # Safety
/// See [`gemm_rows`].
unsafe fn tile_portable<const R: usize, const NV: usize>(t: &TileArgs<'_>) {
    let mut acc = [[[0.0f32; 8]; NV]; R];
    // SAFETY: the caller guarantees k floats per A row and k·8·NV floats of B.
    unsafe {
        for kk in 0..t.k {
            let bk = t.b.add(kk * 8 * NV);
            for (i, row) in acc.iter_mut().enumerate() {
                let av = *t.a[i].add(kk);
                for (v, lanes) in row.iter_mut().enumerate() {
                    for (l, x) in lanes.iter_mut().enumerate() {
                        *x += av * *bk.add(v * 8 + l);
                    }
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            let mut flat = [0.0f32; 16];
            for (v, lanes) in row.iter().enumerate() {
                flat[v * 8..v * 8 + 8].copy_from_slice(lanes);
            }
            let res = t.res.map_or(std::ptr::null(), |r| r[i]);
            store_row(&flat[..8 * NV], t.bias, t.c[i], res, t.cols, t.relu6);
        }
    }
}

/// AVX2 + FMA micro-kernel: `R` rows × `8·NV` columns in `R·NV` ymm accumulators.
///
/// # Safety
/// See [`gemm_rows`]; the CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize, const NV: usize>(t: &TileArgs<'_>) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); NV]; R];
    let a = *t.a;
    // SAFETY: the caller guarantees k floats per A row and k·8·NV floats of B.
    unsafe {
        let mut bp = t.b;
        for kk in 0..t.k {
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, slot) in bv.iter_mut().enumerate() {
                *slot = _mm256_loadu_ps(bp.add(v * 8));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a[i].add(kk));
                for (r, &b) in row.iter_mut().zip(&bv) {
                    *r = _mm256_fmadd_ps(av, b, *r);
                }
            }
            bp = bp.add(8 * NV);
        }
        let full = t.cols == 8 * NV;
        let zero = _mm256_setzero_ps();
        let six = _mm256_set1_ps(6.0);
        for (i, row) in acc.iter().enumerate() {
            if full {
                for (v, &r) in row.iter().enumerate() {
                    let mut y = _mm256_add_ps(r, _mm256_loadu_ps(t.bias.add(v * 8)));
                    if let Some(res) = t.res {
                        y = _mm256_add_ps(y, _mm256_loadu_ps(res[i].add(v * 8)));
                    }
                    if t.relu6 {
                        y = _mm256_min_ps(_mm256_max_ps(y, zero), six);
                    }
                    _mm256_storeu_ps(t.c[i].add(v * 8), y);
                }
            } else {
                let mut flat = [0.0f32; 16];
                for (v, &r) in row.iter().enumerate() {
                    _mm256_storeu_ps(flat.as_mut_ptr().add(v * 8), r);
                }
                let res = t.res.map_or(std::ptr::null(), |r| r[i]);
                store_row(&flat[..8 * NV], t.bias, t.c[i], res, t.cols, t.relu6);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_plain_product_for_every_isa() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 5),
            (13, 27, 32),
            (50, 40, 24),
            (9, 17, 41),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7) % 13) as f32 / 6.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 11) as f32 / 5.0 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.1 - 1.0).collect();
            let res: Vec<f32> = (0..m * n).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
            let panels = Panels::new(k, n, &bias, |kk, col| w[kk * n + col]);
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                for (relu6, with_res) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let mut c = vec![f32::NAN; m * n + 1];
                    let cp = c.as_mut_ptr();
                    let rf = |i: usize| res[i * n..].as_ptr();
                    // SAFETY: every row pointer addresses a full row of its matrix.
                    unsafe {
                        gemm_rows(
                            isa,
                            m,
                            &panels,
                            relu6,
                            |i| a[i * k..].as_ptr(),
                            |i| cp.add(i * n),
                            if with_res { Some(&rf) } else { None },
                        )
                    };
                    for i in 0..m {
                        for j in 0..n {
                            let mut want = bias[j] as f64;
                            for kk in 0..k {
                                want += a[i * k + kk] as f64 * w[kk * n + j] as f64;
                            }
                            if with_res {
                                want += res[i * n + j] as f64;
                            }
                            if relu6 {
                                want = want.clamp(0.0, 6.0);
                            }
                            let got = c[i * n + j] as f64;
                            assert!(
                                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                                "{isa:?} {m}x{k}x{n}"
                            );
                        }
                    }
                    assert!(c[m * n].is_nan(), "wrote past the output");
                }
            }
        }
    }
}
