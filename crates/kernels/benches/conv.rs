//! Criterion benches: the 13 VGG16 conv-base layers at 150 × 150, batch 16 (forward), and the
//! small convnet's convolution blocks at 150 × 150, batch 16 (forward + backward).
//!
//! The `wgrad` group times every weight-gradient algorithm on the shapes that train: VGG16
//! blocks 3–5 (fine-tuning) and the small convnet's layers.
//!
//! `cargo bench -p kernels --bench conv` (add `-- vgg16`, `-- small` or `-- wgrad` to pick a
//! group).

use candle_core::{Device, Tensor, Var};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 16;
const SIZE: usize = 150;

fn uniform(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("shape matches data")
}

/// VGG16 conv layers: (input channels, output channels, spatial size at 150 × 150 input).
const VGG16: [(usize, usize, usize); 13] = [
    (3, 64, 150),
    (64, 64, 150),
    (64, 128, 75),
    (128, 128, 75),
    (128, 256, 37),
    (256, 256, 37),
    (256, 256, 37),
    (256, 512, 18),
    (512, 512, 18),
    (512, 512, 18),
    (512, 512, 9),
    (512, 512, 9),
    (512, 512, 9),
];

fn vgg16_layers(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut group = c.benchmark_group("vgg16");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    for (i, &(cin, cout, size)) in VGG16.iter().enumerate() {
        let x = uniform(&mut rng, &[BATCH, cin, size, size], 1.0);
        let w = uniform(
            &mut rng,
            &[cout, cin, 3, 3],
            (2.0 / (9.0 * cin as f32)).sqrt(),
        );
        let b = uniform(&mut rng, &[cout], 0.1);
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(format!("conv{}_{cin}x{cout}_{size}", i + 1), |bench| {
            bench.iter(|| black_box(kernels::conv2d_relu(&x, &w, Some(&b), 1).expect("conv")))
        });
    }
    group.finish();
}

fn small_convnet(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let x = uniform(&mut rng, &[BATCH, 3, SIZE, SIZE], 1.0);
    let params: Vec<(Var, Var)> = [(3, 32), (32, 32), (32, 64)]
        .iter()
        .map(|&(cin, cout)| {
            let w = uniform(
                &mut rng,
                &[cout, cin, 3, 3],
                (2.0 / (9.0 * cin as f32)).sqrt(),
            );
            let b = uniform(&mut rng, &[cout], 0.01);
            (
                Var::from_tensor(&w).expect("var"),
                Var::from_tensor(&b).expect("var"),
            )
        })
        .collect();
    let mut group = c.benchmark_group("small");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("conv_blocks_forward_backward", |bench| {
        bench.iter(|| {
            let mut h = x.clone();
            for (w, b) in &params {
                let y =
                    kernels::conv2d_relu(&h, w.as_tensor(), Some(b.as_tensor()), 0).expect("conv");
                h = kernels::max_pool2d(&y, 2).expect("pool");
            }
            black_box(h.sum_all().and_then(|l| l.backward()).expect("backward"))
        })
    });
    // The individual backward pieces of the middle layer (32 → 32 at 74 × 74).
    let xm = Var::from_tensor(&uniform(&mut rng, &[BATCH, 32, 74, 74], 1.0)).expect("var");
    let (w, b) = &params[1];
    group.bench_function("conv2_forward_backward", |bench| {
        bench.iter(|| {
            let y = kernels::conv2d_relu(xm.as_tensor(), w.as_tensor(), Some(b.as_tensor()), 0)
                .expect("conv");
            black_box(y.sum_all().and_then(|l| l.backward()).expect("backward"))
        })
    });
    group.finish();
}

fn weight_grad(c: &mut Criterion) {
    use kernels::{ConvShape, WeightGradAlgorithm, dispatch};
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut group = c.benchmark_group("wgrad");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    // (input channels, output channels, input size, padding)
    let shapes = [
        (512, 512, 9, 1),
        (512, 512, 18, 1),
        (256, 256, 37, 1),
        (128, 128, 75, 1),
        (64, 64, 150, 1),
        (32, 32, 74, 0),
        (32, 64, 36, 0),
    ];
    for (cin, cout, size, pad) in shapes {
        let s = ConvShape {
            n: BATCH,
            c: cin,
            h: size,
            w: size,
            o: cout,
            kh: 3,
            kw: 3,
            pad,
        };
        let x: Vec<f32> = (0..BATCH * cin * size * size)
            .map(|_| rng.random::<f32>())
            .collect();
        let gy: Vec<f32> = (0..BATCH * cout * s.ho() * s.wo())
            .map(|_| rng.random::<f32>() - 0.5)
            .collect();
        group.throughput(Throughput::Elements(BATCH as u64));
        for algo in [
            WeightGradAlgorithm::RowDot,
            WeightGradAlgorithm::Gemm,
            WeightGradAlgorithm::Winograd,
        ] {
            group.bench_function(format!("{algo:?}_{cin}x{cout}_{size}_pad{pad}"), |bench| {
                bench.iter(|| black_box(dispatch::conv_weight_grad_with(algo, &s, &x, &gy, None)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, vgg16_layers, small_convnet, weight_grad);
criterion_main!(benches);
