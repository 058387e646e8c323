//! Shared fixtures: synthetic class folders, pipeline files, running the binary, reading
//! artifacts.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Side of the synthetic images (the smallest `data.target_size` a pipeline accepts).
pub const SIDE: u32 = 32;

/// A deterministic pseudo-random byte for `(a, b, c)`.
fn noise(a: u32, b: u32, c: u32) -> u8 {
    let mut h =
        a.wrapping_mul(0x9E37_79B1) ^ b.wrapping_mul(0x85EB_CA77) ^ c.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h & 0xFF) as u8
}

/// A `SIDE`×`SIDE` PNG whose pixels are `base` (per channel) plus noise in `0..spread`.
pub fn write_image(path: &Path, base: [u8; 3], spread: u8, salt: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        image::Rgb(std::array::from_fn(|c| {
            let n = u32::from(noise(salt, x * SIDE + y, c as u32)) * u32::from(spread) / 256;
            base[c].saturating_add(n as u8)
        }))
    });
    img.save(path).unwrap();
}

/// Writes `count` images per class into `dir/<class>/`, class `k` with base colour
/// `colours[k]`.
pub fn write_split(dir: &Path, classes: &[(&str, [u8; 3])], count: usize, salt: u32) {
    for (k, (class, base)) in classes.iter().enumerate() {
        for i in 0..count {
            let salt = salt * 10_000 + k as u32 * 1_000 + i as u32;
            write_image(
                &dir.join(class).join(format!("{i:03}.png")),
                *base,
                85,
                salt,
            );
        }
    }
}

/// Bright (170–255) versus dark (0–85) images.
pub const BRIGHT_DARK: [(&str, [u8; 3]); 2] = [("bright", [170; 3]), ("dark", [0; 3])];

/// Reddish, greenish and bluish images.
pub const RGB: [(&str, [u8; 3]); 3] = [
    ("blue", [0, 0, 170]),
    ("green", [0, 170, 0]),
    ("red", [170, 0, 0]),
];

/// A data folder with `train/` and `validation/` splits of `classes`.
pub fn write_data(root: &Path, classes: &[(&str, [u8; 3])], train: usize, validation: usize) {
    write_split(&root.join("train"), classes, train, 1);
    write_split(&root.join("validation"), classes, validation, 2);
}

/// A pipeline file in `root` pointing at `root/data` and `root/artifacts`, with 32×32 images,
/// batch 8, `epochs` epochs and the post's augmentation; `extra` is appended to
/// `[small_cnn]`.
pub fn write_pipeline(root: &Path, epochs: usize, extra: &str) -> PathBuf {
    let path = root.join("pipeline.toml");
    let text = format!(
        "[data]\ndir = {:?}\nartifacts = {:?}\ntarget_size = [{SIDE}, {SIDE}]\nseed = 7\n\n\
         [small_cnn]\nepochs = {epochs}\nbatch_size = 8\n{extra}\n",
        root.join("data").display().to_string(),
        root.join("artifacts").display().to_string(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the `train-small` binary with `args` on the CPU.
pub fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_train-small"))
        .args(args)
        .args(["--device", "cpu"])
        .env_remove("LITTLEDATA_PIPELINE")
        .output()
        .expect("the binary runs")
}

/// Runs the binary and asserts success; returns stdout.
pub fn run_ok(args: &[&str]) -> String {
    testkit::cli::expect_success(&args, &run(args))
}

/// Runs the binary and asserts a clean failure (status 1, an `error:` line, no panic);
/// returns stderr.
pub fn run_err(args: &[&str]) -> String {
    testkit::cli::expect_failure(&args, &run(args)).1
}

/// Every tensor of a safetensors file as raw f32 values, by name.
pub fn tensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
    let (t, _) = artifact::load(path, &candle_core::Device::Cpu).unwrap();
    t.into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

/// The `[small_cnn]` output folder under `root`.
pub fn out_dir(root: &Path) -> PathBuf {
    root.join("artifacts").join("small_cnn")
}

/// `metrics.json` under `root`.
pub fn metrics(root: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out_dir(root).join("metrics.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The figures of `history.json` in the output folder `out`, without the timings, which vary
/// from run to run.
pub fn history_figures(out: &Path) -> Vec<[f64; 4]> {
    let text = std::fs::read_to_string(out.join("history.json")).unwrap();
    let h: serde_json::Value = serde_json::from_str(&text).unwrap();
    h["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| ["loss", "acc", "val_loss", "val_acc"].map(|k| e[k].as_f64().unwrap()))
        .collect()
}
