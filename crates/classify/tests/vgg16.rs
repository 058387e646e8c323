//! Artifacts built on a pretrained backbone (`top`, `finetune` on VGG16) through the same
//! commands, with the pretrained conv base from the shared data folder.

mod common;

use candle_core::Device;
use candle_nn::VarMap;
use common::*;
use imagedata::{Interpolation, Limits, Preprocessing, TargetSize};
use models::{Architecture, Backbone, BackboneKind, BackboneRef, ModelSpec, Network, TopLayers};
use testkit::cli::{expect_success, output_text};

#[test]
fn vgg16_models_predict_and_evaluate_from_their_artifacts() {
    let Some(shared) =
        testkit::shared_dir("vgg16_models_predict_and_evaluate_from_their_artifacts")
    else {
        return;
    };
    let weights = testkit::shared_weights(&shared);
    let resolved = BackboneKind::Vgg16.resolve_weights(Some(&weights)).unwrap();
    let base = Backbone::load(BackboneKind::Vgg16, &resolved, &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (bright, dark) = write_fixture(&root.join("data"));
    let images = [&bright[0], &dark[3]];
    let size = TargetSize::new(SIDE, SIDE);
    let loaded: Vec<_> = images
        .iter()
        .map(|p| {
            imagedata::load_resized(p, size, Interpolation::Nearest, &Limits::default()).unwrap()
        })
        .collect();
    let x = imagedata::images_to_tensor(&loaded, &Preprocessing::imagenet(), &Device::Cpu).unwrap();

    for architecture in [Architecture::Top, Architecture::Finetune] {
        let spec = ModelSpec::new(
            architecture,
            vec!["bright".into(), "dark".into()],
            (SIDE as usize, SIDE as usize),
            Preprocessing::imagenet(),
            Some(BackboneRef {
                kind: BackboneKind::Vgg16,
                sha256: resolved.sha256.clone(),
            }),
            Some(TopLayers::default()),
        )
        .unwrap();
        let varmap = VarMap::new();
        let model = models::build_from_spec(&spec, &varmap, Some(&base), &Device::Cpu).unwrap();
        let expected = model.predict_proba(&x).unwrap().to_vec2::<f32>().unwrap();
        let path = root.join(format!("{architecture}.safetensors"));
        save(&path, &varmap_tensors(&varmap), &model_metadata(&spec));

        let json = root.join(format!("{architecture}.json"));
        let mut args = vec![
            "predict",
            "--model",
            path.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ];
        args.extend(images.iter().map(|p| p.to_str().unwrap()));
        let stdout = run_ok(&args);
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        for (p, want) in report["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&expected)
        {
            let got: Vec<f64> = p["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            for (g, w) in got.iter().zip(want) {
                assert!(
                    (g - f64::from(*w)).abs() < 1e-5,
                    "{architecture}: {got:?} vs {want:?}"
                );
            }
        }

        // The same weights through the environment variable, evaluating a folder.
        let data = root.join("data");
        let args = [
            "evaluate",
            "--model",
            path.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ];
        let out = run(
            &args,
            &[("LITTLEDATA_VGG16_WEIGHTS", weights.to_str().unwrap())],
        );
        let stdout = expect_success(&args, &out);
        let (_, stderr) = output_text(&out);
        assert!(stdout.contains("/7 images)"), "{stdout}");
        assert!(
            stderr.contains(&format!("({architecture} on vgg16, 32x32")),
            "{stderr}"
        );
    }

    // Weights other than those the model was built with are refused.
    let spec = ModelSpec::new(
        Architecture::Top,
        vec!["bright".into(), "dark".into()],
        (SIDE as usize, SIDE as usize),
        Preprocessing::imagenet(),
        Some(models::BackboneRef {
            kind: models::BackboneKind::Vgg16,
            sha256: "0".repeat(64),
        }),
        Some(models::TopLayers::default()),
    )
    .unwrap();
    let path = root.join("other_base.safetensors");
    save(
        &path,
        &std::collections::BTreeMap::new(),
        &model_metadata(&spec),
    );
    let err = run_err(&[
        "predict",
        "--model",
        path.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        bright[0].to_str().unwrap(),
    ]);
    assert!(
        err.contains("sha256") && err.contains(&"0".repeat(64)),
        "{err}"
    );
}
