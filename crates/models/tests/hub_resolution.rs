//! The hub backbones' weights found the way the stages find them,
//! [`BackboneKind::resolve_weights`] reading the process environment: nothing anywhere (every
//! source listed, the hub repository named), then the hf-hub cache under `HF_HOME` laid out as
//! the hub client leaves it, then the backbone's environment variable ahead of the cache.
//!
//! One test in its own binary, because it sets environment variables of the process. Downloads
//! go to `HF_ENDPOINT=http://127.0.0.1:9` (the discard port), so they fail at once, offline.

use std::path::Path;

use candle_core::Device;
use models::{Backbone, BackboneKind, ModelError, WeightsSource};
use testkit::hub as hub_weights;

/// Sets (or with `None` removes) an environment variable of this process.
fn set_env(name: &str, value: Option<&Path>) {
    // SAFETY: this binary runs a single test, and nothing else in the process reads or writes
    // the environment at the same time.
    unsafe {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
}

#[test]
fn hub_backbones_resolve_through_hf_home_and_their_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let hf_home = dir.path().join("hf_home");
    set_env("HF_HOME", Some(&hf_home));
    set_env("HF_ENDPOINT", Some(Path::new("http://127.0.0.1:9")));
    for kind in BackboneKind::ALL {
        set_env(kind.weights_location().env_var, None);
    }

    for kind in [BackboneKind::ConvNextTiny, BackboneKind::ResNet50] {
        let model = kind.hub_model().expect("a hub backbone");
        let location = kind.weights_location();

        // Nowhere: the error lists each source, the cache under HF_HOME and the repository.
        let err = kind.resolve_weights(None).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ModelError::WeightsNotFound { .. }),
            "{kind}: {err:?}"
        );
        for part in [
            format!("no {kind} weights found"),
            format!("{}: not set", location.env_var),
            format!("hf-hub cache ({})", hf_home.join("hub").display()),
            format!("{} model.safetensors is not there", location.hub_repo),
            format!("download of {} model.safetensors", location.hub_repo),
        ] {
            assert!(msg.contains(&part), "{kind}: {part:?} not in:\n{msg}");
        }

        // The cache under HF_HOME.
        let (snapshot, sha256) = hub_weights::populate_cache(&hf_home.join("hub"), model);
        let found = kind.resolve_weights(None).unwrap();
        assert_eq!(found.source, WeightsSource::HubCache, "{kind}");
        assert_eq!(found.path, snapshot, "{kind}");
        assert_eq!(found.sha256, sha256, "{kind}");
        let backbone = Backbone::load(kind, &found, &Device::Cpu).unwrap();
        assert_eq!(backbone.kind(), kind);
        assert_eq!(backbone.sha256(), sha256);
        assert_eq!(backbone.path(), snapshot.as_path());

        // The environment variable comes before the cache, and is authoritative.
        let elsewhere = dir.path().join(format!("{kind}.safetensors"));
        std::fs::copy(&snapshot, &elsewhere).unwrap();
        set_env(location.env_var, Some(&elsewhere));
        let found = kind.resolve_weights(None).unwrap();
        assert_eq!(found.source, WeightsSource::EnvVar(location.env_var));
        assert_eq!(found.path, elsewhere);
        let missing = dir.path().join("missing.safetensors");
        set_env(location.env_var, Some(&missing));
        let msg = kind.resolve_weights(None).unwrap_err().to_string();
        assert!(
            msg.contains(&format!(
                "{}: {}: does not exist",
                location.env_var,
                missing.display()
            )),
            "{msg}"
        );
        set_env(location.env_var, None);
    }
}
