//! Single-image latency of `Classifier::predict_file` in process: read, decode, resize,
//! preprocess and forward one photo, `--repeat` times after `--warmup` runs; prints p50, p90
//! and p99 in milliseconds. Threads: `RAYON_NUM_THREADS`.
//!
//! `cargo run --release -p classify --example latency -- MODEL_DIR PHOTO [REPEAT] [WARMUP]`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, photo, rest @ ..] = args.as_slice() else {
        return Err("usage: latency MODEL_DIR PHOTO [REPEAT] [WARMUP]".into());
    };
    let repeat: usize = rest.first().map_or(Ok(200), |s| s.parse())?;
    let warmup: usize = rest.get(1).map_or(Ok(20), |s| s.parse())?;
    let classifier = classify::Classifier::load(model)?;
    let photo = std::path::Path::new(photo);
    let mut class = String::new();
    for _ in 0..warmup {
        class = classifier.predict_file(photo)?.class;
    }
    let mut ms: Vec<f64> = (0..repeat.max(1))
        .map(|_| {
            let start = Instant::now();
            let scores = classifier.predict_file(photo);
            let elapsed = start.elapsed().as_secs_f64() * 1e3;
            scores.map(|_| elapsed)
        })
        .collect::<Result<_, _>>()?;
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    println!(
        "{}: {class}; {} runs on {} threads: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        classifier.model().name(),
        ms.len(),
        rayon::current_num_threads(),
        at(0.5),
        at(0.9),
        at(0.99)
    );
    Ok(())
}
