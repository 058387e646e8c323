//! Shared fixtures: uniform images, the hand-set "brightness" small convnet artifact
//! (`testkit::fixtures`) and running the binary (the shared data folder and the exit-status checks are `testkit`'s).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use testkit::cli::{expect_failure, expect_success};
#[allow(unused_imports)]
pub use testkit::fixtures::{
    SIDE, brightness_spec, brightness_weights, model_metadata, save, write_brightness_model,
};

use candle_core::{DType, Tensor};
use candle_nn::VarMap;

/// Writes a `SIDE`×`SIDE` PNG whose every pixel is `(v, v, v)`.
pub fn write_uniform(path: &Path, v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(SIDE, SIDE, image::Rgb([v; 3]))
        .save(path)
        .unwrap();
}

/// The fixture: `bright/` and `dark/` uniform images, named by their grey level.
pub const BRIGHT: [u8; 3] = [179, 153, 76];
/// The `dark/` images' grey levels.
pub const DARK: [u8; 4] = [25, 51, 204, 230];

/// Writes the fixture folder under `dir`; returns the image paths by class.
pub fn write_fixture(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let write = |class: &str, levels: &[u8]| {
        levels
            .iter()
            .map(|&v| {
                let p = dir.join(class).join(format!("{v:03}.png"));
                write_uniform(&p, v);
                p
            })
            .collect::<Vec<_>>()
    };
    (write("bright", &BRIGHT), write("dark", &DARK))
}

/// The logit of the hand-set model for a uniform grey level `v`: the log-odds of `dark`.
pub fn logit(v: u8) -> f64 {
    0.5 - f64::from(v) / 255.0
}

/// The logistic function.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Every variable of `varmap` as a tensor, by name.
pub fn varmap_tensors(varmap: &VarMap) -> BTreeMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().to_dtype(DType::F32).unwrap()))
        .collect()
}

/// Runs the `classify` binary with `args` on the CPU.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_classify"));
    cmd.args(args).env_remove("LITTLEDATA_VGG16_WEIGHTS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

/// Runs the binary and asserts success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    expect_success(&args, &run(args, &[]))
}

/// Runs the binary and asserts a clean failure (status 1, an `error:` line, no panic);
/// returns stdout and stderr.
pub fn run_err_env(args: &[&str], env: &[(&str, &str)]) -> (String, String) {
    expect_failure(&args, &run(args, env))
}

/// [`run_err_env`] without extra environment; returns stderr.
pub fn run_err(args: &[&str]) -> String {
    run_err_env(args, &[]).1
}
