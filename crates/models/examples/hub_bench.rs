//! Times [`HubBackbone::pooled`] at 224×224, batch 8, on the CPU, with random weights:
//!
//! `cargo run -p models --example hub_bench -- [MODEL...] [--repeats N]`
//!
//! (`scripts/reference/hub_models.py --bench` times the same in PyTorch.)

use std::process::ExitCode;
use std::time::Instant;

use candle_core::{Device, Tensor};
use models::{BackboneKind, HubBackbone, HubModel};

use testkit::hub as hub_weights;

fn main() -> ExitCode {
    let mut models = Vec::new();
    let mut repeats = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--repeats" {
            match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => repeats = n,
                _ => {
                    eprintln!("--repeats needs a positive number");
                    return ExitCode::FAILURE;
                }
            }
        } else if let Some(m) = BackboneKind::parse(&arg).and_then(BackboneKind::hub_model) {
            models.push(m);
        } else {
            eprintln!("unknown model `{arg}`");
            return ExitCode::FAILURE;
        }
    }
    if models.is_empty() {
        models = HubModel::ALL.to_vec();
    }
    let device = Device::Cpu;
    let dir = tempfile::tempdir().expect("temporary folder");
    for model in models {
        let path = dir.path().join(format!("{model}.safetensors"));
        hub_weights::write_random_hub_weights(model, &path);
        let backbone = HubBackbone::load(model, &path, &device).expect("load");
        let (h, w) = model.kind().default_target_size();
        let x = Tensor::randn(0f32, 1f32, (8, 3, h, w), &device).expect("input");
        let t = Instant::now();
        backbone.pooled(&x).expect("warm-up");
        let warm_up = t.elapsed().as_secs_f64();
        let mut times: Vec<f64> = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                backbone.pooled(&x).expect("pooled");
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!(
            "{model}: batch 8 at {h}x{w}, {} threads: min {:.3} s, median {:.3} s over {repeats} runs (warm-up {warm_up:.3} s)",
            rayon_threads(),
            times[0],
            times[times.len() / 2]
        );
    }
    ExitCode::SUCCESS
}

/// The number of threads candle's CPU kernels use.
fn rayon_threads() -> usize {
    candle_core::utils::get_num_threads()
}
