//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use models::{Vgg16, glorot_uniform, vgg16_tensor_specs};
use rand::SeedableRng;
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
                     (with models/ and reference/) when CI is set"
                );
            }
            eprintln!(
                "note: {test} skipped: set LITTLEDATA_SHARED to the shared data folder to run it"
            );
            None
        }
    }
}

/// A VGG16 conv base with glorot-random weights and biases, for tests that need
/// the network's shapes but not pretrained values.
pub fn random_vgg16_tensors(seed: u64) -> BTreeMap<String, Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    vgg16_tensor_specs()
        .into_iter()
        .map(|(name, shape)| {
            let t = glorot_uniform(&shape, &mut rng, &Device::Cpu).unwrap();
            (name, t)
        })
        .collect()
}

/// [`random_vgg16_tensors`] as a [`Vgg16`] with a made-up digest.
pub fn random_vgg16(seed: u64) -> Vgg16 {
    Vgg16::from_tensors(
        &random_vgg16_tensors(seed),
        Path::new("random-vgg16"),
        format!("{seed:064x}"),
    )
    .unwrap()
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    a.sub(b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// A tensor's values as a flat vector.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// A tensor of uniform values in `[0, 1)` drawn from a seeded generator.
pub fn uniform(shape: &[usize], seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}
