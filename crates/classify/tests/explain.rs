//! Where the model looked: `classify predict --explain OUT.png` and the Grad-CAM that
//! `classify evaluate` records for each mistake, on a top model and a fine-tuned model over a
//! VGG16 with random weights (no shared data needed), and the library's `Classifier::explain`.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use classify::{Classifier, ClassifierOptions, ClassifyError};
use common::*;
use imagedata::Preprocessing;
use models::{Architecture, Backbone, BackboneKind, BackboneRef, ModelSpec, TopLayers};
use testkit::cli::output_text;

/// The models' input side: VGG16's last feature map is then 2 × 2.
const INPUT: usize = 64;

/// A random VGG16 weights file under `root` and a model of `architecture` on it (random top,
/// classes bright and dark); returns the weights and the model file.
fn write_vgg16_model(root: &Path, architecture: Architecture) -> (PathBuf, PathBuf) {
    let weights = root.join("vgg16.safetensors");
    if !weights.exists() {
        testkit::fixtures::write_random_vgg16(&weights, 5);
    }
    let sha256 = artifact::sha256_file(&weights).unwrap();
    let base = Backbone::load_file(BackboneKind::Vgg16, &weights, &Device::Cpu).unwrap();
    let spec = ModelSpec::new(
        architecture,
        vec!["bright".into(), "dark".into()],
        (INPUT, INPUT),
        Preprocessing::imagenet(),
        Some(BackboneRef {
            kind: BackboneKind::Vgg16,
            sha256,
        }),
        Some(TopLayers {
            hidden_units: 8,
            dropout: 0.5,
        }),
    )
    .unwrap();
    let varmap = VarMap::new();
    models::build_from_spec(&spec, &varmap, Some(&base), &Device::Cpu).unwrap();
    let path = root
        .join(architecture.to_string())
        .join("model.safetensors");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    save(&path, &varmap_tensors(&varmap), &model_metadata(&spec));
    (weights, path)
}

/// A photo with some structure: a bright square on a dark background.
fn write_photo(path: &Path) {
    let img = image::RgbImage::from_fn(48, 40, |x, y| {
        if (10..26).contains(&x) && (8..24).contains(&y) {
            image::Rgb([230, 200, 40])
        } else {
            image::Rgb([30, 40, 60])
        }
    });
    img.save(path).unwrap();
}

#[test]
fn predict_explain_writes_the_overlay_of_one_photo() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let photo = root.join("photo.png");
    write_photo(&photo);
    let other = root.join("other.png");
    write_photo(&other);
    for architecture in [Architecture::Top, Architecture::Finetune] {
        let (weights, model) = write_vgg16_model(root, architecture);
        let out = root.join(format!("explained-{architecture}/where.png"));
        let args = [
            "predict",
            "--model",
            model.to_str().unwrap(),
            "--weights",
            weights.to_str().unwrap(),
            "--explain",
            out.to_str().unwrap(),
            photo.to_str().unwrap(),
        ];
        let result = run(&args, &[]);
        let (stdout, stderr) = output_text(&result);
        assert!(result.status.success(), "{stdout}\n{stderr}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(
            stderr.contains(&format!("wrote {}", out.display()))
                && stderr.contains("Grad-CAM, 2x2"),
            "{stderr}"
        );
        // The photo at its own size, the map over it; nothing else left in the folder.
        let written = image::open(&out).unwrap().to_rgb8();
        assert_eq!(written.dimensions(), (48, 40));
        assert_eq!(testkit::files::listing(out.parent().unwrap()).len(), 1);

        // The library gives the same picture, and the map of the predicted class.
        let options = ClassifierOptions {
            weights: Some(weights.clone()),
            ..ClassifierOptions::default()
        };
        let classifier = Classifier::load_with(&model, &options).unwrap();
        assert!(classifier.can_explain());
        let original = image::open(&photo).unwrap().to_rgb8();
        let explained = classifier.explain(&original, None).unwrap();
        assert_eq!(explained.class, explained.scores.index);
        assert_eq!(explained.class_name, explained.scores.class);
        assert_eq!((explained.cam.height, explained.cam.width), (2, 2));
        assert_eq!(explained.overlay, written);
        if !explained.cam.is_zero() {
            assert_ne!(explained.overlay, original);
        }
        // Another class on request; a class the model does not have is an error.
        let other_class = 1 - explained.class;
        let other_cam = classifier.explain(&original, Some(other_class)).unwrap();
        assert_eq!(other_cam.class_name, classifier.classes()[other_class]);
        assert!(classifier.explain(&original, Some(2)).is_err());
        // A JPEG too, by its extension.
        let jpeg = root.join("explained.jpg");
        explained.save(&jpeg).unwrap();
        assert_eq!(image::open(&jpeg).unwrap().to_rgb8().dimensions(), (48, 40));
    }

    let (weights, model) = write_vgg16_model(root, Architecture::Top);
    let out = root.join("never.png");
    // More than one photo.
    let err = run_err(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--explain",
        out.to_str().unwrap(),
        photo.to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(
        err.contains("exactly one photo") && err.contains("2 photos were given"),
        "{err}"
    );
    // Not an image file name.
    let err = run_err(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--explain",
        root.join("map.txt").to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(err.contains("map.txt") && err.contains(".png"), "{err}");
    assert!(!out.exists());
}

#[test]
fn evaluate_records_the_map_of_each_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_fixture(&root.join("data"));
    let data = root.join("data");
    let (weights, model) = write_vgg16_model(root, Architecture::Finetune);
    let json = root.join("eval.json");
    let args = [
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    run_ok(&args);
    let text = std::fs::read_to_string(&json).unwrap();
    let report: classify::EvalReport = serde_json::from_str(&text).unwrap();
    assert!(
        !report.mistakes.is_empty(),
        "a random model makes mistakes on the fixture: {text}"
    );
    assert_eq!(report.provenance.as_ref().unwrap().format, 2);
    // Each mistake's map is the Grad-CAM of its predicted class, as the library computes it.
    let options = ClassifierOptions {
        weights: Some(weights.clone()),
        ..ClassifierOptions::default()
    };
    let classifier = Classifier::load_with(&model, &options).unwrap();
    for m in &report.mistakes {
        let cam = m.cam.as_ref().unwrap_or_else(|| panic!("no map: {m:?}"));
        assert_eq!((cam.height, cam.width, cam.values.len()), (2, 2, 4));
        let image = classifier.open(&m.image).unwrap();
        let want = classifier.explain(&image, None).unwrap();
        assert_eq!(want.class_name, m.predicted);
        for (a, b) in cam.values.iter().zip(&want.cam.values) {
            assert!(
                (a - b).abs() <= 1e-4 * want.cam.max().max(1e-6),
                "{cam:?} vs {:?}",
                want.cam
            );
        }
    }

    // A report written before mistakes carried their maps is evaluated again.
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    old["provenance"].as_object_mut().unwrap().remove("format");
    for m in old["mistakes"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("cam");
    }
    std::fs::write(&json, serde_json::to_string_pretty(&old).unwrap()).unwrap();
    let result = run(&args, &[]);
    let (_, stderr) = output_text(&result);
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("replacing the stored report: it holds evaluation format 1"),
        "{stderr}"
    );
    let again: classify::EvalReport =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(again.mistakes, report.mistakes);
    // And now it is up to date.
    assert!(run_ok(&args).contains("up to date"));
}

#[test]
fn a_model_without_a_backbone_cannot_be_explained() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_brightness_model(&dir.path().join("model"));
    let classifier = Classifier::load(&model).unwrap();
    assert!(!classifier.can_explain());
    let photo = image::RgbImage::from_pixel(32, 32, image::Rgb([200, 200, 200]));
    let err = classifier.explain(&photo, None).unwrap_err();
    assert!(matches!(err, ClassifyError::NotExplainable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("small_cnn") && text.contains("no backbone"),
        "{text}"
    );
}
