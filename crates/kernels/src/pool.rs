//! Max-pooling with a `k × k` window and stride `k` (floor mode), forward and backward.
//!
//! The backward pass routes each output gradient to the first position (in row-major order) of
//! its window that holds the window's maximum, as PyTorch and TensorFlow do.

use rayon::prelude::*;

/// Forward: `x` is `planes` planes of `h × w`; returns `planes` planes of `(h / k) × (w / k)`.
pub(crate) fn forward(x: &[f32], planes: usize, h: usize, w: usize, k: usize) -> Vec<f32> {
    let (ho, wo) = (h / k, w / k);
    let mut y = vec![0.0f32; planes * ho * wo];
    if ho == 0 || wo == 0 {
        return y;
    }
    y.par_chunks_mut(ho * wo)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for (oh, yrow) in yp.chunks_mut(wo).enumerate() {
                let rows = &xp[oh * k * w..(oh * k + k) * w];
                if k == 2 {
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
    gx.par_chunks_mut(h * w)
        .zip(x.par_chunks(h * w))
        .zip(gy.par_chunks(ho * wo))
        .for_each(|((gxp, xp), gyp)| {
            for oh in 0..ho {
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
