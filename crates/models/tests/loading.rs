//! Loading VGG16 weights: bad files give errors naming the file and the tensor.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{random_vgg16_tensors, uniform};
use models::{ModelError, Vgg16, vgg16_tensor_specs};
use testkit::max_abs_diff;

fn save(path: &Path, tensors: &BTreeMap<String, Tensor>) {
    let map: HashMap<String, Tensor> = tensors.clone().into_iter().collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn a_file_that_is_not_safetensors_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    std::fs::write(
        &path,
        b"this is a JPEG, honestly, with a long enough text to pass eight bytes",
    )
    .unwrap();
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("not a safetensors file"),
        "{msg}"
    );

    std::fs::write(&path, b"abc").unwrap();
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors { .. }), "{err:?}");

    // A plausible length followed by something that is not JSON.
    let mut bytes = 16u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"not json at all!");
    std::fs::write(&path, &bytes).unwrap();
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors { .. }), "{err:?}");
}

#[test]
fn a_missing_file_names_the_file() {
    let err = Vgg16::load(Path::new("/nonexistent/vgg16.safetensors"), &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/vgg16.safetensors"));
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    let mut tensors = BTreeMap::new();
    tensors.insert(
        "features.0.weight".to_string(),
        Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    tensors.insert(
        "classifier.0.weight".to_string(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&path, &tensors);
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    match &err {
        ModelError::MissingTensor {
            path: p,
            name,
            also_missing,
        } => {
            assert_eq!(p, &path);
            assert_eq!(name, "features.0.bias");
            assert_eq!(*also_missing, 24);
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(path.to_str().unwrap()) && msg.contains("features.0.bias"),
        "{msg}"
    );
}

#[test]
fn a_wrong_shape_is_named_with_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.safetensors");
    let mut tensors = random_vgg16_tensors(1);
    tensors.insert(
        "features.26.weight".to_string(),
        Tensor::zeros((512, 512, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&path, &tensors);
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    match &err {
        ModelError::ShapeMismatch {
            path: p,
            name,
            expected,
            found,
        } => {
            assert_eq!(p, &path);
            assert_eq!(name, "features.26.weight");
            assert_eq!(expected, &vec![512, 512, 3, 3]);
            assert_eq!(found, &vec![512, 512, 1, 1]);
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("features.26.weight"));

    // The same checks apply to tensors handed over in memory.
    let err = Vgg16::from_tensors(&tensors, Path::new("in-memory"), "0".repeat(64)).unwrap_err();
    assert!(
        matches!(err, ModelError::ShapeMismatch { ref name, .. } if name == "features.26.weight"),
        "{err:?}"
    );
}

#[test]
fn a_non_float_tensor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.safetensors");
    let mut tensors = random_vgg16_tensors(2);
    tensors.insert(
        "features.0.bias".to_string(),
        Tensor::zeros(64, DType::U32, &Device::Cpu).unwrap(),
    );
    save(&path, &tensors);
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::UnsupportedDtype { ref name, .. } if name == "features.0.bias"),
        "{err:?}"
    );
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("truncated.safetensors");
    save(&path, &random_vgg16_tensors(3));
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 1000).unwrap();
    drop(file);
    let err = Vgg16::load(&path, &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::NotSafetensors { .. }), "{err:?}");
    assert!(err.to_string().contains("past the end"), "{err}");
}

#[test]
fn a_valid_file_loads_with_extra_tensors_and_half_precision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timm-like.safetensors");
    let tensors = random_vgg16_tensors(4);
    let mut stored: BTreeMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.to_dtype(DType::F16).unwrap()))
        .collect();
    // timm's file also holds the classifier; it is ignored.
    stored.insert(
        "head.fc.weight".to_string(),
        Tensor::zeros((10, 4), DType::F32, &Device::Cpu).unwrap(),
    );
    save(&path, &stored);
    let vgg = Vgg16::load(&path, &Device::Cpu).unwrap();
    assert_eq!(vgg.sha256(), artifact::sha256_file(&path).unwrap());

    let reference = Vgg16::from_tensors(&stored, &path, "x").unwrap();
    let x = uniform(&[1, 3, 32, 32], 5);
    let a = vgg.forward(&x).unwrap();
    let b = reference.forward(&x).unwrap();
    assert_eq!(a.dims(), &[1, 512, 1, 1]);
    assert!(max_abs_diff(&a, &b) == 0.0);
    assert_eq!(vgg16_tensor_specs().len(), 26);
}
