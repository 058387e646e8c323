//! The report's "Know your photos" section, from `<artifacts>/audit/audit.json` (the `audit`
//! stage, [`stage::audit::AuditReport`]): what the audit found (likely wrong labels, copies,
//! validation photos leaking from train, strays), the models' accuracy without the leaking
//! photos, the command that rebuilds the split without the flagged photos, thumbnail grids of
//! each finding and the learning curve.
//!
//! [`read`] reads the file and notes which of the inputs it recorded (the bottleneck features,
//! the models' validation evaluations) have changed since; [`figures::draw`] draws the
//! pictures; [`section::render`] writes the Markdown.

pub mod figures;
pub mod section;

use std::path::{Path, PathBuf};

use features::{FeatureFile, feature_path};
use pipeline::Layout;
use stage::audit::{AUDIT_FORMAT, AuditReport};

use crate::error::{ReportError, Result};
use crate::method::Method;

/// The likely wrong labels' grid.
pub const LABEL_ISSUES_FILE: &str = "audit_label_issues.png";
/// The leaking photos' grid (each beside its twin in train).
pub const LEAKAGE_FILE: &str = "audit_leakage.png";
/// The duplicates' grid (each beside its twin).
pub const DUPLICATES_FILE: &str = "audit_duplicates.png";
/// The strays' grid.
pub const STRAYS_FILE: &str = "audit_strays.png";
/// The learning curve.
pub const LEARNING_CURVE_FILE: &str = "learning_curve.png";
/// Every picture of the section, for removing those an earlier report drew.
pub const FILES: [&str; 5] = [
    LABEL_ISSUES_FILE,
    LEAKAGE_FILE,
    DUPLICATES_FILE,
    STRAYS_FILE,
    LEARNING_CURVE_FILE,
];
/// The most label issues shown (the highest scores first).
pub const MAX_LABEL_ISSUES: usize = 24;
/// The most pairs shown per grid of leakage or duplicates.
pub const MAX_PAIRS: usize = 24;
/// The most strays shown (the highest scores first).
pub const MAX_STRAYS: usize = 20;
/// The command that makes `audit.json`.
pub const AUDIT_COMMAND: &str = "just audit";

/// `audit/audit.json` as read, with what changed since it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditInfo {
    /// The file.
    pub path: PathBuf,
    /// Its sha256 (listed in the report's provenance).
    pub sha256: String,
    /// Its contents.
    pub report: AuditReport,
    /// Inputs that changed since the audit, in sentences (each ends with the command that
    /// redoes it).
    pub notes: Vec<String>,
}

/// Reads `<artifacts>/audit/audit.json`: `Ok(None)` when it does not exist, an error naming it
/// when it cannot be read, is not JSON of [`AuditReport`], or is of another format.
pub fn read(artifacts: &Path) -> Result<Option<AuditInfo>> {
    let layout = Layout::new(artifacts);
    let path = layout.audit_report();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReportError::io(path, e)),
    };
    let report: AuditReport = serde_json::from_slice(&bytes).map_err(|e| ReportError::Audit {
        path: path.clone(),
        reason: format!("not valid audit results: {e}"),
    })?;
    if report.format != AUDIT_FORMAT {
        return Err(ReportError::Audit {
            path,
            reason: format!(
                "audit results of format {}, this report reads format {AUDIT_FORMAT}",
                report.format
            ),
        });
    }
    let notes = changed_inputs(&layout, &report)?;
    Ok(Some(AuditInfo {
        sha256: artifact::sha256_bytes(&bytes),
        path,
        report,
        notes,
    }))
}

/// What changed among the inputs `report` recorded: the bottleneck features (digests of
/// their metadata, as the audit records them) and the models' validation evaluations (file
/// digests).
fn changed_inputs(layout: &Layout, report: &AuditReport) -> Result<Vec<String>> {
    let inputs = &report.provenance.inputs;
    let mut notes = Vec::new();
    let bottleneck = layout.bottleneck();
    let mut features_changed = Vec::new();
    for (file, key) in [
        (FeatureFile::Train, "train_features"),
        (FeatureFile::Validation, "validation_features"),
    ] {
        let path = feature_path(&bottleneck, file, None);
        let now = if path.exists() {
            Some(features::features_digest(&artifact::read_metadata(&path)?))
        } else {
            None
        };
        if now.as_deref() != inputs.get(key).map(String::as_str) {
            features_changed.push(crate::text::code(&path.display().to_string()));
        }
    }
    if !features_changed.is_empty() {
        notes.push(format!(
            "the audit was computed from other bottleneck features than {} (extracted again \
             or removed since), so the photos and figures below may be out of date; `{}` \
             audits the current ones",
            features_changed.join(" and "),
            AUDIT_COMMAND
        ));
    }
    for method in Method::ALL {
        let key = format!("evaluation_{}", method.key());
        let path = Layout::evaluation(&method.dir(layout), "validation");
        let now = if path.exists() {
            Some(artifact::sha256_file(&path)?)
        } else {
            None
        };
        let then = inputs.get(&key);
        if now.as_ref() == then {
            continue;
        }
        let what = match (&now, then) {
            (Some(_), None) => "was evaluated after the audit, so it has no accuracy without the \
                                leaking photos yet"
                .to_string(),
            (None, Some(_)) => "has no validation evaluation any more; its accuracy without the \
                                leaking photos is of the one the audit read"
                .to_string(),
            _ => "was evaluated again since the audit, so its accuracy without the leaking \
                  photos is of the earlier evaluation"
                .to_string(),
        };
        notes.push(format!(
            "{} {what}; `{}` recomputes it",
            crate::text::esc(&method.label()),
            AUDIT_COMMAND
        ));
    }
    Ok(notes)
}

/// Where a photo of the audit is now: its recorded path when it exists, else the same file
/// under the pipeline's data folder (`<data.dir>/<split>/<file>`, for an audit run from
/// another folder), else the recorded path (drawn as unreadable).
pub fn locate(photo: &stage::audit::PhotoRef, data_dir: &Path) -> PathBuf {
    if photo.path.exists() {
        return photo.path.clone();
    }
    let moved = data_dir.join(&photo.split).join(&photo.file);
    if moved.exists() {
        moved
    } else {
        photo.path.clone()
    }
}
