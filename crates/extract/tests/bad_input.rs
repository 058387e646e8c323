//! Bad input: clear errors naming the file, no panic, nothing half-written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use extract::{ExtractOptions, Outcome};
use testkit::fixtures::{synthetic_pipeline, write_random_vgg16, write_split};
use testkit::listing;

fn options(weights: &Path) -> ExtractOptions {
    let mut o = ExtractOptions::new(Device::Cpu);
    o.weights = Some(weights.to_path_buf());
    o.progress = false;
    o
}

struct Fixture {
    dir: tempfile::TempDir,
    data: PathBuf,
    artifacts: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_split(&data, "train", &[("cats", 3), ("dogs", 3)], 1);
    write_split(&data, "validation", &[("cats", 2), ("dogs", 2)], 2);
    Fixture {
        artifacts: dir.path().join("artifacts"),
        data,
        dir,
    }
}

fn error_of(f: &Fixture, weights: &Path) -> String {
    let p = synthetic_pipeline(&f.data, &f.artifacts, &[]);
    let err = extract::extract(&p, &options(weights)).unwrap_err();
    assert!(
        listing(&f.artifacts).is_empty(),
        "files were left behind: {:?}",
        listing(&f.artifacts)
    );
    err.to_string()
}

#[test]
fn weights_that_are_not_safetensors_lack_a_tensor_or_have_a_wrong_shape() {
    let f = fixture();
    let w = f.dir.path().join("vgg16.safetensors");

    std::fs::write(
        &w,
        b"<html>404 not found, but long enough for a header</html>",
    )
    .unwrap();
    let err = error_of(&f, &w);
    assert!(
        err.contains("vgg16.safetensors") && err.contains("not a safetensors"),
        "{err}"
    );

    let mut tensors: BTreeMap<String, Tensor> = models::vgg16_tensor_specs()
        .into_iter()
        .map(|(n, s)| {
            (
                n,
                Tensor::zeros(s.as_slice(), DType::F32, &Device::Cpu).unwrap(),
            )
        })
        .collect();
    tensors.remove("features.17.bias");
    let save = |t: &BTreeMap<String, Tensor>| {
        artifact::save(
            &w,
            t.iter().map(|(n, t)| (n.as_str(), t)),
            &Default::default(),
        )
        .unwrap()
    };
    save(&tensors);
    let err = error_of(&f, &w);
    assert!(
        err.contains("vgg16.safetensors") && err.contains("features.17.bias"),
        "{err}"
    );

    tensors.insert(
        "features.17.bias".into(),
        Tensor::zeros(256, DType::F32, &Device::Cpu).unwrap(),
    );
    save(&tensors);
    let err = error_of(&f, &w);
    assert!(
        err.contains("vgg16.safetensors")
            && err.contains("features.17.bias")
            && err.contains("[256]")
            && err.contains("[512]"),
        "{err}"
    );

    let err = error_of(&f, &f.dir.path().join("nowhere.safetensors"));
    assert!(
        err.contains("nowhere.safetensors") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn empty_or_missing_data_folders_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.safetensors");
    write_random_vgg16(&w, 1);
    let data = dir.path().join("data");
    let artifacts = dir.path().join("artifacts");
    let run = || {
        extract::extract(&synthetic_pipeline(&data, &artifacts, &[]), &options(&w))
            .unwrap_err()
            .to_string()
    };

    let err = run();
    assert!(
        err.contains("data/train") && err.contains("no such"),
        "{err}"
    );
    std::fs::create_dir_all(data.join("train")).unwrap();
    let err = run();
    assert!(
        err.contains("data/train") && err.contains("no class subfolders"),
        "{err}"
    );
    std::fs::create_dir_all(data.join("train/cats")).unwrap();
    std::fs::create_dir_all(data.join("train/dogs")).unwrap();
    let err = run();
    assert!(
        err.contains("train/cats") && err.contains("no images"),
        "{err}"
    );
    write_split(&data, "train", &[("cats", 2), ("dogs", 2)], 1);
    let err = run();
    assert!(err.contains("data/validation"), "{err}");
    write_split(&data, "validation", &[("cats", 2), ("birds", 2)], 1);
    let err = run();
    assert!(err.contains("validation") && err.contains("birds"), "{err}");
    assert!(listing(&artifacts).is_empty());
}

#[test]
fn an_undecodable_image_is_named_and_nothing_is_half_written() {
    let f = fixture();
    let w = f.dir.path().join("w.safetensors");
    write_random_vgg16(&w, 1);
    // A truncated JPEG in the middle of the training set.
    let victim = f.data.join("train/dogs/img01.jpg");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let err = error_of(&f, &w);
    assert!(
        err.contains("img01.jpg") && err.contains("truncated"),
        "{err}"
    );

    // A file that is not an image at all, with an image's name.
    std::fs::write(&victim, b"just text").unwrap();
    let err = error_of(&f, &w);
    assert!(err.contains("img01.jpg"), "{err}");
}

#[test]
fn an_interrupted_run_leaves_nothing_and_a_foreign_file_is_recomputed() {
    let f = fixture();
    let w = f.dir.path().join("w.safetensors");
    write_random_vgg16(&w, 1);
    let p = synthetic_pipeline(&f.data, &f.artifacts, &[]);
    let mut o = options(&w);
    let stop = engine::Interrupt::new();
    stop.trigger();
    o.interrupt = Some(stop);
    let err = extract::extract(&p, &o).unwrap_err().to_string();
    assert!(
        err.contains("interrupted") && err.contains("train.safetensors"),
        "{err}"
    );
    assert!(
        listing(&f.artifacts).is_empty(),
        "{:?}",
        listing(&f.artifacts)
    );

    // Something else at the features path (here: another stage's artifact) is stale, never
    // reused.
    let path = f.artifacts.join("bottleneck/train.safetensors");
    let t = Tensor::zeros((6, 512, 2, 1), DType::F32, &Device::Cpu).unwrap();
    artifact::save(&path, [("features", &t)], &Default::default()).unwrap();
    let r = extract::extract(&p, &options(&w)).unwrap();
    assert!(matches!(r.files[0].outcome, Outcome::Written(_)));
    assert!(r.files[0].reason.as_deref().unwrap().contains("provenance"));
}
