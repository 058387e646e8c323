//! Max-pooling forward and backward: the forward exactly as candle's, the backward exactly as a
//! direct first-maximum reference (PyTorch's and TensorFlow's semantics).

mod common;

use candle_core::{Tensor, Var};
use common::{uniform, values};
use proptest::prelude::*;

/// Input gradient of max-pooling with the first maximum of each window taking the gradient.
fn reference_grad(x: &[f32], gy: &[f32], dims: [usize; 4], k: usize) -> Vec<f32> {
    let [n, c, h, w] = dims;
    let (ho, wo) = (h / k, w / k);
    let mut gx = vec![0.0f32; x.len()];
    for p in 0..n * c {
        for oh in 0..ho {
            for ow in 0..wo {
                let mut best = None::<(usize, f32)>;
                for r in 0..k {
                    for s in 0..k {
                        let i = p * h * w + (oh * k + r) * w + ow * k + s;
                        if best.is_none_or(|(_, m)| x[i] > m) {
                            best = Some((i, x[i]));
                        }
                    }
                }
                let (i, _) = best.expect("non-empty window");
                gx[i] += gy[p * ho * wo + oh * wo + ow];
            }
        }
    }
    gx
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn forward_and_backward_are_exact(
        n in 1usize..3, c in 1usize..4, h in 2usize..24, w in 2usize..70, k in 2usize..4,
        seed in any::<u64>(),
    ) {
        prop_assume!(h >= k && w >= k);
        let x = uniform(seed, &[n, c, h, w], 1.0);
        let want = x.max_pool2d(k).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let y = kernels::max_pool2d(xv.as_tensor(), k).unwrap();
        prop_assert_eq!(values(&y), values(&want));

        let gy = uniform(seed ^ 1, y.dims(), 1.0);
        let grads = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
        let gx = values(grads.get(xv.as_tensor()).unwrap());
        prop_assert_eq!(&gx, &reference_grad(&values(&x), &values(&gy), [n, c, h, w], k));

        // candle 0.11's own backward multiplies the gradient by the window average of the
        // "is maximum" mask, i.e. by 1/k² for a unique maximum (and only lines windows up with
        // the input when they tile it). With tie-free inputs that tile exactly, ours is candle's
        // times k².
        if h % k == 0 && w % k == 0 {
            let xr = Var::from_tensor(&x).unwrap();
            let yr = xr.as_tensor().max_pool2d(k).unwrap();
            let gr = (&yr * &gy).unwrap().sum_all().unwrap().backward().unwrap();
            let theirs = values(gr.get(xr.as_tensor()).unwrap());
            let kk = (k * k) as f32;
            for (a, b) in gx.iter().zip(&theirs) {
                prop_assert!((a - b * kk).abs() <= 1e-6 * a.abs().max(1.0), "{} vs {} · {}", a, b, kk);
            }
        }
    }
}

#[test]
fn ties_send_the_gradient_to_the_first_maximum() {
    let x = Tensor::new(&[[[[1.0f32, 1.0], [1.0, 0.0]]]], &candle_core::Device::Cpu).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let y = kernels::max_pool2d(xv.as_tensor(), 2).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(
        values(grads.get(xv.as_tensor()).unwrap()),
        vec![1.0, 0.0, 0.0, 0.0]
    );
}

/// Every test of this file again under each lower instruction set the CPU has (AVX2 and the
/// portable kernels on an AVX-512 host), through the public entry points.
#[test]
fn all_tests_under_every_isa() {
    common::rerun_under_every_isa("all_tests_under_every_isa");
}
