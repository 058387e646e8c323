//! Single-image latency in process: decode and resize one photo already in memory
//! (`Classifier::decode`), then preprocess, forward and read the probabilities
//! (`Classifier::predict_prepared`), call after call, batch 1; `--repeat` timed calls after
//! `--warmup` untimed ones. Threads: `RAYON_NUM_THREADS`. The last line is
//! `p50 X ms  p90 Y ms  p99 Z ms  (mean, min, max)` (`scripts/bench/predict_latency.sh`).
//!
//! `cargo run --release -p classify --example latency -- --model MODEL_DIR PHOTO [--repeat 200] [--warmup 20]`

use std::path::PathBuf;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: latency --model MODEL_DIR PHOTO [--repeat N] [--warmup N]";
    let (mut model, mut photo, mut repeat, mut warmup) = (None, None, 200usize, 20usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => model = args.next().map(PathBuf::from),
            "--repeat" => repeat = args.next().ok_or(usage)?.parse()?,
            "--warmup" => warmup = args.next().ok_or(usage)?.parse()?,
            _ if photo.is_none() => photo = Some(PathBuf::from(arg)),
            _ => return Err(usage.into()),
        }
    }
    let (model, photo) = (model.ok_or(usage)?, photo.ok_or(usage)?);
    let classifier = classify::Classifier::load(&model)?;
    let bytes = std::fs::read(&photo)?;
    let once = || -> Result<classify::Scores, classify::ClassifyError> {
        let image = classifier.decode(&bytes, &photo)?;
        Ok(classifier
            .predict_prepared(std::slice::from_ref(&image))?
            .remove(0))
    };
    for _ in 0..warmup {
        once()?;
    }
    let mut ms = Vec::with_capacity(repeat.max(1));
    let mut scores = None;
    for _ in 0..repeat.max(1) {
        let start = Instant::now();
        scores = Some(once()?);
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let scores = scores.ok_or("no run")?;
    println!("model: {}", classifier.model().describe());
    println!(
        "{}: {} ({:.4}); {} calls after {warmup} warm-up calls, {} threads",
        photo.display(),
        scores.class,
        scores.probability,
        ms.len(),
        rayon::current_num_threads()
    );
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  (mean {mean:.2}, min {:.2}, max {:.2})",
        at(0.5),
        at(0.9),
        at(0.99),
        ms[0],
        ms[ms.len() - 1]
    );
    Ok(())
}
