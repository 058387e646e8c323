//! Provenance metadata and the freshness check that lets a stage skip work.

use crate::{ArtifactError, Metadata, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Metadata key of the producing stage.
pub const KEY_STAGE: &str = "littledata.stage";
/// Metadata key of the digest of the pipeline section the stage used.
pub const KEY_CONFIG: &str = "littledata.config_digest";
/// Metadata key of the JSON map of input name → digest.
pub const KEY_INPUTS: &str = "littledata.inputs";
/// Metadata key of the producing crate version.
pub const KEY_VERSION: &str = "littledata.version";
/// Metadata key of the creation time (RFC 3339, UTC).
pub const KEY_CREATED: &str = "littledata.created";
/// Metadata key of the digest of the file's bytes, `<algorithm>:<hex>` (see [`crate::verify`]).
pub const KEY_DATA_DIGEST: &str = "littledata.data_digest";

/// What an artifact was made from: enough to tell whether it is still current.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The stage that makes the artifact (`extract`, `train-top`, ...).
    pub stage: String,
    /// Digest of the pipeline section (and flags) the stage used.
    pub config_digest: String,
    /// Digest of every input (data, weights, upstream artifacts), by name.
    pub inputs: BTreeMap<String, String>,
}

/// The answer of [`check_fresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The artifact does not exist yet.
    Missing,
    /// The artifact was made from exactly these inputs and settings.
    UpToDate,
    /// The artifact exists but something it depends on changed (the reason says what).
    Stale(String),
}

impl Provenance {
    /// A provenance for `stage` with the given config digest and no inputs yet.
    pub fn new(stage: &str, config_digest: impl Into<String>) -> Self {
        Self {
            stage: stage.to_string(),
            config_digest: config_digest.into(),
            inputs: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) an input digest; returns `self` for chaining.
    pub fn input(mut self, name: &str, digest: impl Into<String>) -> Self {
        self.inputs.insert(name.to_string(), digest.into());
        self
    }

    /// Metadata carrying this provenance plus the crate version and the creation time.
    pub fn to_metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(KEY_STAGE.into(), self.stage.clone());
        m.insert(KEY_CONFIG.into(), self.config_digest.clone());
        m.insert(
            KEY_INPUTS.into(),
            serde_json::to_string(&self.inputs).expect("string map"),
        );
        m.insert(KEY_VERSION.into(), env!("CARGO_PKG_VERSION").into());
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        m.insert(KEY_CREATED.into(), now);
        m
    }

    /// Reads a provenance back from metadata (`None` when the keys are absent or malformed).
    pub fn from_metadata(meta: &Metadata) -> Option<Self> {
        Some(Self {
            stage: meta.get(KEY_STAGE)?.clone(),
            config_digest: meta.get(KEY_CONFIG)?.clone(),
            inputs: serde_json::from_str(meta.get(KEY_INPUTS)?).ok()?,
        })
    }

    /// Explains the first difference from `other`, or `None` when they match.
    pub fn difference(&self, other: &Provenance) -> Option<String> {
        if self.stage != other.stage {
            return Some(format!(
                "made by stage `{}`, not `{}`",
                other.stage, self.stage
            ));
        }
        if self.config_digest != other.config_digest {
            return Some("settings changed".into());
        }
        for (k, v) in &self.inputs {
            match other.inputs.get(k) {
                None => return Some(format!("input `{k}` is new")),
                Some(o) if o != v => return Some(format!("input `{k}` changed")),
                _ => {}
            }
        }
        for k in other.inputs.keys() {
            if !self.inputs.contains_key(k) {
                return Some(format!("input `{k}` is gone"));
            }
        }
        None
    }
}

/// Compares the provenance stored in the artifact at `path` with `expected`, then checks its
/// bytes against the digest it records ([`crate::verify`]; a file this process already
/// verified and that has not changed since is not read again).
///
/// An unreadable, foreign or damaged file counts as stale (it will be rebuilt), not as an
/// error; so does a file that records no data digest (written before artifacts recorded one):
/// `UpToDate` means the bytes were checked.
pub fn check_fresh(path: &Path, expected: &Provenance) -> Result<Freshness> {
    if !path.exists() {
        return Ok(Freshness::Missing);
    }
    let meta = match crate::read_metadata(path) {
        Ok(m) => m,
        Err(ArtifactError::Damaged { reason, .. }) => {
            return Ok(Freshness::Stale(format!("damaged: {reason}")));
        }
        Err(e) => return Ok(Freshness::Stale(format!("unreadable: {e}"))),
    };
    let found = match Provenance::from_metadata(&meta) {
        None => return Ok(Freshness::Stale("no provenance metadata".into())),
        Some(found) => found,
    };
    if let Some(reason) = expected.difference(&found) {
        return Ok(Freshness::Stale(reason));
    }
    Ok(match crate::integrity::verify_remembered(path) {
        Ok(()) => Freshness::UpToDate,
        Err(ArtifactError::Damaged { reason, .. }) => {
            Freshness::Stale(format!("damaged: {reason}"))
        }
        Err(ArtifactError::NoDigest { .. }) => Freshness::Stale(
            "no data digest (written before artifacts recorded one); rebuilding adds it".into(),
        ),
        Err(e) => Freshness::Stale(format!("unreadable: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn fresh_then_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let prov = Provenance::new("extract", "cfg1").input("data", "d1");
        assert_eq!(check_fresh(&p, &prov).unwrap(), Freshness::Missing);
        let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        crate::save(&p, [("x", &t)], &prov.to_metadata()).unwrap();
        assert_eq!(check_fresh(&p, &prov).unwrap(), Freshness::UpToDate);

        let changed = prov.clone().input("data", "d2");
        assert_eq!(
            check_fresh(&p, &changed).unwrap(),
            Freshness::Stale("input `data` changed".into())
        );
        let cfg = Provenance::new("extract", "cfg2").input("data", "d1");
        assert_eq!(
            check_fresh(&p, &cfg).unwrap(),
            Freshness::Stale("settings changed".into())
        );
        let more = prov.clone().input("weights", "w");
        assert!(
            matches!(check_fresh(&p, &more).unwrap(), Freshness::Stale(r) if r.contains("weights"))
        );

        std::fs::write(&p, b"junk").unwrap();
        assert!(matches!(
            check_fresh(&p, &prov).unwrap(),
            Freshness::Stale(_)
        ));
    }

    #[test]
    fn metadata_roundtrip() {
        let prov = Provenance::new("s", "c").input("a", "1").input("b", "2");
        let m = prov.to_metadata();
        assert_eq!(Provenance::from_metadata(&m), Some(prov));
        assert!(m.contains_key(KEY_CREATED) && m.contains_key(KEY_VERSION));
    }
}
