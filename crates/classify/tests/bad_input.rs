//! Unusable models, data and images give a clear message naming the problem, never a panic.

mod common;

use common::*;
use models::{Architecture, ModelSpec, Preprocessing};
use std::collections::BTreeMap;

fn evaluate_args<'a>(model: &'a str, data: &'a str) -> [&'a str; 7] {
    [
        "evaluate", "--model", model, "--data", data, "--device", "cpu",
    ]
}

#[test]
fn missing_truncated_and_foreign_files_are_not_models() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_fixture(&root.join("data"));
    let data = root.join("data");
    let data = data.to_str().unwrap();

    let err = run_err(&evaluate_args(root.join("nope").to_str().unwrap(), data));
    assert!(
        err.contains("nope") && err.contains("no such file"),
        "{err}"
    );

    let empty = root.join("empty_stage");
    std::fs::create_dir_all(&empty).unwrap();
    let err = run_err(&evaluate_args(empty.to_str().unwrap(), data));
    assert!(err.contains("empty_stage/model.safetensors"), "{err}");

    let model = write_brightness_model(&root.join("model"));
    let bytes = std::fs::read(&model).unwrap();
    let truncated = root.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    let err = run_err(&evaluate_args(truncated.to_str().unwrap(), data));
    assert!(err.contains("truncated.safetensors"), "{err}");

    let header_only = root.join("header.safetensors");
    std::fs::write(&header_only, &bytes[..20]).unwrap();
    let err = run_err(&evaluate_args(header_only.to_str().unwrap(), data));
    assert!(
        err.contains("header.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    let garbage = root.join("garbage.safetensors");
    std::fs::write(&garbage, b"GIF89a and then some").unwrap();
    let err = run_err(&evaluate_args(garbage.to_str().unwrap(), data));
    assert!(err.contains("garbage.safetensors"), "{err}");

    // Weights without a spec, and a training checkpoint.
    let bare = root.join("bare.safetensors");
    save(&bare, &brightness_weights(), &artifact::Metadata::new());
    let err = run_err(&evaluate_args(bare.to_str().unwrap(), data));
    assert!(
        err.contains("not a model artifact") && err.contains("model_spec"),
        "{err}"
    );
    let checkpoint = root.join("last.safetensors");
    let mut meta = artifact::Metadata::new();
    meta.insert("engine.format".into(), "littledata-checkpoint/1".into());
    save(&checkpoint, &brightness_weights(), &meta);
    let err = run_err(&evaluate_args(checkpoint.to_str().unwrap(), data));
    assert!(err.contains("training checkpoint"), "{err}");

    // A spec that does not parse.
    let bad_spec = root.join("bad_spec.safetensors");
    let mut meta = model_metadata(&brightness_spec());
    meta.insert(models::MODEL_SPEC_KEY.into(), "{\"version\": 1}".into());
    save(&bad_spec, &brightness_weights(), &meta);
    let err = run_err(&evaluate_args(bad_spec.to_str().unwrap(), data));
    assert!(err.contains("bad_spec.safetensors"), "{err}");
}

#[test]
fn weights_of_another_architecture_or_other_classes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_fixture(&root.join("data"));
    let data = root.join("data");
    let data = data.to_str().unwrap();

    // A three-class spec over the two-class network's weights.
    let three = ModelSpec::new(
        Architecture::SmallCnn,
        vec!["a".into(), "b".into(), "c".into()],
        (SIDE as usize, SIDE as usize),
        Preprocessing::rescale(1.0 / 255.0),
        None,
        None,
    )
    .unwrap();
    let path = root.join("three.safetensors");
    save(&path, &brightness_weights(), &model_metadata(&three));
    let err = run_err(&["predict", "--model", path.to_str().unwrap(), "x.png"]);
    assert!(
        err.contains("three.safetensors") && err.contains("dense2") && err.contains("expected [3]"),
        "{err}"
    );

    // A small-convnet spec over a top model's weights.
    let mut top = BTreeMap::new();
    top.insert(
        "top.dense1.weight".to_string(),
        candle_core::Tensor::zeros(
            (256, 2048),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap(),
    );
    let path = root.join("top_as_cnn.safetensors");
    save(&path, &top, &model_metadata(&brightness_spec()));
    let err = run_err(&evaluate_args(path.to_str().unwrap(), data));
    assert!(
        err.contains("top_as_cnn.safetensors") && err.contains("lacks tensor `conv1.bias`"),
        "{err}"
    );

    // A VGG16-based model whose conv base cannot be found.
    let vgg = ModelSpec::new(
        Architecture::Top,
        vec!["bright".into(), "dark".into()],
        (SIDE as usize, SIDE as usize),
        Preprocessing::imagenet(),
        Some(models::BackboneRef {
            kind: models::BackboneKind::Vgg16,
            sha256: "ab".repeat(32),
        }),
        Some(models::TopLayers::default()),
    )
    .unwrap();
    let path = root.join("vgg_top.safetensors");
    save(&path, &BTreeMap::new(), &model_metadata(&vgg));
    let missing = root.join("no-such-vgg16.safetensors");
    let (_, err) = run_err_env(
        &evaluate_args(path.to_str().unwrap(), data),
        &[("LITTLEDATA_VGG16_WEIGHTS", missing.to_str().unwrap())],
    );
    assert!(
        err.contains("no vgg16 weights found") && err.contains("no-such-vgg16.safetensors"),
        "{err}"
    );
}

#[test]
fn data_whose_classes_differ_or_that_cannot_be_decoded_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let model = write_brightness_model(&root.join("model"));
    let model = model.to_str().unwrap();

    let other = root.join("other");
    write_uniform(&other.join("bright/a.png"), 200);
    write_uniform(&other.join("grey/a.png"), 120);
    let err = run_err(&evaluate_args(model, other.to_str().unwrap()));
    assert!(
        err.contains("other") && err.contains("\"grey\"") && err.contains("\"dark\""),
        "{err}"
    );

    let broken = root.join("broken");
    write_fixture(&broken);
    std::fs::write(broken.join("dark/zz.png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let err = run_err(&evaluate_args(model, broken.to_str().unwrap()));
    assert!(err.contains("zz.png"), "{err}");

    let err = run_err(&evaluate_args(model, root.join("absent").to_str().unwrap()));
    assert!(err.contains("absent"), "{err}");
}
