//! Images/s of the EfficientNet-Lite0 frozen forward on this machine (the crate's channels-last
//! inference path, [`kernels::frozen`]), with random weights in Lite0's exact shapes.
//!
//! ```text
//! cargo run --release -p kernels --example lite0_bench -- [--batch 16] [--size 224] [--reps 5]
//!     [--photos DIR]
//! ```
//!
//! Prints the best-of-`reps` images/s of the forward pass alone (preprocessed input to pooled
//! features), and, when JPEG photos are found (`--photos`, else
//! `$LITTLEDATA_SHARED/data/dogs-vs-cats/train`), of the whole path from JPEG files: decode,
//! bilinear resize to `size` × `size`, preprocessing, forward. `scripts/bench/lite0_torch.py`
//! measures PyTorch on the same workload.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use imagedata::{Interpolation, Limits, Preprocessing, TargetSize};
use kernels::PadRule;
use kernels::frozen::{
    FrozenConv, FrozenDepthwise, FrozenLayer, FrozenMbConv, FrozenPointwise, FrozenSequence,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Per stage: (repeats, kernel, first stride, expansion ratio, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

struct Options {
    batch: usize,
    size: usize,
    reps: usize,
    photos: Option<PathBuf>,
}

fn parse() -> anyhow::Result<Options> {
    let mut o = Options {
        batch: 16,
        size: 224,
        reps: 5,
        photos: std::env::var_os("LITTLEDATA_SHARED")
            .map(|s| PathBuf::from(s).join("data/dogs-vs-cats/train"))
            .filter(|p| p.is_dir()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> anyhow::Result<String> {
            args.next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))
        };
        match a.as_str() {
            "--batch" => o.batch = value("--batch")?.parse::<usize>()?.max(1),
            "--size" => o.size = value("--size")?.parse::<usize>()?.max(8),
            "--reps" => o.reps = value("--reps")?.parse::<usize>()?.max(1),
            "--photos" => o.photos = Some(PathBuf::from(value("--photos")?)),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// A `[o, c, k, k]` weight of uniform values scaled by fan-in, and a small bias.
fn conv(rng: &mut ChaCha8Rng, o: usize, c: usize, k: usize) -> anyhow::Result<(Tensor, Tensor)> {
    let scale = 2.0 / ((c * k * k) as f32).sqrt();
    let w: Vec<f32> = (0..o * c * k * k)
        .map(|_| (rng.random::<f32>() - 0.5) * scale)
        .collect();
    let b: Vec<f32> = (0..o).map(|_| rng.random::<f32>() * 0.2).collect();
    Ok((
        Tensor::from_vec(w, (o, c, k, k), &Device::Cpu)?,
        Tensor::from_vec(b, o, &Device::Cpu)?,
    ))
}

/// Lite0's layers (stem, 16 blocks, head) with random weights.
fn lite0(seed: u64) -> anyhow::Result<FrozenSequence> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (w, b) = conv(&mut rng, 32, 3, 3)?;
    let mut layers = vec![FrozenLayer::Conv(FrozenConv::new(
        &w,
        &b,
        2,
        PadRule::Same,
        true,
    )?)];
    let mut cin = 32;
    for (repeats, k, stride, ratio, cout) in STAGES {
        for r in 0..repeats {
            let e = cin * ratio;
            let s = if r == 0 { stride } else { 1 };
            let expand = if ratio == 1 {
                None
            } else {
                let (w, b) = conv(&mut rng, e, cin, 1)?;
                Some(FrozenPointwise::new(&w, &b, true)?)
            };
            let (w, b) = conv(&mut rng, e, 1, k)?;
            let dw = FrozenDepthwise::new(&w, &b, s, PadRule::Same, true)?;
            let (w, b) = conv(&mut rng, cout, e, 1)?;
            let project = FrozenPointwise::new(&w, &b, false)?;
            let residual = s == 1 && cin == cout;
            layers.push(FrozenLayer::MbConv(FrozenMbConv::new(
                expand, dw, project, residual,
            )?));
            cin = cout;
        }
    }
    let (w, b) = conv(&mut rng, 1280, cin, 1)?;
    layers.push(FrozenLayer::Pointwise(FrozenPointwise::new(&w, &b, true)?));
    Ok(FrozenSequence::new(layers)?)
}

/// The best time of `reps` runs of `f` (after one warm-up run).
fn best(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Decodes, resizes and preprocesses `files` into a batch `[n, 3, size, size]`.
fn load_batch(files: &[PathBuf], size: usize) -> anyhow::Result<Tensor> {
    let target = TargetSize::new(size as u32, size as u32);
    let limits = Limits::default();
    let images = files
        .par_iter()
        .map(|f| imagedata::load_resized(f, target, Interpolation::Bilinear, &limits))
        .collect::<Result<Vec<_>, _>>()?;
    let pre = Preprocessing::Normalize {
        rescale: 1.0 / 255.0,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    Ok(imagedata::images_to_tensor(&images, &pre, &Device::Cpu)?)
}

fn jpegs(dir: &Path, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jpg")))
        .collect();
    files.sort();
    files.truncate(n);
    anyhow::ensure!(
        files.len() == n,
        "{} holds fewer than {n} JPEG files",
        dir.display()
    );
    Ok(files)
}

fn main() -> anyhow::Result<()> {
    let o = parse()?;
    let net = lite0(7)?;
    let layers = 0..net.layers().len();
    println!(
        "lite0_bench: EfficientNet-Lite0 frozen forward, batch {}, {}×{}, best of {} runs, {} threads, ISA {}",
        o.batch,
        o.size,
        o.size,
        o.reps,
        rayon::current_num_threads(),
        kernels::Isa::detect().name()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<f32> = (0..o.batch * 3 * o.size * o.size)
        .map(|_| rng.random::<f32>() * 2.0 - 1.0)
        .collect();
    let x = Tensor::from_vec(x, (o.batch, 3, o.size, o.size), &Device::Cpu)?;
    let t = best(o.reps, || {
        net.forward_pooled(&x, layers.clone())?;
        Ok(())
    })?;
    println!(
        "forward (preprocessed input → pooled [N, 1280]): {:8.1} images/s ({:.1} ms per batch)",
        o.batch as f64 / t,
        t * 1e3
    );
    match &o.photos {
        Some(dir) => {
            let files = jpegs(dir, o.batch)?;
            let t = best(o.reps, || {
                load_batch(&files, o.size)?;
                Ok(())
            })?;
            println!(
                "JPEG decode + resize + preprocess:                {:8.1} images/s ({:.1} ms per batch)",
                o.batch as f64 / t,
                t * 1e3
            );
            let t = best(o.reps, || {
                let x = load_batch(&files, o.size)?;
                net.forward_pooled(&x, layers.clone())?;
                Ok(())
            })?;
            println!(
                "JPEG files → pooled features (decode + forward):  {:8.1} images/s ({:.1} ms per batch)",
                o.batch as f64 / t,
                t * 1e3
            );
        }
        None => println!(
            "(no photos: pass --photos DIR or set LITTLEDATA_SHARED for the decode timing)"
        ),
    }
    Ok(())
}
