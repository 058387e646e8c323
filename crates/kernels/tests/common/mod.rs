//! Helpers shared by the integration tests.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
pub use testkit::values;

/// A tensor of uniform values in `[-scale, scale)` from a seeded ChaCha8 stream.
pub fn uniform(seed: u64, shape: &[usize], scale: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("shape matches data")
}

/// Asserts `got ≈ want` element-wise: `|g - w| ≤ rel · max(1, max|want|)`.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, rel: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes differ");
    let (g, w) = (values(got), values(want));
    let scale = w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let tol = rel * scale;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol,
            "{what}: element {i} differs: {a} vs {b} (tolerance {tol}, scale {scale})"
        );
    }
}

/// Runs this test binary again once for every instruction set the CPU supports below the
/// detected one, with `LITTLEDATA_KERNELS_ISA` set to it, and asserts that every test passes
/// there too (the variable is read once per process, so each level needs its own process).
/// `this_test` is the name of the calling test, skipped in the children. A child process (the
/// variable already set) returns at once.
pub fn rerun_under_every_isa(this_test: &str) {
    if std::env::var_os("LITTLEDATA_KERNELS_ISA").is_some() {
        return;
    }
    let detected = kernels::Isa::detect();
    let exe = std::env::current_exe().expect("test binary path");
    for isa in kernels::Isa::available() {
        if isa == detected {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .env("LITTLEDATA_KERNELS_ISA", isa.name())
            .args(["--skip", this_test, "--test-threads", "1"])
            .output()
            .expect("re-run the test binary");
        assert!(
            out.status.success(),
            "tests failed with LITTLEDATA_KERNELS_ISA={}:\n{}\n{}",
            isa.name(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
