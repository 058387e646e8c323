//! Bad input: no trained top model, one that does not fit the data, the settings or the
//! weights, and data that cannot be used. Each is refused with a message naming the file,
//! before anything is computed or written.

mod common;

use candle_core::Device;
use candle_nn::VarMap;
use common::{Fixture, options};
use finetune::FinetuneError;
use models::{Architecture, ModelSpec, Preprocessing, TopModel, TopModelConfig};

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
        },
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let mut meta = artifact::Metadata::new();
    spec.insert_into(&mut meta);
    let path = finetune::top_model_path(&f.artifacts);
    engine::Params::all_trainable(&varmap)
        .unwrap()
        .save(&path, &meta)
        .unwrap();
}

fn spec(f: &Fixture, classes: &[&str], size: usize, preprocessing: Preprocessing) -> ModelSpec {
    ModelSpec::new(
        Architecture::Vgg16Top,
        classes.iter().map(|c| c.to_string()).collect(),
        (size, size),
        preprocessing,
        Some(artifact::sha256_file(&f.weights).unwrap()),
    )
    .unwrap()
}

#[test]
fn a_missing_or_mismatched_top_model_is_refused() {
    let Some(f) = Fixture::new("a_missing_or_mismatched_top_model_is_refused") else {
        return;
    };
    let p = f.pipeline(&[]);
    let top = finetune::top_model_path(&f.artifacts);
    let refused = |expect: &[&str]| {
        let err = finetune::finetune(&p, &options()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                FinetuneError::MissingTop { .. } | FinetuneError::TopMismatch { .. }
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

    refused(&["no trained top model"]);

    let imagenet = Preprocessing::imagenet();
    write_top(&f, &spec(&f, &["cats", "horses"], 32, imagenet));
    refused(&["classes", "horses"]);
    write_top(&f, &spec(&f, &["cats", "dogs"], 64, imagenet));
    refused(&["64x64", "data.target_size is 32x32"]);
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
    other_weights.vgg16_sha256 = Some("ab".repeat(32));
    write_top(&f, &other_weights);
    refused(&["VGG16 weights", &"ab".repeat(32)]);
    let small = ModelSpec::new(
        Architecture::SmallCnn,
        vec!["cats".into(), "dogs".into()],
        (32, 32),
        imagenet,
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
    assert!(matches!(
        report.outcome,
        finetune::FinetuneOutcome::Trained(_)
    ));
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
