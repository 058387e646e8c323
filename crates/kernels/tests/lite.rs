//! Depthwise, 1 × 1, strided convolutions, ReLU6 and the frozen channels-last path against
//! plain references built from candle's own ops, forward and every gradient, over random odd
//! shapes, strides and paddings. `f64` operands take the candle-ops fallback of each entry
//! point (the path other devices use), which is checked against the same references.

mod common;

use candle_core::{DType, Tensor, Var};
use common::{assert_close, uniform};
use kernels::frozen::{
    FrozenConv, FrozenDepthwise, FrozenLayer, FrozenMbConv, FrozenPointwise, FrozenSequence,
};
use kernels::{PadRule, Padding};
use proptest::prelude::*;

const REL: f32 = 1e-4;

/// Reference convolution: explicit zero padding, then candle's `conv2d` (grouped for
/// depthwise), plus bias and ReLU6.
fn reference(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: Padding,
    groups: usize,
    relu6: bool,
) -> Tensor {
    let xp = x
        .pad_with_zeros(2, pad.top, pad.bottom)
        .unwrap()
        .pad_with_zeros(3, pad.left, pad.right)
        .unwrap();
    // Crop what no window reaches: candle's conv2d backward needs the windows to cover the
    // padded input exactly when the stride is above 1.
    let (_, _, hp, wp) = xp.dims4().unwrap();
    let k = w.dim(2).unwrap();
    let (hc, wc) = (hp - (hp - k) % stride, wp - (wp - k) % stride);
    let xp = xp.narrow(2, 0, hc).unwrap().narrow(3, 0, wc).unwrap();
    let y = xp.conv2d(w, 0, stride, 1, groups).unwrap();
    let y = match b {
        Some(b) => y
            .broadcast_add(&b.reshape((1, b.dim(0).unwrap(), 1, 1)).unwrap())
            .unwrap(),
        None => y,
    };
    if relu6 {
        y.relu().unwrap().minimum(6.0).unwrap()
    } else {
        y
    }
}

/// The mask `0 < y < 6` of our own output (so values within rounding of a kink cannot make
/// the reference take the other branch).
fn relu6_mask(y: &Tensor) -> Tensor {
    let lo = y.gt(0.0).unwrap().to_dtype(y.dtype()).unwrap();
    let hi = y.lt(6.0).unwrap().to_dtype(y.dtype()).unwrap();
    (lo * hi).unwrap()
}

fn to_f64(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F64).unwrap()
}

fn to_f32(t: &Tensor) -> Tensor {
    t.to_dtype(DType::F32).unwrap()
}

/// Random asymmetric padding below `k` on each side.
fn paddings(k: usize) -> impl Strategy<Value = Padding> {
    (0..k, 0..k, 0..k, 0..k).prop_map(|(top, bottom, left, right)| Padding {
        top,
        bottom,
        left,
        right,
    })
}

/// Gradients of `Σ y·r` for each variable, as `f32`.
fn grads_of(y: &Tensor, r: &Tensor, vars: &[&Var]) -> Vec<Option<Tensor>> {
    let g = (y * r).unwrap().sum_all().unwrap().backward().unwrap();
    vars.iter()
        .map(|v| g.get(v.as_tensor()).map(to_f32))
        .collect()
}

#[derive(Debug, Clone)]
struct DwCase {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: Padding,
    bias: bool,
    relu6: bool,
    seed: u64,
}

fn dw_cases() -> impl Strategy<Value = DwCase> {
    (
        prop_oneof![Just(3usize), Just(5usize)],
        1usize..3,
        1usize..3,
        1usize..24,
        1usize..14,
        1usize..14,
        any::<(bool, bool, u64)>(),
    )
        .prop_flat_map(|(k, n, stride, c, h, w, (bias, relu6, seed))| {
            paddings(k).prop_filter_map("window fits", move |pad| {
                pad.output_size(h, w, k, stride).map(|_| DwCase {
                    n,
                    c,
                    h,
                    w,
                    k,
                    stride,
                    pad,
                    bias,
                    relu6,
                    seed,
                })
            })
        })
}

/// Forward and gradients of the depthwise convolution in `dtype` against the grouped-conv
/// reference.
fn check_depthwise(case: &DwCase, dtype: DType) {
    let s = case;
    let x = uniform(s.seed, &[s.n, s.c, s.h, s.w], 2.0);
    let w = uniform(s.seed ^ 1, &[s.c, 1, s.k, s.k], 1.0);
    let b = uniform(s.seed ^ 2, &[s.c], 1.0);
    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
    let (xv, wv, bv) = (
        Var::from_tensor(&cast(&x)).unwrap(),
        Var::from_tensor(&cast(&w)).unwrap(),
        Var::from_tensor(&cast(&b)).unwrap(),
    );
    let y = kernels::depthwise_conv2d(
        xv.as_tensor(),
        wv.as_tensor(),
        s.bias.then_some(bv.as_tensor()),
        s.stride,
        s.pad,
        s.relu6,
    )
    .unwrap();
    let (xr, wr, br) = (
        Var::from_tensor(&to_f64(&x)).unwrap(),
        Var::from_tensor(&to_f64(&w)).unwrap(),
        Var::from_tensor(&to_f64(&b)).unwrap(),
    );
    let yr = reference(
        xr.as_tensor(),
        wr.as_tensor(),
        s.bias.then_some(br.as_tensor()),
        s.stride,
        s.pad,
        s.c,
        s.relu6,
    );
    assert_close("depthwise forward", &to_f32(&y), &to_f32(&yr), REL);
    let r = uniform(s.seed ^ 3, y.dims(), 1.0);
    let r_ref = if s.relu6 {
        (to_f64(&r) * relu6_mask(&to_f64(&y))).unwrap()
    } else {
        to_f64(&r)
    };
    let ours = grads_of(&y, &cast(&r), &[&xv, &wv, &bv]);
    let theirs = grads_of(&yr, &r_ref, &[&xr, &wr, &br]);
    for (name, (g, gr)) in ["grad x", "grad w", "grad b"]
        .iter()
        .zip(ours.iter().zip(&theirs))
    {
        match (g, gr) {
            (Some(g), Some(gr)) => assert_close(name, g, gr, REL),
            (None, None) => {}
            _ => panic!("{name}: present in one only"),
        }
    }
}

#[derive(Debug, Clone)]
struct PwCase {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    bias: bool,
    residual: bool,
    relu6: bool,
    seed: u64,
}

fn pw_cases() -> impl Strategy<Value = PwCase> {
    (
        1usize..4,
        1usize..40,
        1usize..40,
        1usize..12,
        1usize..12,
        any::<(bool, bool, bool, u64)>(),
    )
        .prop_map(|(n, c, o, h, w, (bias, residual, relu6, seed))| PwCase {
            n,
            c,
            o,
            h,
            w,
            bias,
            residual,
            relu6,
            seed,
        })
}

fn check_pointwise(s: &PwCase, dtype: DType) {
    let x = uniform(s.seed, &[s.n, s.c, s.h, s.w], 2.0);
    let w = uniform(s.seed ^ 1, &[s.o, s.c, 1, 1], 1.0);
    let b = uniform(s.seed ^ 2, &[s.o], 1.0);
    let res = uniform(s.seed ^ 4, &[s.n, s.o, s.h, s.w], 2.0);
    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
    let vars: Vec<Var> = [&x, &w, &b, &res]
        .iter()
        .map(|t| Var::from_tensor(&cast(t)).unwrap())
        .collect();
    let y = kernels::pointwise_conv2d(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        s.bias.then_some(vars[2].as_tensor()),
        s.residual.then_some(vars[3].as_tensor()),
        s.relu6,
    )
    .unwrap();
    let refs: Vec<Var> = [&x, &w, &b, &res]
        .iter()
        .map(|t| Var::from_tensor(&to_f64(t)).unwrap())
        .collect();
    let mut yr = reference(
        refs[0].as_tensor(),
        refs[1].as_tensor(),
        s.bias.then_some(refs[2].as_tensor()),
        1,
        Padding::default(),
        1,
        false,
    );
    if s.residual {
        yr = (yr + refs[3].as_tensor()).unwrap();
    }
    if s.relu6 {
        yr = yr.relu().unwrap().minimum(6.0).unwrap();
    }
    assert_close("pointwise forward", &to_f32(&y), &to_f32(&yr), REL);
    let r = uniform(s.seed ^ 3, y.dims(), 1.0);
    let r_ref = if s.relu6 {
        (to_f64(&r) * relu6_mask(&to_f64(&y))).unwrap()
    } else {
        to_f64(&r)
    };
    let ours = grads_of(&y, &cast(&r), &vars.iter().collect::<Vec<_>>());
    let theirs = grads_of(&yr, &r_ref, &refs.iter().collect::<Vec<_>>());
    for (name, (g, gr)) in ["grad x", "grad w", "grad b", "grad residual"]
        .iter()
        .zip(ours.iter().zip(&theirs))
    {
        match (g, gr) {
            (Some(g), Some(gr)) => assert_close(name, g, gr, REL),
            (None, None) => {}
            _ => panic!("{name}: present in one only"),
        }
    }
}

#[derive(Debug, Clone)]
struct StCase {
    n: usize,
    c: usize,
    o: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: Padding,
    bias: bool,
    relu6: bool,
    seed: u64,
}

fn st_cases() -> impl Strategy<Value = StCase> {
    (
        prop_oneof![Just(1usize), Just(3usize), Just(5usize)],
        (1usize..3, 1usize..5, 1usize..20),
        1usize..4,
        2usize..16,
        2usize..16,
        any::<(bool, bool, u64)>(),
    )
        .prop_flat_map(|(k, (n, c, o), stride, h, w, (bias, relu6, seed))| {
            paddings(k).prop_filter_map("window fits", move |pad| {
                pad.output_size(h, w, k, stride).map(|_| StCase {
                    n,
                    c,
                    o,
                    h,
                    w,
                    k,
                    stride,
                    pad,
                    bias,
                    relu6,
                    seed,
                })
            })
        })
}

fn check_strided(s: &StCase, dtype: DType) {
    let x = uniform(s.seed, &[s.n, s.c, s.h, s.w], 2.0);
    let w = uniform(s.seed ^ 1, &[s.o, s.c, s.k, s.k], 1.0);
    let b = uniform(s.seed ^ 2, &[s.o], 1.0);
    let cast = |t: &Tensor| t.to_dtype(dtype).unwrap();
    let vars: Vec<Var> = [&x, &w, &b]
        .iter()
        .map(|t| Var::from_tensor(&cast(t)).unwrap())
        .collect();
    let y = kernels::conv2d_strided(
        vars[0].as_tensor(),
        vars[1].as_tensor(),
        s.bias.then_some(vars[2].as_tensor()),
        s.stride,
        s.pad,
        s.relu6,
    )
    .unwrap();
    let refs: Vec<Var> = [&x, &w, &b]
        .iter()
        .map(|t| Var::from_tensor(&to_f64(t)).unwrap())
        .collect();
    let yr = reference(
        refs[0].as_tensor(),
        refs[1].as_tensor(),
        s.bias.then_some(refs[2].as_tensor()),
        s.stride,
        s.pad,
        1,
        s.relu6,
    );
    assert_close("strided forward", &to_f32(&y), &to_f32(&yr), REL);
    let r = uniform(s.seed ^ 3, y.dims(), 1.0);
    let r_ref = if s.relu6 {
        (to_f64(&r) * relu6_mask(&to_f64(&y))).unwrap()
    } else {
        to_f64(&r)
    };
    let ours = grads_of(&y, &cast(&r), &vars.iter().collect::<Vec<_>>());
    let theirs = grads_of(&yr, &r_ref, &refs.iter().collect::<Vec<_>>());
    for (name, (g, gr)) in ["grad x", "grad w", "grad b"]
        .iter()
        .zip(ours.iter().zip(&theirs))
    {
        match (g, gr) {
            (Some(g), Some(gr)) => assert_close(name, g, gr, REL),
            (None, None) => {}
            _ => panic!("{name}: present in one only"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn depthwise_matches_grouped_conv(case in dw_cases()) {
        check_depthwise(&case, DType::F32);
    }

    #[test]
    fn depthwise_fallback_matches_grouped_conv(case in dw_cases()) {
        check_depthwise(&case, DType::F64);
    }

    #[test]
    fn pointwise_matches_conv(case in pw_cases()) {
        check_pointwise(&case, DType::F32);
    }

    #[test]
    fn pointwise_fallback_matches_conv(case in pw_cases()) {
        check_pointwise(&case, DType::F64);
    }

    #[test]
    fn strided_matches_conv(case in st_cases()) {
        check_strided(&case, DType::F32);
    }

    #[test]
    fn strided_fallback_matches_conv(case in st_cases()) {
        check_strided(&case, DType::F64);
    }

    #[test]
    fn relu6_and_its_gradient(seed in any::<u64>(), n in 1usize..300) {
        let x = uniform(seed, &[n], 9.0);
        let xv = Var::from_tensor(&x).unwrap();
        let y = kernels::relu6(xv.as_tensor()).unwrap();
        assert_close("relu6", &y, &x.clamp(0f32, 6f32).unwrap(), 0.0);
        let r = uniform(seed ^ 1, &[n], 1.0);
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let want = (&r * relu6_mask(&x)).unwrap();
        assert_close("relu6 grad", g.get(xv.as_tensor()).unwrap(), &want, 0.0);
    }
}

/// One random frozen network: a stem, two inverted-residual blocks and a head.
#[derive(Debug, Clone)]
struct NetCase {
    n: usize,
    h: usize,
    w: usize,
    stem: usize,
    expand: usize,
    k: usize,
    stride: usize,
    out: usize,
    head: usize,
    seed: u64,
}

fn net_cases() -> impl Strategy<Value = NetCase> {
    (
        1usize..4,
        3usize..40,
        3usize..40,
        1usize..20,
        prop_oneof![Just(1usize), Just(3usize), Just(6usize), Just(30usize)],
        prop_oneof![Just(3usize), Just(5usize)],
        1usize..3,
        (1usize..20, 1usize..40, any::<u64>()),
    )
        .prop_map(
            |(n, h, w, stem, expand, k, stride, (out, head, seed))| NetCase {
                n,
                h,
                w,
                stem,
                expand,
                k,
                stride,
                out,
                head,
                seed,
            },
        )
}

struct Conv {
    w: Tensor,
    b: Tensor,
}

fn conv(seed: u64, o: usize, c: usize, k: usize) -> Conv {
    Conv {
        w: uniform(seed, &[o, c, k, k], 1.5 / ((c * k * k) as f32).sqrt()),
        b: uniform(seed ^ 7, &[o], 0.5),
    }
}

/// Reference of one block (candle ops): expansion (when `e != c`), depthwise, projection,
/// residual when the shape is kept.
fn block_reference(
    x: &Tensor,
    ex: Option<&Conv>,
    dw: &Conv,
    pr: &Conv,
    k: usize,
    stride: usize,
) -> Tensor {
    let h = match ex {
        Some(ex) => reference(x, &ex.w, Some(&ex.b), 1, Padding::default(), 1, true),
        None => x.clone(),
    };
    let (_, e, hh, ww) = h.dims4().unwrap();
    let h = reference(
        &h,
        &dw.w,
        Some(&dw.b),
        stride,
        Padding::same(hh, ww, k, stride),
        e,
        true,
    );
    let y = reference(&h, &pr.w, Some(&pr.b), 1, Padding::default(), 1, false);
    if y.dims() == x.dims() {
        (y + x).unwrap()
    } else {
        y
    }
}

#[test]
fn frozen_sequences_match_candle() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&net_cases(), |s| {
            let x = uniform(s.seed, &[s.n, 3, s.h, s.w], 2.0);
            let stem = conv(s.seed ^ 1, s.stem, 3, 3);
            let e1 = s.stem * s.expand;
            let ex1 = (s.expand != 1).then(|| conv(s.seed ^ 2, e1, s.stem, 1));
            let dw1 = conv(s.seed ^ 3, e1, 1, s.k);
            let pr1 = conv(s.seed ^ 4, s.stem, e1, 1);
            let e2 = s.stem * 6;
            let ex2 = conv(s.seed ^ 5, e2, s.stem, 1);
            let dw2 = conv(s.seed ^ 6, e2, 1, 5);
            let pr2 = conv(s.seed ^ 8, s.out, e2, 1);
            let head = conv(s.seed ^ 9, s.head, s.out, 1);

            let mbconv = |ex: Option<&Conv>, dw: &Conv, pr: &Conv, k, stride, residual| {
                let ex = ex.map(|c| FrozenPointwise::new(&c.w, &c.b, true).unwrap());
                let dwf = FrozenDepthwise::new(&dw.w, &dw.b, stride, PadRule::Same, true).unwrap();
                let _ = k;
                FrozenLayer::MbConv(
                    FrozenMbConv::new(
                        ex,
                        dwf,
                        FrozenPointwise::new(&pr.w, &pr.b, false).unwrap(),
                        residual,
                    )
                    .unwrap(),
                )
            };
            let seq = FrozenSequence::new(vec![
                FrozenLayer::Conv(
                    FrozenConv::new(&stem.w, &stem.b, 2, PadRule::Same, true).unwrap(),
                ),
                // Block 1 keeps its shape (residual) at stride 1.
                mbconv(ex1.as_ref(), &dw1, &pr1, s.k, 1, true),
                mbconv(
                    Some(&ex2),
                    &dw2,
                    &pr2,
                    5,
                    s.stride,
                    s.stride == 1 && s.out == s.stem,
                ),
                FrozenLayer::Pointwise(FrozenPointwise::new(&head.w, &head.b, true).unwrap()),
            ])
            .unwrap();

            let (hh, ww) = (s.h, s.w);
            let r0 = reference(
                &x,
                &stem.w,
                Some(&stem.b),
                2,
                Padding::same(hh, ww, 3, 2),
                1,
                true,
            );
            let r1 = block_reference(&r0, ex1.as_ref(), &dw1, &pr1, s.k, 1);
            let r2 = block_reference(&r1, Some(&ex2), &dw2, &pr2, 5, s.stride);
            let r3 = reference(&r2, &head.w, Some(&head.b), 1, Padding::default(), 1, true);

            assert_close("stem", &seq.forward(&x, 0..1).unwrap(), &r0, REL);
            assert_close("stem + block 1", &seq.forward(&x, 0..2).unwrap(), &r1, REL);
            assert_close("block 2 alone", &seq.forward(&r1, 2..3).unwrap(), &r2, REL);
            assert_close("blocks 1..=2", &seq.forward(&r0, 1..3).unwrap(), &r2, REL);
            assert_close("head", &seq.forward(&r2, 3..4).unwrap(), &r3, REL);
            let pooled = seq.forward_pooled(&x, 0..4).unwrap();
            assert_close("pooled", &pooled, &r3.mean((2, 3)).unwrap(), REL);
            let (c, oh, ow) = seq.output_shape(0..4, hh, ww).unwrap();
            assert_eq!(&[s.n, c, oh, ow], r3.dims());
            Ok(())
        })
        .unwrap();
}

#[test]
fn frozen_sequence_errors() {
    let stem = conv(1, 8, 3, 3);
    let head = conv(2, 4, 9, 1);
    let layers = vec![
        FrozenLayer::Conv(FrozenConv::new(&stem.w, &stem.b, 2, PadRule::Same, true).unwrap()),
        FrozenLayer::Pointwise(FrozenPointwise::new(&head.w, &head.b, true).unwrap()),
    ];
    // Channels that do not chain are an error, not a panic.
    assert!(FrozenSequence::new(layers).is_err());
    let seq = FrozenSequence::new(vec![FrozenLayer::Conv(
        FrozenConv::new(&stem.w, &stem.b, 2, PadRule::Same, true).unwrap(),
    )])
    .unwrap();
    let x = uniform(3, &[1, 4, 9, 9], 1.0);
    assert!(seq.forward(&x, 0..1).is_err(), "wrong channels");
    let x = uniform(3, &[1, 3, 9, 9], 1.0);
    assert!(seq.forward(&x, 0..2).is_err(), "range past the end");
    assert!(
        seq.forward(&x.to_dtype(DType::F64).unwrap(), 0..1).is_err(),
        "dtype"
    );
    // Bad shapes at the entry points are errors too.
    let w = uniform(4, &[5, 1, 3, 3], 1.0);
    assert!(kernels::depthwise_conv2d(&x, &w, None, 1, Padding::uniform(1), false).is_err());
    assert!(
        kernels::pointwise_conv2d(&x, &uniform(5, &[2, 4, 1, 1], 1.0), None, None, false).is_err()
    );
}

/// Every test of this file again under each lower instruction set the CPU has (AVX2 and the
/// portable kernels on an AVX-512 host), through the public entry points.
#[test]
fn all_tests_under_every_isa() {
    common::rerun_under_every_isa("all_tests_under_every_isa");
}
