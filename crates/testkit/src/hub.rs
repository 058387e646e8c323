//! The hub backbones without the hub: deterministic random weights in timm's tensor names and
//! shapes, and a local hf-hub cache holding them laid out as the hub client leaves it.
//!
//! Names and shapes come from [`HubModel::tensor_specs`]; the values from one `ChaCha8Rng`
//! seeded with [`seed`], drawn tensor by tensor in spec order. The ranges keep activations of
//! order one through all the blocks: He-scaled convolutions, BatchNorm running variances in
//! `[0.5, 1.5]`, and small scales on what residual branches add (ResNet's `bn3`, ConvNeXt's
//! layer-scale `gamma`). `models`' `hub_weights` example writes the same file for
//! `scripts/reference/hub_models.py`, which computes timm's reference outputs from it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use models::HubModel;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The commit hash the `refs/main` of a cache written by [`populate_cache`] points at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The seed of `model`'s random weights (the reference files were made with these).
pub fn seed(model: HubModel) -> u64 {
    match model {
        HubModel::ConvNextTiny => 20_240_101,
        HubModel::ResNet50 => 20_240_102,
    }
}

/// The uniform range `[lo, hi)` the values of tensor `name` of `shape` are drawn from.
fn range(model: HubModel, name: &str, shape: &[usize]) -> (f32, f32) {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if shape.len() >= 2 {
        // Convolution or linear weight: variance gain / fan_in.
        let fan_in: usize = shape[1..].iter().product();
        let gain = match model {
            HubModel::ResNet50 => 2.0,
            HubModel::ConvNextTiny => 1.0,
        };
        let a = (3.0 * gain / fan_in as f32).sqrt();
        return (-a, a);
    }
    match leaf {
        "running_var" => (0.5, 1.5),
        "running_mean" => (-0.2, 0.2),
        "gamma" => (0.1, 0.4),
        "bias" => (-0.1, 0.1),
        "weight" if name.ends_with("bn3.weight") => (0.2, 0.5),
        "weight" => (0.5, 1.0),
        _ => (-0.1, 0.1),
    }
}

/// `model`'s tensors with random values from `seed`, in spec order.
pub fn random_hub_tensors(model: HubModel, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    model
        .tensor_specs()
        .into_iter()
        .map(|(name, shape)| {
            let (lo, hi) = range(model, &name, &shape);
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| lo + (hi - lo) * rng.random::<f32>())
                .collect();
            let t = Tensor::from_vec(values, shape, &Device::Cpu).expect("tensor");
            (name, t)
        })
        .collect()
}

/// Writes `tensors` to a safetensors file at `path` (deterministic bytes: the format orders
/// tensors by name).
pub fn write_tensors(tensors: Vec<(String, Tensor)>, path: &Path) {
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    candle_core::safetensors::save(&map, path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Writes `model`'s random weights for [`seed`] to `path`.
pub fn write_random_hub_weights(model: HubModel, path: &Path) {
    write_tensors(random_hub_tensors(model, seed(model)), path);
}

/// The weights file of `model`'s hub repository in the hf-hub cache folder `cache` (the
/// `hub/` folder under `HF_HOME`): the snapshot path [`populate_cache`] writes.
pub fn snapshot_path(cache: &Path, model: HubModel) -> PathBuf {
    let location = model.kind().weights_location();
    repo_dir(cache, model)
        .join("snapshots")
        .join(COMMIT)
        .join(location.hub_file)
}

fn repo_dir(cache: &Path, model: HubModel) -> PathBuf {
    let repo = model.kind().weights_location().hub_repo;
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Writes `model`'s random weights ([`write_random_hub_weights`]) into the hf-hub cache folder
/// `cache` (`$HF_HOME/hub`) as the hub client leaves a download: the file under
/// `blobs/<sha256>`, `snapshots/<COMMIT>/<file>` a relative symlink to it (a copy where there
/// are no symlinks), `refs/main` holding [`COMMIT`] (no newline). Returns the snapshot path
/// and the file's sha256.
pub fn populate_cache(cache: &Path, model: HubModel) -> (PathBuf, String) {
    let repo_dir = repo_dir(cache, model);
    let blobs = repo_dir.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let staging = blobs.join("incomplete");
    write_random_hub_weights(model, &staging);
    let sha256 = artifact::sha256_file(&staging).unwrap();
    std::fs::rename(&staging, blobs.join(&sha256)).unwrap();

    let pointer = snapshot_path(cache, model);
    std::fs::create_dir_all(pointer.parent().unwrap()).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha256), &pointer).unwrap();
    #[cfg(not(unix))]
    std::fs::copy(blobs.join(&sha256), &pointer).unwrap();

    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs").join("main"), COMMIT).unwrap();
    (pointer, sha256)
}
