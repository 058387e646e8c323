//! Evaluation from cached features: a top model reads what `extract` cached, a fine-tuned
//! model what the fine-tuner cached of its frozen part, with the same report as running the
//! backbone over the images; any other folder, other weights, other preprocessing and
//! `--tta` run the network as before. Random VGG16 weights, 32×32 synthetic photos.

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use classify::{EvalOptions, EvalReport, FeatureLookup, FeaturePlan, FeatureSource, LoadedModel};
use common::*;
use features::{
    ExtractSettings, Extractor, FEATURES_FORMAT, FeatureFile, FeatureMeta, FeaturePart, Job,
    extract_to_file, features_provenance,
};
use imagedata::{Interpolation, Preprocessing, Split, SplitData};
use indicatif::ProgressBar;
use models::{Architecture, Backbone, BackboneKind, BackboneRef, ModelSpec, TopLayers};
use testkit::cli::{expect_success, output_text};

/// The input side of the models and features.
const SIZE: u32 = 32;

/// A project folder: `data/validation` (two classes), random VGG16 weights, and
/// `artifacts/` in the standard layout.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    artifacts: PathBuf,
    weights: PathBuf,
    backbone: Backbone,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        testkit::fixtures::write_split(
            &root.join("data"),
            "validation",
            &[("cats", 4), ("dogs", 4)],
            2,
        );
        let weights = root.join("vgg16.safetensors");
        testkit::fixtures::write_random_vgg16(&weights, 11);
        let backbone = Backbone::load_file(BackboneKind::Vgg16, &weights, &Device::Cpu).unwrap();
        Self {
            data: root.join("data").join("validation"),
            artifacts: root.join("artifacts"),
            _dir: dir,
            root,
            weights,
            backbone,
        }
    }

    /// The spec of an `architecture` model on the project's backbone with `preprocessing`.
    fn spec(&self, architecture: Architecture, preprocessing: Preprocessing) -> ModelSpec {
        ModelSpec::new(
            architecture,
            vec!["cats".into(), "dogs".into()],
            (SIZE as usize, SIZE as usize),
            preprocessing,
            Some(BackboneRef::of(&self.backbone)),
            Some(TopLayers {
                hidden_units: 16,
                dropout: 0.5,
            }),
        )
        .unwrap()
    }

    /// Writes a model of `architecture` (ImageNet preprocessing, placeholder weights) as
    /// `artifacts/<stage>/model.safetensors`; returns the file.
    fn write_model(&self, architecture: Architecture) -> PathBuf {
        let spec = self.spec(architecture, Preprocessing::imagenet());
        let varmap = VarMap::new();
        models::build_from_spec(&spec, &varmap, Some(&self.backbone), &Device::Cpu).unwrap();
        let path = self
            .artifacts
            .join(architecture.name())
            .join("model.safetensors");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        save(&path, &varmap_tensors(&varmap), &model_metadata(&spec));
        path
    }

    /// Caches `part` of the backbone on the images of `data` (a split folder) at `dest`, as
    /// `extract` and the fine-tuner do (in batches of 3).
    fn cache(&self, part: FeaturePart, data: &Path, dest: &Path) {
        let split = SplitData::from_folder(
            Split::Validation,
            imagedata::ImageFolder::scan(data).unwrap(),
        )
        .unwrap();
        let settings = ExtractSettings {
            backbone: BackboneKind::Vgg16,
            part,
            target_size: [SIZE, SIZE],
            interpolation: Interpolation::Nearest,
            preprocessing: Preprocessing::imagenet(),
            views: None,
        };
        let (c, h, w) = settings.feature_shape().unwrap();
        let sha = self.backbone.sha256().to_string();
        let meta = FeatureMeta {
            format: FEATURES_FORMAT,
            split: Split::Validation,
            classes: split.classes.clone(),
            files: split.relative.clone(),
            holds: settings.describe(),
            settings: settings.clone(),
            weights_sha256: sha.clone(),
            feature_shape: [c, h, w],
            data_digest: split.digest.clone(),
            shard: None,
        };
        let mut metadata = meta.to_metadata();
        metadata.extend(
            features_provenance(
                FeatureFile::Validation,
                &settings,
                None,
                &split.digest,
                &sha,
            )
            .to_metadata(),
        );
        let extractor = Extractor::new(self.backbone.clone(), settings).unwrap();
        let job = Job {
            files: &split.files,
            images: 0..split.len(),
            batch_size: 3,
        };
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        extract_to_file(
            &extractor,
            &job,
            &split.labels,
            &metadata,
            dest,
            DType::F32,
            &ProgressBar::hidden(),
            None,
        )
        .unwrap();
    }

    /// `artifacts/bottleneck/validation.safetensors`.
    fn bottleneck(&self) -> PathBuf {
        self.artifacts
            .join("bottleneck")
            .join("validation.safetensors")
    }

    /// `artifacts/finetune/validation_frozen.safetensors`.
    fn frozen(&self) -> PathBuf {
        self.artifacts
            .join("finetune")
            .join("validation_frozen.safetensors")
    }

    fn load(&self, model: &Path) -> LoadedModel {
        classify::load_model(model, Some(&self.weights), &Device::Cpu).unwrap()
    }
}

fn options(features: FeatureLookup, tta: bool) -> EvalOptions {
    EvalOptions {
        batch_size: 5,
        tta,
        progress: false,
        features,
        ..EvalOptions::default()
    }
}

/// The report's features source.
fn source(report: &EvalReport) -> &FeatureSource {
    report
        .features
        .as_ref()
        .expect("the report says where its features came from")
}

/// Asserts that two reports of the same model on the same folder agree: counts, confusion
/// matrix and mistakes exactly, probabilities and loss within 1e-5, Grad-CAMs within float
/// rounding.
fn assert_same(cached: &EvalReport, computed: &EvalReport) {
    assert_eq!(cached.samples, computed.samples);
    assert_eq!(cached.correct, computed.correct);
    assert_eq!(cached.confusion_matrix, computed.confusion_matrix);
    assert_eq!(cached.per_class, computed.per_class);
    assert!((cached.accuracy - computed.accuracy).abs() < 1e-12);
    assert!(
        (cached.loss - computed.loss).abs() < 1e-5,
        "{} vs {}",
        cached.loss,
        computed.loss
    );
    assert_eq!(cached.mistakes.len(), computed.mistakes.len());
    for (a, b) in cached.mistakes.iter().zip(&computed.mistakes) {
        assert_eq!(
            (&a.image, &a.actual, &a.predicted),
            (&b.image, &b.actual, &b.predicted)
        );
        assert!(
            (a.probability - b.probability).abs() < 1e-5,
            "{a:?} vs {b:?}"
        );
        let (ca, cb) = (a.cam.as_ref().unwrap(), b.cam.as_ref().unwrap());
        assert_eq!((ca.height, ca.width), (cb.height, cb.width));
        let scale = 1.0 + cb.max();
        for (x, y) in ca.values.iter().zip(&cb.values) {
            assert!((x - y).abs() <= 1e-4 * scale, "cam {x} vs {y}");
        }
    }
}

/// Evaluates `model` on `data` reading cached features and running the backbone; asserts
/// the first read `features` (made by `made_by`), the second did not, and both agree.
fn check_cached_equals_computed(p: &Project, model: &Path, features: &Path, made_by: &str) {
    let loaded = p.load(model);
    let cached =
        classify::evaluate(&loaded, &p.data, &options(FeatureLookup::Beside, false)).unwrap();
    let computed =
        classify::evaluate(&loaded, &p.data, &options(FeatureLookup::Off, false)).unwrap();
    match source(&cached) {
        FeatureSource::Cached {
            path, made_by: by, ..
        } => {
            assert_eq!(path, features);
            assert_eq!(by, made_by);
        }
        other => panic!("expected cached features, got {other:?}"),
    }
    assert_eq!(source(&computed), &FeatureSource::Computed { note: None });
    assert!(
        !computed.mistakes.is_empty(),
        "the fixture's model makes mistakes, so their Grad-CAMs are compared"
    );
    assert_same(&cached, &computed);
    // Named explicitly, the same file gives the same report.
    let named = classify::evaluate(
        &loaded,
        &p.data,
        &options(FeatureLookup::File(features.to_path_buf()), false),
    )
    .unwrap();
    assert_eq!(source(&named), source(&cached));
    assert_same(&named, &computed);
}

#[test]
fn a_top_model_reads_the_features_extract_cached_and_gives_the_same_report() {
    let p = Project::new();
    let model = p.write_model(Architecture::Top);
    p.cache(FeaturePart::Features, &p.data, &p.bottleneck());
    check_cached_equals_computed(&p, &model, &p.bottleneck(), "extract");
}

#[test]
fn a_fine_tuned_model_reads_the_frozen_part_the_fine_tuner_cached() {
    let p = Project::new();
    let model = p.write_model(Architecture::Finetune);
    p.cache(FeaturePart::Frozen, &p.data, &p.frozen());
    check_cached_equals_computed(&p, &model, &p.frozen(), "finetune");
}

/// The plan for a model with `spec` stored at `model` on `data`.
fn plan(
    model: &Path,
    spec: &ModelSpec,
    data: &Path,
    tta: bool,
    lookup: FeatureLookup,
) -> FeaturePlan {
    classify::reuse::plan(
        model,
        spec,
        Interpolation::Nearest,
        data,
        None,
        tta,
        &lookup,
    )
}

/// The note of a plan that runs the network.
fn note(plan: FeaturePlan) -> Option<String> {
    match plan {
        FeaturePlan::Computed(note) => note,
        FeaturePlan::Cached(h) => panic!("{} was used", h.path.display()),
    }
}

#[test]
fn other_photos_weights_preprocessing_or_tta_run_the_network() {
    let p = Project::new();
    let model = p.write_model(Architecture::Top);
    p.cache(FeaturePart::Features, &p.data, &p.bottleneck());
    let spec = p.spec(Architecture::Top, Preprocessing::imagenet());
    assert!(matches!(
        plan(&model, &spec, &p.data, false, FeatureLookup::Beside),
        FeaturePlan::Cached(_)
    ));

    // A copy of the folder with one photo changed: other images, nothing to say.
    let copy = p.root.join("copy");
    for class in ["cats", "dogs"] {
        std::fs::create_dir_all(copy.join(class)).unwrap();
        for entry in std::fs::read_dir(p.data.join(class)).unwrap() {
            let from = entry.unwrap().path();
            std::fs::copy(&from, copy.join(class).join(from.file_name().unwrap())).unwrap();
        }
    }
    let unchanged = plan(&model, &spec, &copy, false, FeatureLookup::Beside);
    assert!(
        matches!(unchanged, FeaturePlan::Cached(_)),
        "a copy is the same photos"
    );
    let changed = copy.join("dogs").join("img00.png");
    image::RgbImage::from_pixel(40, 30, image::Rgb([1, 2, 3]))
        .save(&changed)
        .unwrap();
    assert_eq!(
        note(plan(&model, &spec, &copy, false, FeatureLookup::Beside)),
        None
    );
    let named = note(plan(
        &model,
        &spec,
        &copy,
        false,
        FeatureLookup::File(p.bottleneck()),
    ))
    .unwrap();
    assert!(named.contains("other contents"), "{named}");
    let report = classify::evaluate(
        &p.load(&model),
        &copy,
        &options(FeatureLookup::Beside, false),
    )
    .unwrap();
    assert_eq!(source(&report), &FeatureSource::Computed { note: None });

    // A model on other weights of the same backbone.
    let mut other_weights = spec.clone();
    other_weights.backbone = Some(BackboneRef {
        kind: BackboneKind::Vgg16,
        sha256: "0".repeat(64),
    });
    let why = note(plan(
        &model,
        &other_weights,
        &p.data,
        false,
        FeatureLookup::Beside,
    ))
    .unwrap();
    assert!(why.contains("other vgg16 weights"), "{why}");

    // A model whose photos are preprocessed otherwise.
    let rescaled = p.spec(Architecture::Top, Preprocessing::rescale(1.0 / 255.0));
    let why = note(plan(
        &model,
        &rescaled,
        &p.data,
        false,
        FeatureLookup::Beside,
    ))
    .unwrap();
    assert!(why.contains("preprocessed"), "{why}");

    // Resized otherwise.
    let why = note(classify::reuse::plan(
        &model,
        &spec,
        Interpolation::Bilinear,
        &p.data,
        None,
        false,
        &FeatureLookup::Beside,
    ))
    .unwrap();
    assert!(why.contains("resized"), "{why}");

    // A fine-tuned model does not read the top model's input.
    let finetune = p.spec(Architecture::Finetune, Preprocessing::imagenet());
    let why = note(plan(
        &model,
        &finetune,
        &p.data,
        false,
        FeatureLookup::File(p.bottleneck()),
    ))
    .unwrap();
    assert!(why.contains("frozen part"), "{why}");

    // Mirror averaging needs the mirrored photos, which are not cached.
    let why = note(plan(&model, &spec, &p.data, true, FeatureLookup::Beside)).unwrap();
    assert!(why.contains("--tta"), "{why}");
    let loaded = p.load(&model);
    let tta = classify::evaluate(&loaded, &p.data, &options(FeatureLookup::Beside, true)).unwrap();
    assert!(
        matches!(source(&tta), FeatureSource::Computed { note: Some(n) } if n.contains("--tta"))
    );
    assert!(tta.tta);

    // Nothing is used when asked so.
    assert_eq!(
        note(plan(&model, &spec, &p.data, false, FeatureLookup::Off)),
        None
    );
}

#[test]
fn the_command_says_where_features_came_from_and_its_stored_report_follows_the_file() {
    let p = Project::new();
    p.write_model(Architecture::Top);
    p.cache(FeaturePart::Features, &p.data, &p.bottleneck());
    let model_dir = p.artifacts.join("top");
    let json = model_dir.join("evaluation").join("validation.json");
    let base = [
        "evaluate",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        p.data.to_str().unwrap(),
        "--weights",
        p.weights.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let evaluate = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = run(&args, &[]);
        let stdout = expect_success(&args, &out);
        let (_, stderr) = output_text(&out);
        let stored: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        (stdout, stderr, stored)
    };
    let bottleneck = p.bottleneck();
    let line = format!("features from {} (cached by extract)", bottleneck.display());

    let (_, stderr, stored) = evaluate(&[]);
    assert!(stderr.contains(&line), "{stderr}");
    assert_eq!(stored["features"]["source"], "cached");
    assert_eq!(stored["features"]["path"], bottleneck.to_str().unwrap());
    let digest = stored["features"]["digest"].as_str().unwrap().to_string();
    assert_eq!(stored["provenance"]["features"], digest.as_str());

    let (stdout, _, _) = evaluate(&[]);
    assert!(stdout.contains("up to date"), "{stdout}");

    let (_, stderr, stored) = evaluate(&["--no-cached-features"]);
    assert!(
        stderr.contains("cached features, which are not used now"),
        "{stderr}"
    );
    assert!(!stderr.contains("features from"), "{stderr}");
    assert_eq!(stored["features"]["source"], "computed");
    assert!(stored["provenance"].get("features").is_none());

    let (_, stderr, _) = evaluate(&[]);
    assert!(
        stderr.contains("cached features match them now"),
        "{stderr}"
    );

    // Rewritten features (another extraction) are other features: evaluated again.
    p.cache(FeaturePart::Features, &p.data, &p.bottleneck());
    let (_, stderr, stored) = evaluate(&[]);
    assert!(
        stderr.contains("the cached features it was read from changed"),
        "{stderr}"
    );
    assert_ne!(stored["provenance"]["features"], digest.as_str());

    // Calibration reads them too.
    let args = [
        "calibrate",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        p.data.to_str().unwrap(),
        "--weights",
        p.weights.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let out = run(&args, &[]);
    expect_success(&args, &out);
    let (_, stderr) = output_text(&out);
    assert!(stderr.contains(&line), "{stderr}");

    // With --tta, a note and the backbone.
    let args = [
        "evaluate",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        p.data.to_str().unwrap(),
        "--weights",
        p.weights.to_str().unwrap(),
        "--device",
        "cpu",
        "--tta",
    ];
    let out = run(&args, &[]);
    expect_success(&args, &out);
    let (_, stderr) = output_text(&out);
    assert!(stderr.contains("note: --tta averages"), "{stderr}");
    assert!(!stderr.contains("features from"), "{stderr}");
}
