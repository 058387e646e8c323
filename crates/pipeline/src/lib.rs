//! Pipeline files: every hyperparameter of every stage in one TOML file.
//!
//! A pipeline file has one section per stage (`[data]`, `[split]`, `[preview]`, `[small_cnn]`,
//! `[bottleneck]`, `[top]`, `[finetune]`). Every key has a default, so a file only names what it
//! changes; unknown keys and out-of-range values are errors that name the key. `--set
//! section.key=value` overrides any key from the command line. Each stage digests the sections
//! it uses, and that digest goes into its artifacts' provenance, so changing a setting reruns
//! exactly the stages that depend on it.

mod cli;
pub mod layout;
mod overrides;
mod sections;
pub mod training;

pub use cli::{ConfigArgs, error_chain, run_main};
pub use layout::Layout;
pub use overrides::apply_override;
pub use sections::*;
pub use training::{
    EarlyStopping, Metric, OptimizerConfig, OptimizerKind, OptimizerRule, Schedule,
};

use std::path::{Path, PathBuf};

/// Errors reading, overriding or validating a pipeline file.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The pipeline file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or has the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The pipeline file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A `--set` argument is malformed.
    #[error("--set {arg}: {message}")]
    Override {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("{path}: {source}")]
    Invalid {
        /// The pipeline file.
        path: PathBuf,
        /// The offending key and why.
        #[source]
        source: imagedata::ConfigError,
    },
    /// [`Pipeline::get`] was asked for a key the pipeline does not have.
    #[error("`{0}`: no such setting (or an optional one that is unset)")]
    NoSuchKey(String),
}

impl Pipeline {
    /// Reads `path`, applies `overrides` (`section.key=value`), and validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline, PipelineError> {
        let text = std::fs::read_to_string(path).map_err(|source| PipelineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, path, overrides)
    }

    /// Parses pipeline TOML text (`origin` names it in errors), applies overrides, validates.
    pub fn from_toml_str(
        text: &str,
        origin: &Path,
        overrides: &[String],
    ) -> Result<Pipeline, PipelineError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| PipelineError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        for arg in overrides {
            apply_override(&mut table, arg)?;
        }
        let de = toml::Value::Table(table);
        let pipeline: Pipeline = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            PipelineError::Parse {
                path: origin.to_path_buf(),
                message: format!("{key}: {}", e.into_inner()),
            }
        })?;
        pipeline
            .validate()
            .map_err(|source| PipelineError::Invalid {
                path: origin.to_path_buf(),
                source,
            })?;
        Ok(pipeline)
    }

    /// The effective value of the setting `key` (`data.dir`, `small_cnn.augment.zoom_range`,
    /// or a whole section such as `top`), defaults and overrides included, as JSON; an unset
    /// optional setting of the pipeline's own sections is `null`.
    pub fn get(&self, key: &str) -> Result<serde_json::Value, PipelineError> {
        let all = serde_json::to_value(self).expect("pipeline serializes");
        key.split('.')
            .try_fold(&all, |value, part| value.get(part))
            .cloned()
            .ok_or_else(|| PipelineError::NoSuchKey(key.to_string()))
    }

    /// Finds the backbone's weights: `explicit` (a `--weights` flag), else
    /// `bottleneck.weights`, else the backbone's environment variable, the hf-hub cache, then
    /// a download.
    pub fn resolve_weights(
        &self,
        explicit: Option<&Path>,
    ) -> Result<models::ResolvedWeights, models::ModelError> {
        let b = &self.bottleneck;
        b.backbone
            .resolve_weights(explicit.or(b.weights.as_deref()))
    }

    /// sha256 of the named sections' effective values (defaults included), plus `extra`
    /// (stage flags that change the result). Used as an artifact's config digest.
    pub fn digest(&self, sections: &[&str], extra: &serde_json::Value) -> String {
        let all = serde_json::to_value(self).expect("pipeline serializes");
        let mut picked = serde_json::Map::new();
        for s in sections {
            picked.insert(
                (*s).to_string(),
                all.get(*s).cloned().unwrap_or(serde_json::Value::Null),
            );
        }
        picked.insert("extra".into(), extra.clone());
        artifact::sha256_json(&serde_json::Value::Object(picked))
    }
}

#[cfg(test)]
mod tests;
