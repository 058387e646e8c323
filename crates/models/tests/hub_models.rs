//! The hub backbones against PyTorch/timm: deterministic random weights, laid out as a local
//! hf-hub cache and found through `hf_hub::Cache`, must give timm's pooled features on the
//! stored input (`tests/data/hub_<model>.safetensors`, from `scripts/reference/hub_models.py`),
//! through [`HubBackbone`] and through the [`Backbone`] seam; damaged weights files are
//! refused with the file and the tensor named.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hf_hub::Cache;
use models::{Backbone, HubBackbone, HubModel, ModelError};
use testkit::hub::{self as hub_weights, COMMIT};
use testkit::{max_abs, max_abs_diff};

fn reference_path(model: HubModel) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("hub_{}.safetensors", model.name()))
}

fn check_against_timm(model: HubModel) {
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, blob_sha256) = hub_weights::populate_cache(dir.path(), model);
    #[cfg(unix)]
    assert!(
        std::fs::symlink_metadata(&snapshot)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let location = model.kind().weights_location();
    let path = Cache::new(dir.path().to_path_buf())
        .model(location.hub_repo.to_string())
        .get(location.hub_file)
        .expect("hf-hub finds the weights in the cache");
    assert!(path.ends_with(format!("snapshots/{COMMIT}/model.safetensors")));
    assert_eq!(path, snapshot);

    let device = Device::Cpu;
    let backbone = HubBackbone::load(model, &path, &device).unwrap();
    assert_eq!(backbone.model(), model);
    assert_eq!(backbone.path(), path.as_path());
    assert_eq!(backbone.sha256(), blob_sha256);

    let reference = reference_path(model);
    let (refs, metadata) = load_with_metadata(&reference);
    // The reference was computed from these very weights: a change in the generator (or in
    // the spec order it follows) shows here rather than as a numeric mismatch.
    assert_eq!(
        metadata.get("weights_sha256").map(String::as_str),
        Some(blob_sha256.as_str()),
        "{} was made from other weights; regenerate it (scripts/reference/hub_models.py)",
        reference.display()
    );
    let input = &refs["input"];
    let expected = &refs["pooled"];
    assert_eq!(
        expected.dims(),
        &[input.dim(0).unwrap(), model.feature_dim()]
    );

    let pooled = backbone.pooled(input).unwrap();
    // The seam gives the same numbers as `[N, C, 1, 1]`, and refuses to fine-tune.
    let seam = Backbone::load_file(model.kind(), &path, &device).unwrap();
    assert_eq!(seam.kind(), model.kind());
    assert_eq!(seam.sha256(), blob_sha256);
    let features = seam.features(input).unwrap();
    assert_eq!(
        features.dims(),
        &[input.dim(0).unwrap(), model.feature_dim(), 1, 1]
    );
    assert_eq!(
        max_abs_diff(&features.flatten_from(1).unwrap(), &pooled),
        0.0
    );
    let err = seam.frozen(input).unwrap_err().to_string();
    assert!(
        err.contains("fine-tuning is not supported") && err.contains(model.name()),
        "{err}"
    );
    let err = seam
        .tail(&candle_nn::VarMap::new(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("fine-tuning is not supported"), "{err}");

    let scale = max_abs(expected);
    let diff = max_abs_diff(&pooled, expected);
    eprintln!(
        "{model}: max abs diff {diff:e}, largest |pooled| {scale} (torch {}, timm {})",
        metadata.get("torch").map_or("?", String::as_str),
        metadata.get("timm").map_or("?", String::as_str)
    );
    assert!(
        scale > 0.1,
        "degenerate reference: largest |pooled| {scale}"
    );
    assert!(
        diff <= 1e-3 * scale,
        "{model}: pooled features differ from timm by {diff} (largest |pooled| {scale})"
    );
}

fn load_with_metadata(
    path: &Path,
) -> (
    std::collections::HashMap<String, Tensor>,
    std::collections::HashMap<String, String>,
) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    (tensors, metadata)
}

#[test]
fn convnext_tiny_matches_timm() {
    check_against_timm(HubModel::ConvNextTiny);
}

#[test]
fn resnet50_matches_timm() {
    check_against_timm(HubModel::ResNet50);
}

/// Random weights for `model` with `edit` applied, written to a file in `dir`.
fn edited_weights(
    dir: &Path,
    model: HubModel,
    edit: impl FnOnce(&mut Vec<(String, Tensor)>),
) -> PathBuf {
    let mut tensors = hub_weights::random_hub_tensors(model, 1);
    edit(&mut tensors);
    let path = dir.join(format!("{}.safetensors", model.name()));
    hub_weights::write_tensors(tensors, &path);
    path
}

#[test]
fn a_missing_tensor_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for model in HubModel::ALL {
        let victim = model.tensor_specs()[7].0.clone();
        let path = edited_weights(dir.path(), model, |ts| ts.retain(|(n, _)| *n != victim));
        let err = HubBackbone::load(model, &path, &Device::Cpu).unwrap_err();
        match &err {
            ModelError::MissingTensor {
                path: p,
                name,
                also_missing,
            } => {
                assert_eq!(p, &path);
                assert_eq!(name, &victim);
                assert_eq!(*also_missing, 0);
            }
            other => panic!("expected MissingTensor, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(&victim),
            "{msg}"
        );
    }
}

#[test]
fn a_wrong_shape_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for model in HubModel::ALL {
        let (victim, shape) = model.tensor_specs()[0].clone();
        let mut wrong = shape.clone();
        wrong[0] += 1;
        let wrong_for_edit = wrong.clone();
        let path = edited_weights(dir.path(), model, |ts| {
            ts[0].1 = Tensor::zeros(wrong_for_edit, candle_core::DType::F32, &Device::Cpu).unwrap();
        });
        let err = HubBackbone::load(model, &path, &Device::Cpu).unwrap_err();
        match &err {
            ModelError::ShapeMismatch {
                path: p,
                name,
                expected,
                found,
            } => {
                assert_eq!(p, &path);
                assert_eq!(name, &victim);
                assert_eq!(expected, &shape);
                assert_eq!(found, &wrong);
            }
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains(&victim),
            "{msg}"
        );
    }
}

#[test]
fn extra_tensors_are_ignored_and_bad_input_is_an_error() {
    // A hub file also holds the classifier (and BatchNorm counters): loading ignores them.
    let dir = tempfile::tempdir().unwrap();
    let model = HubModel::ResNet50;
    let path = edited_weights(dir.path(), model, |ts| {
        ts.push((
            "fc.weight".into(),
            Tensor::zeros((1000, 2048), candle_core::DType::F32, &Device::Cpu).unwrap(),
        ));
    });
    let backbone = HubBackbone::load(model, &path, &Device::Cpu).unwrap();
    let x = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(backbone.pooled(&x).unwrap().dims(), &[1, 2048]);
    let small = Tensor::zeros((1, 3, 16, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(backbone.pooled(&small).is_err());
    let gray = Tensor::zeros((1, 1, 64, 64), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(backbone.pooled(&gray).is_err());
}

#[test]
fn a_truncated_file_is_refused_with_the_file_and_a_tensor_named() {
    let dir = tempfile::tempdir().unwrap();
    for model in HubModel::ALL {
        let path = edited_weights(dir.path(), model, |_| {});
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = HubBackbone::load(model, &path, &Device::Cpu).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ModelError::NotSafetensors { .. }),
            "expected NotSafetensors, got {err:?}"
        );
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("lies past the end of the file (truncated?)"),
            "{msg}"
        );
        let named = model
            .tensor_specs()
            .iter()
            .any(|(name, _)| msg.contains(&format!("tensor `{name}`")));
        assert!(named, "{msg}");

        // Cut inside the header: still an error naming the file, never a panic.
        std::fs::write(&path, &bytes[..100]).unwrap();
        let msg = HubBackbone::load(model, &path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}
