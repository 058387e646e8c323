//! Features that are missing, do not match each other, or no longer match the pipeline file
//! and the data are refused with a message naming the file and the fix; nothing is written.

mod top_fixture;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use testkit::listing;
use top_fixture::{Fixture, extract_features, top_options};

fn refused(p: &pipeline::Pipeline) -> String {
    train_top::train_top(p, &top_options())
        .unwrap_err()
        .to_string()
}

fn no_top_output(f: &Fixture) {
    assert!(
        listing(&f.artifacts.join("top")).is_empty(),
        "{:?}",
        listing(&f.artifacts.join("top"))
    );
}

#[test]
fn missing_features_say_to_extract_first() {
    let f = Fixture::new();
    let err = refused(&f.pipeline(&[]));
    assert!(
        err.contains("bottleneck/train.safetensors")
            && err.contains("no such file")
            && err.contains("run `just extract-bottlenecks` first"),
        "{err}"
    );
    no_top_output(&f);
}

#[test]
fn train_and_validation_features_that_do_not_match_are_refused() {
    let f = Fixture::new();
    let dir = f.artifacts.join("bottleneck");
    let keep = f.dir.path().join("kept.safetensors");
    let imagenet = f.pipeline(&[]);
    let rescale = f.pipeline(&[
        "bottleneck.preprocessing={ kind = \"rescale\", scale = 0.00392156862745098 }",
    ]);
    extract_features(&imagenet, &f.weights, false);
    std::fs::copy(dir.join("validation.safetensors"), &keep).unwrap();
    extract_features(&rescale, &f.weights, false);
    std::fs::copy(&keep, dir.join("validation.safetensors")).unwrap();
    let err = refused(&rescale);
    assert!(
        err.contains("train.safetensors and")
            && err.contains("validation.safetensors do not match")
            && err.contains("preprocessing differs"),
        "{err}"
    );

    // Other weights.
    extract_features(&imagenet, &f.weights, false);
    std::fs::copy(dir.join("validation.safetensors"), &keep).unwrap();
    testkit::fixtures::write_random_vgg16(&f.weights, 99);
    extract_features(&imagenet, &f.weights, false);
    std::fs::copy(&keep, dir.join("validation.safetensors")).unwrap();
    let err = refused(&imagenet);
    assert!(err.contains("different vgg16 weights"), "{err}");

    // Other image sizes.
    let square = f.pipeline(&["bottleneck.target_size=[64, 64]"]);
    extract_features(&square, &f.weights, false);
    std::fs::copy(&keep, dir.join("validation.safetensors")).unwrap();
    let err = refused(&square);
    assert!(err.contains("feature shapes differ"), "{err}");
    no_top_output(&f);
}

#[test]
fn features_that_no_longer_match_the_pipeline_or_the_data_are_refused() {
    let f = Fixture::new();
    let p = f.pipeline(&[]);
    extract_features(&p, &f.weights, false);

    let err = refused(&f.pipeline(&["data.interpolation=\"bilinear\""]));
    assert!(
        err.contains("train.safetensors")
            && err.contains("data.interpolation")
            && err.contains("just extract-bottlenecks"),
        "{err}"
    );
    let err = refused(&f.pipeline(&["bottleneck.target_size=[64, 64]"]));
    assert!(err.contains("bottleneck.target_size"), "{err}");

    // An image replaced since the extraction: features from other data.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(4);
    testkit::fixtures::random_image(40, 40, 1, &mut rng)
        .save(f.data.join("validation/dogs/img00.png"))
        .unwrap();
    let err = refused(&p);
    assert!(
        err.contains("validation.safetensors")
            && err.contains("other images than those now in")
            && err.contains("data/validation"),
        "{err}"
    );
    no_top_output(&f);
}

#[test]
fn files_that_are_not_whole_features_of_the_right_split_are_refused() {
    let f = Fixture::new();
    let p = f.pipeline(&[]);
    let dir = f.artifacts.join("bottleneck");
    extract_features(&p, &f.weights, false);
    let train = dir.join("train.safetensors");
    let good = std::fs::read(&train).unwrap();

    std::fs::copy(dir.join("validation.safetensors"), &train).unwrap();
    let err = refused(&p);
    assert!(
        err.contains("holds the validation split, expected train"),
        "{err}"
    );

    std::fs::write(&train, b"definitely not a safetensors file").unwrap();
    let err = refused(&p);
    assert!(
        err.contains("train.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );

    // Another stage's artifact.
    let t = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    artifact::save(&train, [("features", &t)], &Default::default()).unwrap();
    let err = refused(&p);
    assert!(err.contains("not a bottleneck features artifact"), "{err}");

    // A shard in place of the whole file.
    let mut o = extract::ExtractOptions::new(Device::Cpu);
    o.weights = Some(f.weights.clone());
    o.progress = false;
    o.shard = Some(features::Shard { index: 1, count: 2 });
    extract::extract(&p, &o).unwrap();
    std::fs::copy(dir.join("train.shard-1-of-2.safetensors"), &train).unwrap();
    let err = refused(&p);
    assert!(
        err.contains("shard 1/2 only") && err.contains("extract merge"),
        "{err}"
    );

    // Tensors that contradict the metadata.
    std::fs::write(&train, &good).unwrap();
    let (_, meta) = artifact::load(&train, &Device::Cpu).unwrap();
    let short = Tensor::zeros((5, 512, 2, 1), DType::F32, &Device::Cpu).unwrap();
    let labels = Tensor::zeros(5, DType::U32, &Device::Cpu).unwrap();
    artifact::save(&train, [("features", &short), ("labels", &labels)], &meta).unwrap();
    let err = refused(&p);
    assert!(
        err.contains("train.safetensors") && err.contains("[5, 512, 2, 1]"),
        "{err}"
    );

    // Labels out of range.
    let x = Tensor::zeros((12, 512, 2, 1), DType::F32, &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(vec![7u32; 12], 12, &Device::Cpu).unwrap();
    artifact::save(&train, [("features", &x), ("labels", &labels)], &meta).unwrap();
    let err = refused(&p);
    assert!(err.contains("label 7 is out of range"), "{err}");
    no_top_output(&f);
    assert!(Path::new(&train).exists());
}
