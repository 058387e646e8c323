//! Convolution forward and backward against candle's own ops over random shapes.

mod common;

use candle_core::{Tensor, Var};
use common::{assert_close, uniform, values};
use kernels::{Algorithm, ConvShape, Isa, WeightGradAlgorithm};
use proptest::prelude::*;

const REL: f32 = 1e-4;

fn reference(x: &Tensor, w: &Tensor, b: Option<&Tensor>, pad: usize) -> Tensor {
    let y = x.conv2d(w, pad, 1, 1, 1).expect("candle conv2d");
    match b {
        Some(b) => y
            .broadcast_add(&b.reshape((1, b.dim(0).unwrap(), 1, 1)).unwrap())
            .unwrap(),
        None => y,
    }
}

/// Random convolution problems: odd sizes, small batches, channel counts on both sides of the
/// Winograd threshold and not multiples of 16, padding 0 and 1.
fn shapes() -> impl Strategy<Value = (ConvShape, u64)> {
    (
        1usize..4,
        1usize..40,
        1usize..40,
        3usize..16,
        3usize..16,
        0usize..2,
        any::<u64>(),
    )
        .prop_map(|(n, c, o, h, w, pad, seed)| {
            (
                ConvShape {
                    n,
                    c,
                    h,
                    w,
                    o,
                    kh: 3,
                    kw: 3,
                    pad,
                },
                seed,
            )
        })
}

/// Every forward algorithm (each falls back to the direct convolution where it cannot run).
const ALGORITHMS: [Algorithm; 3] = [Algorithm::Direct, Algorithm::Winograd, Algorithm::Winograd3];

/// A random output gradient for `s` and candle's input gradient for it.
fn input_grad_reference(s: &ConvShape, x: &Tensor, w: &Tensor, seed: u64) -> (Tensor, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let y = reference(xv.as_tensor(), w, None, s.pad);
    let gy = uniform(seed ^ 5, y.dims(), 1.0);
    let grads = (&y * &gy).unwrap().sum_all().unwrap().backward().unwrap();
    let want = grads
        .get(xv.as_tensor())
        .expect("reference gradient")
        .clone();
    (gy, want)
}

fn operands(s: &ConvShape, seed: u64) -> (Tensor, Tensor, Tensor) {
    let x = uniform(seed, &[s.n, s.c, s.h, s.w], 1.0);
    let w = uniform(
        seed ^ 1,
        &[s.o, s.c, 3, 3],
        1.0 / (3.0 * (s.c as f32).sqrt()),
    );
    let b = uniform(seed ^ 2, &[s.o], 0.5);
    (x, w, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn forward_matches_candle((s, seed) in shapes(), with_bias in any::<bool>()) {
        let (x, w, b) = operands(&s, seed);
        let b = with_bias.then_some(&b);
        let want = reference(&x, &w, b, s.pad);
        let got = kernels::conv2d(&x, &w, b, s.pad).unwrap();
        assert_close("conv2d", &got, &want, REL);
        let got = kernels::conv2d_relu(&x, &w, b, s.pad).unwrap();
        assert_close("conv2d_relu", &got, &want.relu().unwrap(), REL);
    }

    #[test]
    fn every_algorithm_matches_candle((s, seed) in shapes()) {
        let (x, w, b) = operands(&s, seed);
        let want = reference(&x, &w, Some(&b), s.pad);
        let (xv, wv, bv) = (values(&x), values(&w), values(&b));
        for isa in Isa::available() {
            for algo in ALGORITHMS {
                let y = kernels::dispatch::conv_forward_isa(isa, algo, &s, &xv, &wv, Some(&bv), false);
                let got = Tensor::from_vec(y, want.dims(), want.device()).unwrap();
                assert_close(&format!("{isa:?} {algo:?}"), &got, &want, REL);
            }
        }
        let y = kernels::dispatch::conv_forward_with(Algorithm::Winograd, &s, &xv, &wv, Some(&bv), false);
        let got = Tensor::from_vec(y, want.dims(), want.device()).unwrap();
        assert_close("detected ISA, Winograd", &got, &want, REL);
    }

    #[test]
    fn every_input_grad_algorithm_matches_candle((s, seed) in shapes()) {
        let (x, w, _) = operands(&s, seed);
        let (gy, want) = input_grad_reference(&s, &x, &w, seed);
        let (wv, gv) = (values(&w), values(&gy));
        for isa in Isa::available() {
            for algo in ALGORITHMS {
                let g = kernels::dispatch::conv_input_grad_isa(isa, algo, &s, &gv, &wv);
                let got = Tensor::from_vec(g, want.dims(), want.device()).unwrap();
                assert_close(&format!("input grad {isa:?} {algo:?}"), &got, &want, REL);
            }
        }
    }

    #[test]
    fn every_weight_grad_algorithm_matches_candle((s, seed) in shapes(), relu in any::<bool>()) {
        let (x, w, _) = operands(&s, seed);
        let wv = Var::from_tensor(&w).unwrap();
        let y = reference(&x, wv.as_tensor(), None, s.pad);
        // With `relu`, the gradient is taken through a ReLU on the output.
        let r = uniform(seed ^ 3, y.dims(), 1.0);
        let (loss, relu_out) = if relu {
            let yr = y.relu().unwrap();
            ((&yr * &r).unwrap(), Some(values(&yr)))
        } else {
            ((&y * &r).unwrap(), None)
        };
        let want = loss.sum_all().unwrap().backward().unwrap();
        let want = want.get(wv.as_tensor()).expect("reference gradient");
        let (xv, rv) = (values(&x), values(&r));
        for isa in Isa::available() {
            for algo in [WeightGradAlgorithm::RowDot, WeightGradAlgorithm::Gemm, WeightGradAlgorithm::Winograd] {
                let g = kernels::dispatch::conv_weight_grad_isa(isa, algo, &s, &xv, &rv, relu_out.as_deref());
                let got = Tensor::from_vec(g, want.dims(), want.device()).unwrap();
                assert_close(&format!("{isa:?} {algo:?}"), &got, want, REL);
            }
        }
    }

    #[test]
    fn gradients_match_candle((s, seed) in shapes(), relu in any::<bool>(), track_x in any::<bool>()) {
        let (x, w, b) = operands(&s, seed);
        let (xv, wv, bv) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
        // An untracked input (the first layer) takes the path without an input gradient.
        let xin = if track_x { xv.as_tensor().clone() } else { x.clone() };
        let y = if relu {
            kernels::conv2d_relu(&xin, wv.as_tensor(), Some(bv.as_tensor()), s.pad).unwrap()
        } else {
            kernels::conv2d(&xin, wv.as_tensor(), Some(bv.as_tensor()), s.pad).unwrap()
        };
        // Upstream gradient: a random weighting of the outputs, masked by our own ReLU so that
        // outputs within rounding of zero cannot flip the reference's mask.
        let r = uniform(seed ^ 3, y.dims(), 1.0);
        let r_ref = if relu { (&r * y.gt(0.0).unwrap().to_dtype(y.dtype()).unwrap()).unwrap() } else { r.clone() };
        let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();

        let (xr, wr, br) = (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
        let yr = reference(xr.as_tensor(), wr.as_tensor(), Some(br.as_tensor()), s.pad);
        let ref_grads = (&yr * &r_ref).unwrap().sum_all().unwrap().backward().unwrap();

        prop_assert_eq!(grads.get(xv.as_tensor()).is_some(), track_x);
        let checks = if track_x {
            vec![("grad x", &xv, &xr), ("grad w", &wv, &wr), ("grad b", &bv, &br)]
        } else {
            vec![("grad w", &wv, &wr), ("grad b", &bv, &br)]
        };
        for (name, ours, theirs) in checks {
            let g = grads.get(ours.as_tensor()).expect("gradient present");
            let gr = ref_grads.get(theirs.as_tensor()).expect("reference gradient present");
            assert_close(name, g, gr, REL);
        }
    }
}

#[test]
fn untracked_operands_get_no_gradient() {
    let s = ConvShape {
        n: 2,
        c: 5,
        h: 9,
        w: 8,
        o: 6,
        kh: 3,
        kw: 3,
        pad: 1,
    };
    let (x, w, b) = operands(&s, 7);
    let wv = Var::from_tensor(&w).unwrap();
    let y = kernels::conv2d_relu(&x, wv.as_tensor(), Some(&b), 1).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(&b).is_none());
    assert!(grads.get(wv.as_tensor()).is_some());
}

#[test]
fn strided_inputs_and_unsupported_shapes_work() {
    // A transposed (non-contiguous) input takes the fast path after a copy.
    let x = uniform(11, &[2, 4, 7, 9], 1.0).transpose(2, 3).unwrap();
    let w = uniform(12, &[3, 4, 3, 3], 0.3);
    assert_close(
        "strided",
        &kernels::conv2d(&x, &w, None, 1).unwrap(),
        &reference(&x, &w, None, 1),
        REL,
    );
    // A 5 × 5 kernel falls back to candle.
    let w5 = uniform(13, &[3, 4, 5, 5], 0.3);
    assert_close(
        "5x5",
        &kernels::conv2d(&x, &w5, None, 2).unwrap(),
        &reference(&x, &w5, None, 2),
        REL,
    );
    // Mismatched channels are an error, not a panic.
    let bad = uniform(14, &[3, 5, 3, 3], 0.3);
    assert!(kernels::conv2d(&x, &bad, None, 1).is_err());
}

/// Problems with more tiles than one chunk of the F(3×3) forward (1536 tiles) and of the
/// Winograd weight gradient (256 tiles), and channel counts that leave partial panels.
#[test]
fn winograd3_paths_cross_chunk_boundaries() {
    let s = ConvShape {
        n: 2,
        c: 21,
        h: 100,
        w: 98,
        o: 50,
        kh: 3,
        kw: 3,
        pad: 1,
    };
    let (x, w, b) = operands(&s, 21);
    let want = reference(&x, &w, Some(&b), s.pad);
    let (xv, wv, bv) = (values(&x), values(&w), values(&b));
    let y =
        kernels::dispatch::conv_forward_with(Algorithm::Winograd3, &s, &xv, &wv, Some(&bv), true);
    let got = Tensor::from_vec(y, want.dims(), want.device()).unwrap();
    assert_close("Winograd3 forward", &got, &want.relu().unwrap(), REL);

    let wvar = Var::from_tensor(&w).unwrap();
    let y = reference(&x, wvar.as_tensor(), None, s.pad);
    let r = uniform(22, y.dims(), 1.0);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let want = grads.get(wvar.as_tensor()).unwrap();
    let g = kernels::dispatch::conv_weight_grad_with(
        WeightGradAlgorithm::Winograd,
        &s,
        &xv,
        &values(&r),
        None,
    );
    let got = Tensor::from_vec(g, want.dims(), want.device()).unwrap();
    assert_close("Winograd weight gradient", &got, want, REL);
}

/// The Winograd F(4×4) forward and input gradient under every ISA the CPU has (AVX2 included on
/// an AVX-512 host), on shapes the AVX-512 tests also cover and some that stress the 8-tile
/// vectors of the AVX2 path: sizes that are not multiples of 4, channel counts that are not
/// multiples of 8 or 16, batch 1 and more, several chunks of tiles and partial panels of output
/// channels.
#[test]
fn winograd_forward_and_input_grad_on_every_isa() {
    let shapes = [
        (1, 5, 9, 11, 7, 1),
        (3, 17, 13, 10, 20, 0),
        (1, 33, 4, 5, 9, 2),
        (2, 19, 30, 27, 45, 1),
        (1, 64, 38, 38, 72, 1),
        (4, 3, 21, 17, 13, 1),
        (2, 40, 75, 37, 25, 1),
    ];
    for (i, &(n, c, h, w, o, pad)) in shapes.iter().enumerate() {
        let s = ConvShape {
            n,
            c,
            h,
            w,
            o,
            kh: 3,
            kw: 3,
            pad,
        };
        let seed = 100 + i as u64;
        let (x, wt, b) = operands(&s, seed);
        let want = reference(&x, &wt, Some(&b), s.pad).relu().unwrap();
        let (gy, want_gx) = input_grad_reference(&s, &x, &wt, seed);
        let (xv, wv, bv, gv) = (values(&x), values(&wt), values(&b), values(&gy));
        for isa in Isa::available() {
            let y = kernels::dispatch::conv_forward_isa(
                isa,
                Algorithm::Winograd,
                &s,
                &xv,
                &wv,
                Some(&bv),
                true,
            );
            let got = Tensor::from_vec(y, want.dims(), want.device()).unwrap();
            assert_close(&format!("{isa:?} forward {s:?}"), &got, &want, REL);
            let g = kernels::dispatch::conv_input_grad_isa(isa, Algorithm::Winograd, &s, &gv, &wv);
            let got = Tensor::from_vec(g, want_gx.dims(), want_gx.device()).unwrap();
            assert_close(&format!("{isa:?} input grad {s:?}"), &got, &want_gx, REL);
        }
    }
}

/// The dispatch picks Winograd F(4×4) for VGG16's large 3 × 3 layers on AVX2 as on AVX-512.
#[test]
fn avx2_dispatch_takes_winograd() {
    let s = ConvShape {
        n: 16,
        c: 64,
        h: 150,
        w: 150,
        o: 64,
        kh: 3,
        kw: 3,
        pad: 1,
    };
    assert_eq!(Algorithm::choose_for(Isa::Avx2, &s), Algorithm::Winograd);
    assert_eq!(Algorithm::choose_for(Isa::Avx512, &s), Algorithm::Winograd);
    assert_eq!(Algorithm::choose_for(Isa::Portable, &s), Algorithm::Direct);
}

/// Every test of this file again under each lower instruction set the CPU has (AVX2 and the
/// portable kernels on an AVX-512 host), through the public entry points.
#[test]
fn all_tests_under_every_isa() {
    common::rerun_under_every_isa("all_tests_under_every_isa");
}
