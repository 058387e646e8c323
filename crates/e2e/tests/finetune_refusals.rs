//! Bad input: no trained top model, one that does not fit the data, the settings or the
//! weights, and data that cannot be used. Each is refused with a message naming the file,
//! before anything is computed or written.

mod finetune_fixture;

use candle_core::Device;
use candle_nn::VarMap;
use finetune_fixture::{Fixture, options};
use models::{
    Architecture, BackboneKind, BackboneRef, ModelSpec, Preprocessing, TopLayers, TopModel,
    TopModelConfig,
};
use stage::StageError;

/// Writes a freshly initialised top model with `spec` to the fixture's `top/model.safetensors`.
fn write_top(f: &Fixture, spec: &ModelSpec) {
    let varmap = VarMap::new();
    let mut rng = imagedata::rng::stream(1, "test-top");
    let feature_shape = spec.top_feature_shape().unwrap_or((512, 1, 1));
    TopModel::new(
        &varmap,
        TopModelConfig {
            feature_shape,
            units: spec.units,
            layers: TopLayers::default(),
        },
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let mut meta = artifact::Metadata::new();
    spec.insert_into(&mut meta);
    let path = f.pipeline(&[]).layout().top_model();
    engine::Params::all_trainable(&varmap)
        .unwrap()
        .save(&path, &meta)
        .unwrap();
}

fn spec(f: &Fixture, classes: &[&str], size: usize, preprocessing: Preprocessing) -> ModelSpec {
    ModelSpec::new(
        Architecture::Top,
        classes.iter().map(|c| c.to_string()).collect(),
        (size, size),
        preprocessing,
        Some(BackboneRef {
            kind: BackboneKind::Vgg16,
            sha256: artifact::sha256_file(&f.weights).unwrap(),
        }),
        Some(TopLayers::default()),
    )
    .unwrap()
}

#[test]
fn a_missing_or_mismatched_top_model_is_refused() {
    let Some(f) = Fixture::new("a_missing_or_mismatched_top_model_is_refused") else {
        return;
    };
    let p = f.pipeline(&[]);
    let top = f.pipeline(&[]).layout().top_model();
    let refused = |expect: &[&str]| {
        let err = finetune::finetune(&p, &options()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                StageError::MissingInput { .. } | StageError::Mismatch { .. }
            ),
            "{text}"
        );
        assert!(text.contains(&top.display().to_string()), "{text}");
        assert!(text.contains("just train-top"), "{text}");
        for e in expect {
            assert!(text.contains(e), "`{e}` not in: {text}");
        }
        // Nothing was computed or written.
        assert!(!f.artifacts.join("finetune").exists());
    };

    refused(&["the trained top model is missing"]);

    let imagenet = Preprocessing::imagenet();
    write_top(&f, &spec(&f, &["cats", "horses"], 32, imagenet));
    refused(&["classes", "horses"]);
    write_top(&f, &spec(&f, &["cats", "dogs"], 64, imagenet));
    refused(&["64x64", "bottleneck.target_size) is 32x32"]);
    write_top(
        &f,
        &spec(
            &f,
            &["cats", "dogs"],
            32,
            Preprocessing::rescale(1.0 / 255.0),
        ),
    );
    refused(&["bottleneck.preprocessing", "rescale"]);
    let mut other_weights = spec(&f, &["cats", "dogs"], 32, imagenet);
    other_weights.backbone = Some(BackboneRef {
        kind: BackboneKind::Vgg16,
        sha256: "ab".repeat(32),
    });
    write_top(&f, &other_weights);
    refused(&["vgg16 weights", &"ab".repeat(32)]);
    let mut other_backbone = spec(&f, &["cats", "dogs"], 32, imagenet);
    other_backbone.backbone = Some(BackboneRef {
        kind: BackboneKind::EfficientNetLite0,
        sha256: "ab".repeat(32),
    });
    write_top(&f, &other_backbone);
    refused(&[
        "`efficientnet_lite0` features",
        "bottleneck.backbone is `vgg16`",
    ]);
    let small = ModelSpec::new(
        Architecture::SmallCnn,
        vec!["cats".into(), "dogs".into()],
        (32, 32),
        imagenet,
        None,
        None,
    )
    .unwrap();
    write_top(&f, &small);
    refused(&["small_cnn"]);
    std::fs::write(&top, b"not a model").unwrap();
    refused(&["not a readable model artifact"]);

    // A top model for these very data and settings is accepted.
    write_top(&f, &spec(&f, &["cats", "dogs"], 32, imagenet));
    let mut o = options();
    o.live = true;
    let report = finetune::finetune(&f.pipeline(&["finetune.epochs=1"]), &o).unwrap();
    assert!(matches!(report.outcome, stage::StageOutcome::Trained(_)));
}

#[test]
fn unusable_data_is_refused_with_the_folder_named() {
    let Some(f) = Fixture::new("unusable_data_is_refused_with_the_folder_named") else {
        return;
    };
    // Validation classes that differ from the training classes.
    let horses = f.data.join("validation/horses");
    std::fs::create_dir_all(&horses).unwrap();
    std::fs::rename(f.data.join("validation/dogs"), horses.join("dogs")).unwrap();
    let err = finetune::finetune(&f.pipeline(&[]), &options())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("validation") && err.contains("horses"),
        "{err}"
    );
    // No data at all.
    let empty = f.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let mut p = f.pipeline(&[]);
    p.data.dir = empty.clone();
    let err = finetune::finetune(&p, &options()).unwrap_err().to_string();
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(!f.artifacts.join("finetune").exists());
}
