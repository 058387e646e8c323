//! Implicit-GEMM convolution over "padded-width" columns.
//!
//! The input is copied once into zero-padded planes of width `wp = w + 2·pad`. An output pixel
//! `(oh, ow)` is then addressed by the column `q = oh·wp + ow`, and the input value under kernel
//! tap `(i, j)` is the plane element `q + i·wp + j`: every row of the im2col matrix is a
//! contiguous slice of a padded plane. The convolution of one image is the GEMM
//! `Y'[o, q] = Σ_{c,i,j} W[o, (c,i,j)] · Xp[c, q + i·wp + j]` over `ho·wp` columns, of which the
//! `wp - wo` per row past the right edge are computed and dropped. Packing `B` is therefore a
//! `memcpy` per reduction step, and bias and ReLU are applied when the finished columns are
//! scattered into the NCHW output.

use crate::gemm::{self, MR, NR};
use crate::isa::Isa;
use crate::scratch::with_scratch;
use crate::shape::{ConvShape, SharedMut};
use rayon::prelude::*;

/// Reduction steps per packed block of `B`.
const KC: usize = 256;
/// Columns per task (four full panels).
const NC: usize = 4 * NR;

/// Copies `x` ([n, c, h, w]) into zero-padded planes of `(h + 2·pad) × (w + 2·pad)` floats plus
/// `slack` trailing zeros, each plane starting at a multiple of 16 floats. Returns the buffer
/// and the plane stride.
pub(crate) fn pad_planes(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    pad: usize,
    slack: usize,
) -> (Vec<f32>, usize) {
    let hp = h + 2 * pad;
    let wp = w + 2 * pad;
    let stride = (hp * wp + slack).div_ceil(16) * 16;
    let mut out = vec![0.0f32; planes * stride];
    out.par_chunks_mut(stride)
        .zip(x.par_chunks(h * w))
        .for_each(|(dst, src)| {
            for r in 0..h {
                let d = (r + pad) * wp + pad;
                dst[d..d + w].copy_from_slice(&src[r * w..r * w + w]);
            }
        });
    (out, stride)
}

/// Forward convolution of `x` ([n, c, h, w]) with `weight` ([o, c, kh, kw]), optional `bias`
/// ([o]) and optional fused ReLU; returns [n, o, ho, wo].
pub(crate) fn forward(
    isa: Isa,
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let (ho, wo, wp) = (s.ho(), s.wo(), s.wp());
    let k = s.c * s.kh * s.kw;
    let (xp, plane) = pad_planes(x, s.n * s.c, s.h, s.w, s.pad, s.kw);
    let apack = gemm::pack_a(weight, s.o, k, k);
    let mpanels = s.o.div_ceil(MR);
    let cols = ho * wp;
    let blocks = cols.div_ceil(NC);
    let mut y = vec![0.0f32; s.n * s.o * ho * wo];
    let yp = SharedMut(y.as_mut_ptr());
    let taps: Vec<usize> = (0..k)
        .map(|kk| {
            let (c, t) = (kk / (s.kh * s.kw), kk % (s.kh * s.kw));
            c * plane + (t / s.kw) * wp + t % s.kw
        })
        .collect();

    let bsize = KC.min(k) * NC;
    let csize = mpanels * MR * NC;
    (0..s.n * blocks).into_par_iter().for_each(|task| {
        with_scratch(bsize + csize, |buf| {
            let (bpack, cbuf) = buf.split_at_mut(bsize);
            let (n, blk) = (task / blocks, task % blocks);
            let j0 = blk * NC;
            let valid = NC.min(cols - j0);
            let npanels = valid.div_ceil(NR);
            let img = &xp[n * s.c * plane..];
            for kb in (0..k).step_by(KC) {
                let kc = KC.min(k - kb);
                pack_b(img, &taps[kb..kb + kc], j0, valid, bpack);
                for ip in 0..mpanels {
                    let a = &apack[(ip * k + kb) * MR..];
                    for jp in 0..npanels {
                        let width = gemm::panel_width(NR.min(valid - jp * NR));
                        let b = &bpack[jp * NR * kc..];
                        let c = &mut cbuf[ip * MR * NC + jp * NR..];
                        // SAFETY: `a` holds kc·MR floats of this panel, `b` kc·width floats,
                        // and `c` MR rows of NC ≥ jp·NR + width floats.
                        unsafe {
                            gemm::micro(
                                isa,
                                kc,
                                a.as_ptr(),
                                b.as_ptr(),
                                width,
                                c.as_mut_ptr(),
                                NC,
                                kb > 0,
                            )
                        };
                    }
                }
            }
            // Scatter the valid columns into the NCHW output.
            for o in 0..s.o {
                let row = &cbuf[o * NC..o * NC + valid];
                let b = bias.map_or(0.0, |b| b[o]);
                let mut q = j0;
                while q < j0 + valid {
                    let (oh, ow) = (q / wp, q % wp);
                    let row_end = (oh * wp + wo).min(j0 + valid);
                    if ow < wo {
                        let dst = ((n * s.o + o) * ho + oh) * wo + ow;
                        // SAFETY: each task owns the output pixels of its column block.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(yp.ptr().add(dst), row_end - q)
                        };
                        let src = &row[q - j0..row_end - j0];
                        if relu {
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = (v + b).max(0.0);
                            }
                        } else {
                            for (d, &v) in dst.iter_mut().zip(src) {
                                *d = v + b;
                            }
                        }
                    }
                    q = (oh + 1) * wp;
                }
            }
        })
    });
    y
}

/// Packs the im2col block of reduction steps `taps` (plane offsets) and columns
/// `j0..j0 + valid` into `[panel][k][width]` panels.
fn pack_b(img: &[f32], taps: &[usize], j0: usize, valid: usize, out: &mut [f32]) {
    let kc = taps.len();
    let mut col = 0;
    while col < valid {
        let n = NR.min(valid - col);
        let width = gemm::panel_width(n);
        let panel = &mut out[col * kc..col * kc + kc * width];
        for (kk, &off) in taps.iter().enumerate() {
            let src = off + j0 + col;
            let dst = &mut panel[kk * width..kk * width + width];
            dst[..n].copy_from_slice(&img[src..src + n]);
            dst[n..].fill(0.0);
        }
        col += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward seven-loop convolution in f64.
    pub(crate) fn naive(s: &ConvShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
        let (ho, wo) = (s.ho(), s.wo());
        let mut y = vec![0.0f32; s.n * s.o * ho * wo];
        for n in 0..s.n {
            for o in 0..s.o {
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = b.map_or(0.0, |b| b[o] as f64);
                        for c in 0..s.c {
                            for i in 0..s.kh {
                                for j in 0..s.kw {
                                    let ih = (oh + i) as isize - s.pad as isize;
                                    let iw = (ow + j) as isize - s.pad as isize;
                                    if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv =
                                        x[((n * s.c + c) * s.h + ih as usize) * s.w + iw as usize];
                                    let wv = w[((o * s.c + c) * s.kh + i) * s.kw + j];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((n * s.o + o) * ho + oh) * wo + ow] = acc as f32;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_naive_for_every_isa() {
        let shapes = [
            ConvShape {
                n: 2,
                c: 3,
                h: 7,
                w: 9,
                o: 5,
                kh: 3,
                kw: 3,
                pad: 1,
            },
            ConvShape {
                n: 1,
                c: 17,
                h: 13,
                w: 11,
                o: 19,
                kh: 3,
                kw: 3,
                pad: 0,
            },
            ConvShape {
                n: 3,
                c: 40,
                h: 21,
                w: 23,
                o: 9,
                kh: 3,
                kw: 3,
                pad: 2,
            },
            ConvShape {
                n: 1,
                c: 2,
                h: 5,
                w: 6,
                o: 3,
                kh: 1,
                kw: 2,
                pad: 1,
            },
        ];
        for s in shapes {
            let x: Vec<f32> = (0..s.n * s.c * s.h * s.w)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let w: Vec<f32> = (0..s.o * s.c * s.kh * s.kw)
                .map(|i| ((i * 17) % 29) as f32 / 14.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..s.o).map(|i| i as f32 * 0.25 - 1.0).collect();
            let want = naive(&s, &x, &w, Some(&b));
            for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
                let got = forward(isa, &s, &x, &w, Some(&b), false);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{isa:?} {s:?}: {g} vs {w}"
                    );
                }
                let got = forward(isa, &s, &x, &w, Some(&b), true);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w.max(0.0)).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{isa:?} relu"
                    );
                }
            }
        }
    }
}
