//! Model specs: JSON form, validation, and rebuilding models from an artifact's contents.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{random_vgg16, uniform};
use models::{
    Architecture, Backbone, BackboneKind, BackboneRef, FinetuneNet, MODEL_SPEC_KEY, Model,
    ModelError, ModelSpec, Network, Preprocessing, SmallCnn, SmallCnnConfig, TopLayers, TopModel,
    TopModelConfig, Vgg16, build_from_spec, load_from_spec, load_varmap, probabilities,
    units_for_classes,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use testkit::max_abs_diff;

fn classes(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn vgg16_ref(sha256: &str) -> Option<BackboneRef> {
    Some(BackboneRef {
        kind: BackboneKind::Vgg16,
        sha256: sha256.to_string(),
    })
}

fn tensors_of(varmap: &VarMap) -> BTreeMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().copy().unwrap()))
        .collect()
}

#[test]
fn specs_round_trip_through_json_and_metadata() {
    let spec = ModelSpec::new(
        Architecture::Top,
        classes(&["cats", "dogs"]),
        (150, 150),
        Preprocessing::imagenet(),
        vgg16_ref(&"ab".repeat(32)),
        Some(TopLayers::default()),
    )
    .unwrap();
    assert_eq!(spec.units, 1);
    assert!(spec.is_binary());
    assert_eq!(spec.top_feature_shape(), Some((512, 4, 4)));
    assert_eq!(spec.backbone_name(), Some("vgg16"));
    let json = spec.to_json();
    assert!(json.contains(r#""architecture":"top""#), "{json}");
    assert!(json.contains(r#""kind":"vgg16""#), "{json}");
    assert!(json.contains(r#""hidden_units":256"#), "{json}");
    assert!(json.contains(r#""kind":"normalize""#), "{json}");
    assert!(json.contains(r#""target_size":[150,150]"#), "{json}");
    assert_eq!(ModelSpec::from_json(&json).unwrap(), spec);

    let mut meta = artifact::Metadata::new();
    spec.insert_into(&mut meta);
    assert!(meta.contains_key(MODEL_SPEC_KEY));
    assert_eq!(
        ModelSpec::from_metadata(&meta, Path::new("artifacts/top/model.safetensors")).unwrap(),
        spec
    );
    let err = ModelSpec::from_metadata(
        &artifact::Metadata::new(),
        Path::new("artifacts/x.safetensors"),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("artifacts/x.safetensors")
            && err.to_string().contains(MODEL_SPEC_KEY),
        "{err}"
    );

    let small = ModelSpec::new(
        Architecture::SmallCnn,
        classes(&["a", "b", "c"]),
        (150, 150),
        Preprocessing::rescale(1.0 / 255.0),
        None,
        None,
    )
    .unwrap();
    assert_eq!(small.units, 3);
    let json = small.to_json();
    assert!(
        json.contains(r#""kind":"rescale""#) && !json.contains("backbone"),
        "{json}"
    );
    assert_eq!(ModelSpec::from_json(&json).unwrap(), small);
}

#[test]
fn invalid_specs_are_refused() {
    let ok = || {
        ModelSpec::new(
            Architecture::SmallCnn,
            classes(&["cats", "dogs"]),
            (150, 150),
            Preprocessing::rescale(1.0 / 255.0),
            None,
            None,
        )
        .unwrap()
    };
    let invalid = |spec: ModelSpec| matches!(spec.validate(), Err(ModelError::InvalidSpec(_)));

    assert!(invalid(ModelSpec { units: 2, ..ok() }));
    assert!(invalid(ModelSpec {
        classes: classes(&["cats"]),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        classes: classes(&["cats", "cats"]),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        classes: classes(&["cats", ""]),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        target_size: (21, 150),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        version: 99,
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        backbone: vgg16_ref(&"0".repeat(64)),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        top: Some(TopLayers::default()),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        preprocessing: Preprocessing::Rescale { scale: f32::NAN },
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        preprocessing: Preprocessing::Normalize {
            rescale: 1.0,
            mean: [0.0; 3],
            std: [1.0, 0.0, 1.0]
        },
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        architecture: Architecture::Finetune,
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        architecture: Architecture::Finetune,
        backbone: vgg16_ref("xyz"),
        top: Some(TopLayers::default()),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        architecture: Architecture::Top,
        target_size: (31, 31),
        backbone: vgg16_ref(&"0".repeat(64)),
        top: Some(TopLayers::default()),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        architecture: Architecture::Top,
        backbone: vgg16_ref(&"0".repeat(64)),
        ..ok()
    }));
    assert!(invalid(ModelSpec {
        architecture: Architecture::Top,
        backbone: vgg16_ref(&"0".repeat(64)),
        top: Some(TopLayers {
            hidden_units: 8,
            dropout: 1.0
        }),
        ..ok()
    }));
    assert!(ModelSpec::from_json("{").is_err());
    assert!(ModelSpec::from_json(&ok().to_json().replace("small_cnn", "resnet50")).is_err());
    assert!(units_for_classes(1).is_err());
    assert_eq!(units_for_classes(2).unwrap(), 1);
    assert_eq!(units_for_classes(7).unwrap(), 7);
}

#[test]
fn preprocessing_is_the_data_pipelines_and_keeps_its_json() {
    // The spec's preprocessing is the data pipeline's type, so what trained a model is what
    // classifies with it.
    let p: imagedata::Preprocessing = Preprocessing::imagenet();
    let coeffs = p.affine_coefficients();
    // Pixel 255 in the red channel: (1 - 0.485) / 0.229.
    assert!((255.0 * coeffs[0].0 + coeffs[0].1 - (1.0 - 0.485) / 0.229).abs() < 1e-5);
    assert!((coeffs[2].1 + 0.406 / 0.225).abs() < 1e-6);
    let coeffs = Preprocessing::rescale(1.0 / 255.0).affine_coefficients();
    assert!(
        coeffs
            .iter()
            .all(|&(a, b)| b == 0.0 && (a * 255.0 - 1.0).abs() < 1e-6)
    );
    // The JSON shape stored in model specs.
    assert_eq!(
        serde_json::to_string(&Preprocessing::rescale(0.5)).unwrap(),
        r#"{"kind":"rescale","scale":0.5}"#
    );
    let json = r#"{"kind":"normalize","rescale":1.0,"mean":[0.0,0.5,1.0],"std":[1.0,2.0,3.0]}"#;
    assert_eq!(
        serde_json::from_str::<Preprocessing>(json).unwrap(),
        Preprocessing::Normalize {
            rescale: 1.0,
            mean: [0.0, 0.5, 1.0],
            std: [1.0, 2.0, 3.0]
        }
    );
}

#[test]
fn a_small_cnn_is_rebuilt_from_its_spec_and_weights() {
    let spec = ModelSpec::new(
        Architecture::SmallCnn,
        classes(&["cats", "dogs"]),
        (40, 40),
        Preprocessing::rescale(1.0 / 255.0),
        None,
        None,
    )
    .unwrap();
    let trained = VarMap::new();
    let config = SmallCnnConfig {
        input_size: (40, 40),
        units: 1,
    };
    let net = SmallCnn::new(
        &trained,
        config,
        &mut ChaCha8Rng::seed_from_u64(77),
        &Device::Cpu,
    )
    .unwrap();
    let tensors = tensors_of(&trained);
    let origin = Path::new("artifacts/small_cnn/model.safetensors");

    let (model, varmap) = load_from_spec(&spec, &tensors, origin, None, &Device::Cpu).unwrap();
    assert!(matches!(model, Model::SmallCnn(_)));
    assert_eq!(varmap.all_vars().len(), 10);
    let x = uniform(&[2, 3, 40, 40], 1);
    assert_eq!(
        max_abs_diff(
            &model.forward_eval(&x).unwrap(),
            &net.forward_eval(&x).unwrap()
        ),
        0.0
    );

    // A missing or misshapen tensor names the artifact and the tensor.
    let mut missing = tensors.clone();
    missing.remove("dense2.bias");
    let err = load_from_spec(&spec, &missing, origin, None, &Device::Cpu)
        .err()
        .expect("an error");
    assert!(
        matches!(err, ModelError::MissingTensor { ref name, .. } if name == "dense2.bias"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("artifacts/small_cnn/model.safetensors")
    );
    let mut wrong = tensors.clone();
    wrong.insert(
        "conv1.weight".into(),
        Tensor::zeros((32, 3, 5, 5), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load_from_spec(&spec, &wrong, origin, None, &Device::Cpu)
        .err()
        .expect("an error");
    assert!(
        matches!(err, ModelError::ShapeMismatch { ref name, .. } if name == "conv1.weight"),
        "{err:?}"
    );
    // Another image size than the weights were trained for does not fit dense1.
    let other = ModelSpec {
        target_size: (64, 64),
        ..spec.clone()
    };
    assert!(matches!(
        load_from_spec(&other, &tensors, origin, None, &Device::Cpu),
        Err(ModelError::ShapeMismatch { .. })
    ));
}

#[test]
fn backbone_models_need_the_same_base_weights() {
    let vgg = random_vgg16(9);
    let spec = ModelSpec::new(
        Architecture::Top,
        classes(&["a", "b", "c"]),
        (32, 32),
        Preprocessing::imagenet(),
        vgg16_ref(vgg.sha256()),
        Some(TopLayers::default()),
    )
    .unwrap();
    let err = build_from_spec(&spec, &VarMap::new(), None, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::BackboneRequired { .. }) && err.to_string().contains("vgg16"),
        "{err:?}"
    );
    let other = Backbone::Vgg16(random_vgg16(10));
    let err = build_from_spec(&spec, &VarMap::new(), Some(&other), &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, ModelError::WeightsDigestMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(vgg.sha256()));

    // Top-model weights trained on features load into the raw-image classifier.
    let trained = VarMap::new();
    let top = TopModel::new(
        &trained,
        TopModelConfig {
            feature_shape: (512, 1, 1),
            units: 3,
            layers: TopLayers::default(),
        },
        &mut ChaCha8Rng::seed_from_u64(1),
        &Device::Cpu,
    )
    .unwrap();
    let origin = Path::new("artifacts/top/model.safetensors");
    let (model, _) = load_from_spec(
        &spec,
        &tensors_of(&trained),
        origin,
        Some(&Backbone::Vgg16(vgg.clone())),
        &Device::Cpu,
    )
    .unwrap();
    let x = uniform(&[2, 3, 32, 32], 3);
    let expected = top.forward_eval(&vgg.forward(&x).unwrap()).unwrap();
    assert_eq!(
        max_abs_diff(&model.forward_eval(&x).unwrap(), &expected),
        0.0
    );
    assert_eq!(model.output_units(), 3);
}

fn finetune_net(
    varmap: &VarMap,
    backbone: &Backbone,
    input: (usize, usize),
    seed: u64,
) -> FinetuneNet {
    let tail = backbone.tail(varmap, &Device::Cpu).unwrap();
    let config = TopModelConfig {
        feature_shape: Vgg16::output_shape(input, 5).unwrap(),
        units: 1,
        layers: TopLayers::default(),
    };
    let top = TopModel::new(
        varmap,
        config,
        &mut ChaCha8Rng::seed_from_u64(seed),
        &Device::Cpu,
    )
    .unwrap();
    FinetuneNet::new(tail, top)
}

#[test]
fn a_finetuned_model_is_rebuilt_from_block5_and_top() {
    let vgg = random_vgg16(11);
    let backbone = Backbone::Vgg16(vgg.clone());
    let spec = ModelSpec::new(
        Architecture::Finetune,
        classes(&["cats", "dogs"]),
        (48, 32),
        Preprocessing::imagenet(),
        vgg16_ref(vgg.sha256()),
        Some(TopLayers::default()),
    )
    .unwrap();
    let trained = VarMap::new();
    let head = finetune_net(&trained, &backbone, (48, 32), 5);
    // Fine-tuning moved block 5.
    {
        let data = trained.data().lock().unwrap();
        let w = &data["features.28.weight"];
        w.set(&(w.as_tensor() * 0.5).unwrap()).unwrap();
    }
    let tensors = tensors_of(&trained);
    let origin = Path::new("artifacts/finetune/model.safetensors");
    let (model, varmap) =
        load_from_spec(&spec, &tensors, origin, Some(&backbone), &Device::Cpu).unwrap();
    assert_eq!(varmap.all_vars().len(), 10);
    let x = uniform(&[2, 3, 48, 32], 6);
    let expected = head
        .forward_eval(&vgg.forward_blocks(&x, 1, 4).unwrap())
        .unwrap();
    assert_eq!(
        max_abs_diff(&model.forward_eval(&x).unwrap(), &expected),
        0.0
    );

    // Initialising fine-tuning from a top-model artifact loads only the `top.` variables.
    let top_only: BTreeMap<String, Tensor> = tensors
        .iter()
        .filter(|(k, _)| k.starts_with("top."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let fresh = VarMap::new();
    finetune_net(&fresh, &backbone, (48, 32), 6);
    assert_eq!(
        load_varmap(
            &fresh,
            &top_only,
            Path::new("artifacts/top/model.safetensors"),
            "top."
        )
        .unwrap(),
        4
    );
    assert!(matches!(
        load_varmap(
            &fresh,
            &top_only,
            Path::new("artifacts/top/model.safetensors"),
            ""
        ),
        Err(ModelError::MissingTensor {
            also_missing: 5,
            ..
        })
    ));
}

#[test]
fn probabilities_follow_the_output_convention() {
    let logits = Tensor::new(&[[0.0f32], [2.0]], &Device::Cpu).unwrap();
    let p = probabilities(&logits).unwrap().to_vec2::<f32>().unwrap();
    assert!((p[0][1] - 0.5).abs() < 1e-6 && (p[0][0] - 0.5).abs() < 1e-6);
    let s = 1.0 / (1.0 + (-2.0f32).exp());
    assert!((p[1][1] - s).abs() < 1e-6 && (p[1][0] - (1.0 - s)).abs() < 1e-6);
    let logits = Tensor::new(&[[1.0f32, 2.0, 3.0]], &Device::Cpu).unwrap();
    let p = probabilities(&logits).unwrap().to_vec2::<f32>().unwrap();
    let z: f32 = [1.0f32, 2.0, 3.0].iter().map(|v| v.exp()).sum();
    assert!((p[0][2] - 3.0f32.exp() / z).abs() < 1e-6);
    assert!(probabilities(&Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap()).is_err());
}
