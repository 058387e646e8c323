//! Helpers shared by the integration tests: synthetic class folders, random VGG16-shaped
//! weights, pipelines pointing at temporary folders, and the shared-data lookup.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use pipeline::Pipeline;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The shared data folder from `LITTLEDATA_SHARED`. When it is unset: panics if `CI` is set,
/// otherwise prints a note and returns `None` so the test can return early.
pub fn shared_dir(test: &str) -> Option<PathBuf> {
    match std::env::var_os("LITTLEDATA_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{test}: LITTLEDATA_SHARED is not set; it must name the shared folder \
                     (with data/, models/ and reference/) when CI is set"
                );
            }
            eprintln!(
                "note: {test} skipped: set LITTLEDATA_SHARED to the shared data folder to run it"
            );
            None
        }
    }
}

/// Writes a VGG16 conv base with glorot-random weights (the real tensor names and shapes) to
/// `path`.
pub fn write_random_weights(path: &Path, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors: BTreeMap<String, Tensor> = models::vgg16_tensor_specs()
        .into_iter()
        .map(|(name, shape)| {
            let t = if name.ends_with(".bias") {
                let v: Vec<f32> = (0..shape[0]).map(|_| rng.random_range(0.0..0.05)).collect();
                Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap()
            } else {
                models::glorot_uniform(&shape, &mut rng, &Device::Cpu).unwrap()
            };
            (name, t)
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    artifact::save(
        path,
        tensors.iter().map(|(n, t)| (n.as_str(), t)),
        &Default::default(),
    )
    .unwrap();
}

/// A random RGB image of `w` × `h` whose colour depends on `class`.
pub fn random_image(w: u32, h: u32, class: usize, rng: &mut ChaCha8Rng) -> RgbImage {
    let base = [(class * 97 % 256) as u8, (class * 31 % 256) as u8, 128];
    RgbImage::from_fn(w, h, |_, _| {
        let n: u8 = rng.random_range(0..64);
        image::Rgb([
            base[0].wrapping_add(n),
            base[1].wrapping_add(n / 2),
            base[2] ^ n,
        ])
    })
}

/// Writes `<dir>/<split>/<class>/img{i}.{png|jpg}` for every `(class, count)`, with sizes
/// that vary so that resizing is exercised. Returns the files in row order.
pub fn write_split(dir: &Path, split: &str, classes: &[(&str, usize)], seed: u64) -> Vec<PathBuf> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (c, (class, count)) in classes.iter().enumerate() {
        let folder = dir.join(split).join(class);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..*count {
            let (w, h) = (40 + rng.random_range(0..50), 30 + rng.random_range(0..50));
            let img = random_image(w, h, c, &mut rng);
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            let path = folder.join(format!("img{i:02}.{ext}"));
            img.save(&path).unwrap();
            out.push(path);
        }
    }
    out
}

/// A pipeline over `data` and `artifacts` with small images, plus extra TOML lines (inside
/// the sections they name).
pub fn pipeline(data: &Path, artifacts: &Path, extra: &[&str]) -> Pipeline {
    let text = format!(
        "[data]\ndir = {:?}\nartifacts = {:?}\ntarget_size = [64, 48]\nseed = 7\n\n\
         [bottleneck]\nbatch_size = 3\n",
        data.to_str().unwrap(),
        artifacts.to_str().unwrap()
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Pipeline::from_toml_str(&text, Path::new("test.toml"), &overrides).unwrap()
}

/// The tensors and metadata of a safetensors file.
pub fn load(path: &Path) -> (BTreeMap<String, Tensor>, artifact::Metadata) {
    artifact::load(path, &Device::Cpu).unwrap()
}

/// A tensor's raw little-endian bytes (for bit-for-bit comparisons).
pub fn bytes(t: &Tensor) -> Vec<u8> {
    match t.dtype() {
        candle_core::DType::U32 => t
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => t
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    }
}

/// Every file under `dir` (recursively), relative, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
