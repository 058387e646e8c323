//! Finding a backbone's pretrained weights: `--weights PATH` (or the pipeline's
//! `bottleneck.weights`), then the backbone's environment variable (`LITTLEDATA_VGG16_WEIGHTS`,
//! ...), then the Hugging Face hub cache, then a download with hf-hub.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use hf_hub::Cache;
use hf_hub::api::sync::ApiBuilder;

use crate::error::{ModelError, Result, WeightsAttempt};

/// Where a backbone's weights are looked for besides an explicit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightsLocation {
    /// The backbone's name, for messages.
    pub backbone: &'static str,
    /// The environment variable naming a weights file (`LITTLEDATA_VGG16_WEIGHTS`).
    pub env_var: &'static str,
    /// The Hugging Face hub repository (`timm/vgg16.tv_in1k`).
    pub hub_repo: &'static str,
    /// The weights file in it (`model.safetensors`).
    pub hub_file: &'static str,
}

/// Where resolved weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsSource {
    /// The path given explicitly (`--weights`).
    Explicit,
    /// The path in the backbone's environment variable.
    EnvVar(&'static str),
    /// The Hugging Face hub cache.
    HubCache,
    /// A download from the Hugging Face hub (now in its cache).
    Download,
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightsSource::Explicit => "--weights",
            WeightsSource::EnvVar(var) => var,
            WeightsSource::HubCache => "hf-hub cache",
            WeightsSource::Download => "hf-hub download",
        })
    }
}

/// A weights file found by [`WeightsResolver::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedWeights {
    /// The file.
    pub path: PathBuf,
    /// Where it was found.
    pub source: WeightsSource,
    /// Its sha256 (lowercase hex).
    pub sha256: String,
}

/// The sources [`WeightsResolver::resolve`] tries, in order. A path given explicitly or
/// through the environment variable is authoritative: if it is not a readable file,
/// resolution stops there with an error rather than falling back to another file.
#[derive(Debug, Clone)]
pub struct WeightsResolver {
    /// Where the weights are looked for.
    pub location: WeightsLocation,
    /// The path given with `--weights`, if any.
    pub explicit: Option<PathBuf>,
    /// The value of the location's environment variable, if set (an empty value counts as
    /// unset).
    pub env_value: Option<OsString>,
    /// The hf-hub cache folder (`$HF_HOME/hub` or `~/.cache/huggingface/hub`), if one is known.
    pub hub_cache: Option<PathBuf>,
    /// Whether to download from the hub when nothing else gave a file.
    pub download: bool,
    /// Whether a download shows a progress bar.
    pub progress: bool,
    /// The hub endpoint (`HF_ENDPOINT`), if not the default.
    pub endpoint: Option<String>,
}

impl WeightsResolver {
    /// The resolver of the stages for `location`: `explicit` from `--weights`, the
    /// environment variable, the hf-hub cache where hf-hub puts it (`$HF_HOME/hub`, else
    /// `$HOME/.cache/huggingface/hub`), and downloads enabled with a progress bar.
    pub fn from_env(location: WeightsLocation, explicit: Option<&Path>) -> Self {
        let hub_cache = match (std::env::var_os("HF_HOME"), std::env::var_os("HOME")) {
            (Some(hf_home), _) if !hf_home.is_empty() => Some(PathBuf::from(hf_home).join("hub")),
            (_, Some(home)) if !home.is_empty() => Some(
                PathBuf::from(home)
                    .join(".cache")
                    .join("huggingface")
                    .join("hub"),
            ),
            _ => None,
        };
        Self {
            location,
            explicit: explicit.map(Path::to_path_buf),
            env_value: std::env::var_os(location.env_var).filter(|v| !v.is_empty()),
            hub_cache,
            download: true,
            progress: true,
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|v| !v.is_empty()),
        }
    }

    /// Finds the weights file and computes its sha256, trying each source in order. When none
    /// gives a file, the error lists every source tried and why it failed.
    pub fn resolve(&self) -> Result<ResolvedWeights> {
        let WeightsLocation {
            env_var,
            hub_repo,
            hub_file,
            ..
        } = self.location;
        let mut attempts = Vec::new();
        let found = |path: PathBuf, source| -> Result<ResolvedWeights> {
            let sha256 = artifact::sha256_file(&path)?;
            Ok(ResolvedWeights {
                path,
                source,
                sha256,
            })
        };

        // 1. --weights, authoritative when given.
        match &self.explicit {
            Some(path) => {
                return match check_file(path) {
                    Ok(()) => found(path.clone(), WeightsSource::Explicit),
                    Err(reason) => {
                        attempts.push(attempt(
                            "--weights",
                            format!("{}: {reason}", path.display()),
                        ));
                        Err(ModelError::WeightsNotFound {
                            backbone: self.location.backbone.into(),
                            attempts,
                        })
                    }
                };
            }
            None => attempts.push(attempt("--weights", "not given".into())),
        }

        // 2. The environment variable, authoritative when set.
        match &self.env_value {
            Some(value) => {
                let path = PathBuf::from(value);
                return match check_file(&path) {
                    Ok(()) => found(path, WeightsSource::EnvVar(env_var)),
                    Err(reason) => {
                        attempts.push(attempt(env_var, format!("{}: {reason}", path.display())));
                        Err(ModelError::WeightsNotFound {
                            backbone: self.location.backbone.into(),
                            attempts,
                        })
                    }
                };
            }
            None => attempts.push(attempt(env_var, "not set".into())),
        }

        // 3. The hf-hub cache.
        let cache_label = match &self.hub_cache {
            Some(dir) => format!("hf-hub cache ({})", dir.display()),
            None => "hf-hub cache".to_string(),
        };
        match &self.hub_cache {
            Some(dir) => {
                let cached = Cache::new(dir.clone())
                    .model(hub_repo.to_string())
                    .get(hub_file);
                match cached {
                    Some(path) => match check_file(&path) {
                        Ok(()) => return found(path, WeightsSource::HubCache),
                        Err(reason) => attempts.push(attempt(
                            &cache_label,
                            format!("{}: {reason}", path.display()),
                        )),
                    },
                    None => attempts.push(attempt(
                        &cache_label,
                        format!("{hub_repo} {hub_file} is not there"),
                    )),
                }
            }
            None => attempts.push(attempt(
                &cache_label,
                "no cache folder (neither HF_HOME nor HOME is set)".into(),
            )),
        }

        // 4. A download into the cache.
        let download_label = format!("download of {hub_repo} {hub_file}");
        if !self.download {
            attempts.push(attempt(&download_label, "disabled".into()));
            return Err(ModelError::WeightsNotFound {
                backbone: self.location.backbone.into(),
                attempts,
            });
        }
        let Some(dir) = &self.hub_cache else {
            attempts.push(attempt(
                &download_label,
                "no cache folder to download into".into(),
            ));
            return Err(ModelError::WeightsNotFound {
                backbone: self.location.backbone.into(),
                attempts,
            });
        };
        match self.download_to(dir) {
            Ok(path) => found(path, WeightsSource::Download),
            Err(reason) => {
                attempts.push(attempt(&download_label, reason));
                Err(ModelError::WeightsNotFound {
                    backbone: self.location.backbone.into(),
                    attempts,
                })
            }
        }
    }

    /// Downloads the weights file into the hf-hub cache at `dir` and returns its path there.
    fn download_to(&self, dir: &Path) -> std::result::Result<PathBuf, String> {
        let mut builder =
            ApiBuilder::from_cache(Cache::new(dir.to_path_buf())).with_progress(self.progress);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder.build().map_err(|e| e.to_string())?;
        let path = api
            .model(self.location.hub_repo.to_string())
            .get(self.location.hub_file)
            .map_err(|e| e.to_string())?;
        check_file(&path).map_err(|reason| format!("{}: {reason}", path.display()))?;
        Ok(path)
    }
}

/// Resolves the weights at `location` the way the stages do (see
/// [`WeightsResolver::from_env`]).
pub fn resolve_weights(
    location: WeightsLocation,
    explicit: Option<&Path>,
) -> Result<ResolvedWeights> {
    WeightsResolver::from_env(location, explicit).resolve()
}

fn attempt(source: &str, reason: String) -> WeightsAttempt {
    WeightsAttempt {
        source: source.to_string(),
        reason,
    }
}

/// Whether `path` is an existing, readable regular file; the reason when it is not.
fn check_file(path: &Path) -> std::result::Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => std::fs::File::open(path)
            .map(|_| ())
            .map_err(|e| format!("cannot be opened: {e}")),
        Ok(_) => Err("is not a regular file".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(e.to_string()),
    }
}
