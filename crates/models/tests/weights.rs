//! Backbone weights resolution: order of the sources and the error listing them (no
//! download).

use std::path::{Path, PathBuf};

use models::{BackboneKind, ModelError, WeightsResolver, WeightsSource};

const VGG16_WEIGHTS_ENV: &str = "LITTLEDATA_VGG16_WEIGHTS";
const VGG16_HUB_FILE: &str = "model.safetensors";

fn resolver() -> WeightsResolver {
    WeightsResolver {
        location: BackboneKind::Vgg16.weights_location(),
        explicit: None,
        env_value: None,
        hub_cache: None,
        download: false,
        progress: false,
        endpoint: None,
    }
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// A hub cache folder laid out as hf-hub lays it out, holding the VGG16 file.
fn fake_hub_cache(root: &Path, bytes: &[u8]) -> PathBuf {
    let repo = root.join("models--timm--vgg16.tv_in1k");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    write(&repo.join("refs").join("main"), commit.as_bytes());
    write(
        &repo.join("snapshots").join(commit).join(VGG16_HUB_FILE),
        bytes,
    )
}

#[test]
fn an_explicit_path_comes_first() {
    let dir = tempfile::tempdir().unwrap();
    let explicit = write(&dir.path().join("a.safetensors"), b"explicit");
    let env = write(&dir.path().join("b.safetensors"), b"env");
    fake_hub_cache(&dir.path().join("hub"), b"cache");
    let r = WeightsResolver {
        explicit: Some(explicit.clone()),
        env_value: Some(env.clone().into()),
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let found = r.resolve().unwrap();
    assert_eq!(found.path, explicit);
    assert_eq!(found.source, WeightsSource::Explicit);
    assert_eq!(found.sha256, artifact::sha256_bytes(b"explicit"));
}

#[test]
fn then_the_environment_variable_then_the_hub_cache() {
    let dir = tempfile::tempdir().unwrap();
    let env = write(&dir.path().join("b.safetensors"), b"env");
    let cached = fake_hub_cache(&dir.path().join("hub"), b"cache");
    let r = WeightsResolver {
        env_value: Some(env.clone().into()),
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let found = r.resolve().unwrap();
    assert_eq!(
        (found.path, found.source),
        (env, WeightsSource::EnvVar(VGG16_WEIGHTS_ENV))
    );

    let r = WeightsResolver {
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let found = r.resolve().unwrap();
    assert_eq!(
        (found.path.clone(), found.source),
        (cached, WeightsSource::HubCache)
    );
    assert_eq!(found.sha256, artifact::sha256_bytes(b"cache"));
}

#[test]
fn a_given_path_that_does_not_exist_is_an_error_not_a_fallback() {
    let dir = tempfile::tempdir().unwrap();
    fake_hub_cache(&dir.path().join("hub"), b"cache");
    let missing = dir.path().join("nope.safetensors");
    let r = WeightsResolver {
        explicit: Some(missing.clone()),
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let err = r.resolve().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("--weights")
            && msg.contains(missing.to_str().unwrap())
            && msg.contains("does not exist"),
        "{msg}"
    );

    let r = WeightsResolver {
        env_value: Some(dir.path().as_os_str().to_owned()),
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let msg = r.resolve().unwrap_err().to_string();
    assert!(
        msg.contains(VGG16_WEIGHTS_ENV) && msg.contains("not a regular file"),
        "{msg}"
    );
}

#[test]
fn when_nothing_works_every_source_is_listed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let r = WeightsResolver {
        hub_cache: Some(dir.path().join("hub")),
        ..resolver()
    };
    let err = r.resolve().unwrap_err();
    let ModelError::WeightsNotFound { attempts, .. } = &err else {
        panic!("expected WeightsNotFound, got {err:?}");
    };
    let sources: Vec<&str> = attempts.iter().map(|a| a.source.as_str()).collect();
    assert_eq!(sources.len(), 4, "{sources:?}");
    assert_eq!(sources[0], "--weights");
    assert_eq!(sources[1], VGG16_WEIGHTS_ENV);
    assert!(
        sources[2].starts_with("hf-hub cache") && sources[2].contains(dir.path().to_str().unwrap())
    );
    assert!(sources[3].starts_with("download of timm/vgg16.tv_in1k"));
    assert_eq!(attempts[0].reason, "not given");
    assert_eq!(attempts[1].reason, "not set");
    assert!(attempts[2].reason.contains("not there"));
    assert_eq!(attempts[3].reason, "disabled");
    let msg = err.to_string();
    assert!(msg.starts_with("no vgg16 weights found"), "{msg}");
    assert_eq!(msg.lines().count(), 5, "{msg}");

    let r = resolver();
    let ModelError::WeightsNotFound { attempts, .. } = r.resolve().unwrap_err() else {
        panic!("expected WeightsNotFound");
    };
    assert!(attempts[2].reason.contains("no cache folder"));
}
