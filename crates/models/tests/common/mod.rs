//! Helpers shared by the integration tests: random VGG16 weights and uniform tensors.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use models::{Vgg16, glorot_uniform, vgg16_tensor_specs};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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

/// A tensor of uniform values in `[0, 1)` drawn from a seeded generator.
pub fn uniform(shape: &[usize], seed: u64) -> Tensor {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}
