//! Shared fixtures: uniform images, a hand-set "brightness" small convnet artifact and
//! running the binary (the shared data folder and the exit-status checks are `testkit`'s).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use testkit::cli::{expect_failure, expect_success};

use artifact::Metadata;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use models::{Architecture, ModelSpec, Preprocessing};

/// Side of the fixture images and of the hand-set model's input.
pub const SIDE: u32 = 32;

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

/// The spec of the hand-set model.
pub fn brightness_spec() -> ModelSpec {
    ModelSpec::new(
        Architecture::SmallCnn,
        vec!["bright".into(), "dark".into()],
        (SIDE as usize, SIDE as usize),
        Preprocessing::rescale(1.0 / 255.0),
        None,
        None,
    )
    .unwrap()
}

fn tensor(values: Vec<f32>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The weights of a small convnet whose output is exactly `0.5 - mean brightness` on uniform
/// images: each convolution's first filter averages its input's first channel (all three for
/// the first), the hidden unit 0 averages the first feature map, and the output is
/// `0.5 - hidden_0`.
pub fn brightness_weights() -> BTreeMap<String, Tensor> {
    let varmap = VarMap::new();
    models::build_from_spec(&brightness_spec(), &varmap, None, &Device::Cpu).unwrap();
    let shapes: BTreeMap<String, Vec<usize>> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.dims().to_vec()))
        .collect();
    let mut out = BTreeMap::new();
    for (name, shape) in shapes {
        let n: usize = shape.iter().product();
        let mut v = vec![0f32; n];
        match name.as_str() {
            "conv1.weight" => v[..27].fill(1.0 / 27.0),
            "conv2.weight" | "conv3.weight" => v[..9].fill(1.0 / 9.0),
            "dense1.weight" => {
                // Row 0, the first feature map (2×2 for a 32×32 input).
                let per_map = shape[1] / 64;
                v[..per_map].fill(1.0 / per_map as f32);
            }
            "dense2.weight" => v[0] = -1.0,
            "dense2.bias" => v[0] = 0.5,
            _ => {}
        }
        out.insert(name, tensor(v, &shape));
    }
    out
}

/// The metadata of a model artifact with `spec` (and the nearest-neighbour resize filter).
pub fn model_metadata(spec: &ModelSpec) -> Metadata {
    let mut meta = Metadata::new();
    spec.insert_into(&mut meta);
    meta.insert(engine::INTERPOLATION_KEY.into(), "\"nearest\"".into());
    meta
}

/// Saves `tensors` with `meta` as `path`.
pub fn save(path: &Path, tensors: &BTreeMap<String, Tensor>, meta: &Metadata) {
    artifact::save(path, tensors.iter().map(|(n, t)| (n.as_str(), t)), meta).unwrap();
}

/// Writes the hand-set model as `dir/model.safetensors`; returns that path.
pub fn write_brightness_model(dir: &Path) -> PathBuf {
    let path = dir.join("model.safetensors");
    save(
        &path,
        &brightness_weights(),
        &model_metadata(&brightness_spec()),
    );
    path
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
