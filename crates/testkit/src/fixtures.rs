//! Fixtures for the stage crates' tests: synthetic class folders, random VGG16 weights,
//! pipelines pointing at temporary folders, and artifacts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use artifact::Metadata;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use image::RgbImage;
use models::{Architecture, ModelSpec, Preprocessing};
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

/// Side of the fixture images and of the hand-set model's input.
pub const SIDE: u32 = 32;

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

fn tensor_of(values: Vec<f32>, shape: &[usize]) -> Tensor {
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
        out.insert(name, tensor_of(v, &shape));
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
