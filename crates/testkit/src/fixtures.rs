//! Fixtures for the stage crates' tests: synthetic class folders, random VGG16 weights,
//! pipelines pointing at temporary folders, and artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use image::RgbImage;
use pipeline::Pipeline;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Writes a VGG16 conv base with the real tensor names and shapes to `path`: glorot-uniform
/// kernels and small positive biases from `seed`.
pub fn write_random_vgg16(path: &Path, seed: u64) {
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
/// that vary so that resizing is exercised, from `seed`. Returns the files in row order.
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

/// The `[data]` section of a test pipeline: `data` and `artifacts`, images of `[h, w]`, seed 7.
pub fn data_section(data: &Path, artifacts: &Path, [h, w]: [u32; 2]) -> String {
    format!(
        "[data]\ndir = {:?}\nartifacts = {:?}\ntarget_size = [{h}, {w}]\nseed = 7\n\n",
        data.to_str().unwrap(),
        artifacts.to_str().unwrap()
    )
}

/// Parses the pipeline TOML `text` with the overrides `extra` (`section.key=value`).
pub fn pipeline(text: &str, extra: &[&str]) -> Pipeline {
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    Pipeline::from_toml_str(text, Path::new("test.toml"), &overrides).unwrap()
}

/// A pipeline over the synthetic `data` and `artifacts` folders: 64×48 images (for the small
/// convnet and the backbone), bottleneck batches of 3, top models of 3 epochs in batches of 4 and 3 folds; `extra` overrides.
pub fn synthetic_pipeline(data: &Path, artifacts: &Path, extra: &[&str]) -> Pipeline {
    pipeline(
        &format!(
            "{}[bottleneck]\nbatch_size = 3\ntarget_size = [64, 48]\n\n[top]\nepochs = 3\nbatch_size = 4\nkfold = 3\n",
            data_section(data, artifacts, [64, 48])
        ),
        extra,
    )
}

/// The tensors and metadata of a safetensors file, on the CPU.
pub fn load(path: &Path) -> (BTreeMap<String, Tensor>, artifact::Metadata) {
    artifact::load(path, &Device::Cpu).unwrap()
}
