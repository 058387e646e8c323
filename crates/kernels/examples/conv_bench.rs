//! Side-by-side throughput of the crate's kernels and candle's own ops on this machine.
//!
//! ```text
//! cargo run --release -p kernels --example conv_bench -- [--batch 16] [--size 150] [--reps 3]
//!     [--skip-candle] [--skip-vgg] [--skip-small] [--layers]
//! ```
//!
//! Prints the CPU model and its SIMD flags, the instruction set the kernels use, a table of the
//! algorithm the dispatch picks for every 3 × 3 layer of the three workloads (forward, input
//! gradient, weight gradient), the measured FMA peak, a per-layer table for the 13 VGG16 conv-base layers (GFLOP/s,
//! ours vs candle), images/s of the whole conv-base forward (13 convolutions + 5 max-pools,
//! random weights), images/s of a training step of the small convnet of the Keras post
//! (forward + backward of 3 conv/ReLU/pool blocks and the dense top), and images/s of a
//! fine-tuning step (VGG16 block 5 + the top model, forward + backward, on block 4's output).
//! When `python3 -c "import torch"` works it also runs `crates/kernels/bench/torch_conv.py`
//! with the same settings.

use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

// The stage binaries' allocator: keeps large blocks instead of returning them to the system
// after every step (glibc's malloc re-mmaps every buffer over 32 MiB and page-faults it in).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// VGG16 conv layers: (input channels, output channels, max-pool after).
const VGG16: [(usize, usize, bool); 13] = [
    (3, 64, false),
    (64, 64, true),
    (64, 128, false),
    (128, 128, true),
    (128, 256, false),
    (256, 256, false),
    (256, 256, true),
    (256, 512, false),
    (512, 512, false),
    (512, 512, true),
    (512, 512, false),
    (512, 512, false),
    (512, 512, true),
];

struct Options {
    batch: usize,
    size: usize,
    reps: usize,
    candle: bool,
    layers: bool,
    vgg: bool,
    small: bool,
}

fn parse() -> anyhow::Result<Options> {
    let mut o = Options {
        batch: 16,
        size: 150,
        reps: 3,
        candle: true,
        layers: false,
        vgg: true,
        small: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<usize> {
            let v = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            Ok(v.parse()?)
        };
        match a.as_str() {
            "--batch" => o.batch = value("--batch")?,
            "--size" => o.size = value("--size")?,
            "--reps" => o.reps = value("--reps")?.max(1),
            "--skip-candle" => o.candle = false,
            "--layers" => o.layers = true,
            "--skip-vgg" => o.vgg = false,
            "--skip-small" => o.small = false,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> anyhow::Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Best-of-`reps` wall time of `f` in seconds, after one warm-up call.
fn time<F: FnMut() -> anyhow::Result<()>>(reps: usize, mut f: F) -> anyhow::Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn candle_conv_relu(x: &Tensor, w: &Tensor, b: &Tensor, pad: usize) -> candle_core::Result<Tensor> {
    x.conv2d(w, pad, 1, 1, 1)?
        .broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?
        .relu()
}

fn vgg_forward(
    x: &Tensor,
    weights: &[(Tensor, Tensor)],
    ours: bool,
) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for ((_, _, pool), (w, b)) in VGG16.iter().zip(weights) {
        h = if ours {
            kernels::conv2d_relu(&h, w, Some(b), 1)?
        } else {
            candle_conv_relu(&h, w, b, 1)?
        };
        if *pool {
            h = if ours {
                kernels::max_pool2d(&h, 2)?
            } else {
                h.max_pool2d(2)?
            };
        }
    }
    Ok(h)
}

/// One training step of the small convnet (3 × [conv 3 × 3, ReLU, max-pool 2], dense 64, ReLU,
/// dense 1, binary cross-entropy), gradients of every parameter.
fn small_step(x: &Tensor, y: &Tensor, params: &[Var], ours: bool) -> candle_core::Result<f32> {
    let mut h = x.clone();
    for i in 0..3 {
        let (w, b) = (params[2 * i].as_tensor(), params[2 * i + 1].as_tensor());
        h = if ours {
            kernels::max_pool2d(&kernels::conv2d_relu(&h, w, Some(b), 0)?, 2)?
        } else {
            candle_conv_relu(&h, w, b, 0)?.max_pool2d(2)?
        };
    }
    let h = h.flatten_from(1)?;
    let h = h
        .matmul(&params[6].as_tensor().t()?)?
        .broadcast_add(params[7].as_tensor())?
        .relu()?;
    let logits = h
        .matmul(&params[8].as_tensor().t()?)?
        .broadcast_add(params[9].as_tensor())?;
    let logits = logits.squeeze(D::Minus1)?;
    backward(&bce_with_logits(&logits, y)?, params)
}

/// Binary cross-entropy from logits, averaged: `max(z, 0) - z y + log(1 + exp(-|z|))`.
fn bce_with_logits(logits: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (logits.relu()? - (logits * y)? + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?
        .mean_all()
}

/// Gradients of `loss` for every parameter; an error when one is missing.
fn backward(loss: &Tensor, params: &[Var]) -> candle_core::Result<f32> {
    let grads = loss.backward()?;
    for p in params {
        grads
            .get(p.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("missing gradient".into()))?;
    }
    loss.to_scalar::<f32>()
}

/// One fine-tuning step on block 4's (frozen) output: VGG16 block 5 (3 × [conv 3 × 3 pad 1,
/// ReLU], max-pool 2), the top model (dense 256, ReLU, dense 1), binary cross-entropy, and the
/// gradients of block 5's and the top's parameters.
fn finetune_step(x: &Tensor, y: &Tensor, params: &[Var], ours: bool) -> candle_core::Result<f32> {
    let mut h = x.clone();
    for i in 0..3 {
        let (w, b) = (params[2 * i].as_tensor(), params[2 * i + 1].as_tensor());
        h = if ours {
            kernels::conv2d_relu(&h, w, Some(b), 1)?
        } else {
            candle_conv_relu(&h, w, b, 1)?
        };
    }
    h = if ours {
        kernels::max_pool2d(&h, 2)?
    } else {
        h.max_pool2d(2)?
    };
    let h = h
        .flatten_from(1)?
        .matmul(&params[6].as_tensor().t()?)?
        .broadcast_add(params[7].as_tensor())?
        .relu()?;
    let logits = h
        .matmul(&params[8].as_tensor().t()?)?
        .broadcast_add(params[9].as_tensor())?
        .squeeze(D::Minus1)?;
    backward(&bce_with_logits(&logits, y)?, params)
}

/// Prints the CPU model and the SIMD flags the kernels care about (from `/proc/cpuinfo`), and
/// whether `LITTLEDATA_KERNELS_ISA` lowered the instruction set.
fn print_cpu() {
    const FLAGS: [&str; 9] = [
        "avx2",
        "fma",
        "avx512f",
        "avx512vl",
        "avx512dq",
        "avx512bw",
        "avx512_vnni",
        "avx512_bf16",
        "f16c",
    ];
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let flags = field("flags");
    let have: Vec<&str> = FLAGS
        .into_iter()
        .filter(|f| flags.split_whitespace().any(|x| x == *f))
        .collect();
    println!("cpu: {}", field("model name"));
    println!("cpu flags: {}", have.join(" "));
    let available: Vec<&str> = kernels::Isa::available()
        .into_iter()
        .map(|i| i.name())
        .collect();
    let forced = std::env::var("LITTLEDATA_KERNELS_ISA").ok();
    println!(
        "kernels ISA: {} (CPU supports {}{})",
        kernels::Isa::detect().name(),
        available.join(", "),
        forced.map_or(String::new(), |v| format!("; LITTLEDATA_KERNELS_ISA={v}"))
    );
}

/// Prints the algorithm the dispatch picks, with the detected instruction set, for every 3 × 3
/// convolution of the three workloads: forward, input gradient (the forward algorithm of the
/// transposed problem) and weight gradient.
fn print_dispatch(batch: usize, size: usize) {
    let isa = kernels::Isa::detect();
    let mut layers = Vec::new();
    let mut s = size;
    for (i, &(c, k, pool)) in VGG16.iter().enumerate() {
        layers.push((format!("vgg16 conv{}", i + 1), c, k, s, 1));
        if pool {
            s /= 2;
        }
    }
    let mut s = size;
    for (i, (c, k)) in [(3, 32), (32, 32), (32, 64)].into_iter().enumerate() {
        layers.push((format!("small conv{}", i + 1), c, k, s, 0));
        s = (s - 2) / 2;
    }
    for i in 0..3 {
        layers.push((format!("finetune conv5_{}", i + 1), 512, 512, size / 16, 1));
    }
    println!("dispatch on {} (batch {batch}):", isa.name());
    println!(
        "  {:<18} {:>5} {:>5} {:>5}  {:<12} {:<12} weight grad",
        "layer", "in", "out", "size", "forward", "input grad"
    );
    for (name, c, k, s, pad) in layers {
        let shape = kernels::ConvShape {
            n: batch,
            c,
            h: s,
            w: s,
            o: k,
            kh: 3,
            kw: 3,
            pad,
        };
        println!(
            "  {:<18} {:>5} {:>5} {:>5}  {:<12} {:<12} {}",
            name,
            c,
            k,
            s,
            kernels::Algorithm::choose_for(isa, &shape).name(),
            kernels::Algorithm::choose_for(isa, &shape.transposed()).name(),
            kernels::WeightGradAlgorithm::choose(&shape).name()
        );
    }
    println!();
}

fn main() -> anyhow::Result<()> {
    let o = parse()?;
    let threads = rayon::current_num_threads();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    println!(
        "kernels conv_bench: batch {}, {}×{}, best of {} runs, {} threads, ISA {}",
        o.batch,
        o.size,
        o.size,
        o.reps,
        threads,
        kernels::Isa::detect().name()
    );
    print_cpu();
    print_dispatch(o.batch, o.size);
    let p1 = kernels::peak::peak_gflops(1, 0.5);
    let pn = kernels::peak::peak_gflops(threads, 0.5);
    println!(
        "peak (register-only FMA loop): {p1:.1} GFLOP/s on 1 thread, {pn:.1} GFLOP/s on {threads}\n"
    );

    // VGG16 conv base.
    let mut weights = Vec::new();
    for &(c, k, _) in &VGG16 {
        let scale = (2.0 / (9.0 * c as f32)).sqrt();
        weights.push((
            randn(&mut rng, &[k, c, 3, 3], scale)?,
            randn(&mut rng, &[k], 0.1)?,
        ));
    }
    let x = randn(&mut rng, &[o.batch, 3, o.size, o.size], 1.0)?;
    let mut total_flop = 0.0;
    {
        let mut s = o.size;
        for &(c, k, pool) in &VGG16 {
            total_flop += 2.0 * (o.batch * s * s * c * k * 9) as f64;
            if pool {
                s /= 2;
            }
        }
    }
    if o.layers && o.vgg {
        println!(
            "{:<6} {:>5} {:>5} {:>5} {:>12} {:>12} {:>12} {:>12} {:>8}",
            "layer",
            "in",
            "out",
            "size",
            "algorithm",
            "ours ms",
            "ours GF/s",
            "candle GF/s",
            "speedup"
        );
        let mut s = o.size;
        let mut h = x.clone();
        for (i, (&(c, k, pool), (w, b))) in VGG16.iter().zip(&weights).enumerate() {
            let flop = 2.0 * (o.batch * s * s * c * k * 9) as f64;
            let shape = kernels::ConvShape {
                n: o.batch,
                c,
                h: s,
                w: s,
                o: k,
                kh: 3,
                kw: 3,
                pad: 1,
            };
            let ours = time(o.reps, || {
                Ok(kernels::conv2d_relu(&h, w, Some(b), 1).map(drop)?)
            })?;
            let theirs = if o.candle {
                time(o.reps.min(2), || {
                    Ok(candle_conv_relu(&h, w, b, 1).map(drop)?)
                })?
            } else {
                f64::NAN
            };
            println!(
                "conv{:<2} {:>5} {:>5} {:>5} {:>12} {:>12.1} {:>12.1} {:>12.1} {:>7.2}×",
                i + 1,
                c,
                k,
                s,
                kernels::Algorithm::choose(&shape).name(),
                ours * 1e3,
                flop / ours / 1e9,
                flop / theirs / 1e9,
                theirs / ours
            );
            h = kernels::conv2d_relu(&h, w, Some(b), 1)?;
            if pool {
                h = kernels::max_pool2d(&h, 2)?;
                s /= 2;
            }
        }
        println!();
    }
    if o.vgg {
        let ours = time(o.reps, || Ok(vgg_forward(&x, &weights, true).map(drop)?))?;
        let theirs = if o.candle {
            time(1, || Ok(vgg_forward(&x, &weights, false).map(drop)?))?
        } else {
            f64::NAN
        };
        println!(
            "VGG16 conv-base forward ({:.1} GFLOP per batch):",
            total_flop / 1e9
        );
        println!(
            "  ours   {:>8.2} images/s  {:>7.1} GFLOP/s",
            o.batch as f64 / ours,
            total_flop / ours / 1e9
        );
        println!(
            "  candle {:>8.2} images/s  {:>7.1} GFLOP/s",
            o.batch as f64 / theirs,
            total_flop / theirs / 1e9
        );
    }

    // Small convnet training step.
    let mut params = Vec::new();
    let mut s = o.size;
    for (c, k) in [(3, 32), (32, 32), (32, 64)] {
        params.push(Var::from_tensor(&randn(
            &mut rng,
            &[k, c, 3, 3],
            (2.0 / (9.0 * c as f32)).sqrt(),
        )?)?);
        params.push(Var::from_tensor(&randn(&mut rng, &[k], 0.01)?)?);
        s = (s - 2) / 2;
    }
    let flat = 64 * s * s;
    params.push(Var::from_tensor(&randn(
        &mut rng,
        &[64, flat],
        (1.0 / flat as f32).sqrt(),
    )?)?);
    params.push(Var::zeros(64, DType::F32, &Device::Cpu)?);
    params.push(Var::from_tensor(&randn(&mut rng, &[1, 64], 0.125)?)?);
    params.push(Var::zeros(1, DType::F32, &Device::Cpu)?);
    let labels: Vec<f32> = (0..o.batch).map(|i| (i % 2) as f32).collect();
    let y = Tensor::from_vec(labels, o.batch, &Device::Cpu)?;
    if o.small {
        let ours = time(o.reps, || Ok(small_step(&x, &y, &params, true).map(drop)?))?;
        let theirs = if o.candle {
            time(o.reps, || Ok(small_step(&x, &y, &params, false).map(drop)?))?
        } else {
            f64::NAN
        };
        println!("small convnet training step (forward + backward):");
        println!("  ours   {:>8.2} images/s", o.batch as f64 / ours);
        println!("  candle {:>8.2} images/s", o.batch as f64 / theirs);
    }

    // Fine-tuning step: block 5 + top on block 4's output (size / 16 after four pools).
    let s5 = o.size / 16;
    let mut params = Vec::new();
    for _ in 0..3 {
        let scale = (2.0 / (9.0 * 512.0f32)).sqrt();
        params.push(Var::from_tensor(&randn(
            &mut rng,
            &[512, 512, 3, 3],
            scale,
        )?)?);
        params.push(Var::from_tensor(&randn(&mut rng, &[512], 0.01)?)?);
    }
    let flat = 512 * (s5 / 2) * (s5 / 2);
    params.push(Var::from_tensor(&randn(
        &mut rng,
        &[256, flat],
        (1.0 / flat as f32).sqrt(),
    )?)?);
    params.push(Var::zeros(256, DType::F32, &Device::Cpu)?);
    params.push(Var::from_tensor(&randn(&mut rng, &[1, 256], 0.0625)?)?);
    params.push(Var::zeros(1, DType::F32, &Device::Cpu)?);
    let x5 = randn(&mut rng, &[o.batch, 512, s5, s5], 1.0)?.relu()?;
    let ours = time(o.reps, || {
        Ok(finetune_step(&x5, &y, &params, true).map(drop)?)
    })?;
    let theirs = if o.candle {
        time(o.reps, || {
            Ok(finetune_step(&x5, &y, &params, false).map(drop)?)
        })?
    } else {
        f64::NAN
    };
    println!("fine-tuning step, block 5 + top on {s5}×{s5}×512 (forward + backward):");
    println!("  ours   {:>8.2} images/s", o.batch as f64 / ours);
    println!("  candle {:>8.2} images/s", o.batch as f64 / theirs);

    // PyTorch, when installed.
    let torch = std::process::Command::new("python3")
        .args(["-c", "import torch"])
        .output();
    if torch.is_ok_and(|out| out.status.success()) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_conv.py");
        let status = std::process::Command::new("python3")
            .args([
                script,
                "--batch",
                &o.batch.to_string(),
                "--size",
                &o.size.to_string(),
                "--reps",
                &o.reps.to_string(),
            ])
            .status()?;
        anyhow::ensure!(status.success(), "{script} failed");
    } else {
        println!("pytorch: not installed (python3 -c \"import torch\" failed), skipped");
    }
    Ok(())
}
