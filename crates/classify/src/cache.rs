//! `classify evaluate --json FILE` as a cached step: the file records what the evaluation was
//! computed from ([`EvalProvenance`]), and a rerun with the same model file, data and options
//! reads the stored report back instead of loading the model and classifying every image.
//! When the evaluation reads cached features ([`crate::reuse`]), their digest is part of its
//! provenance: a stored report is reused only while the same features file is there.

use std::path::Path;

use stage::{EvalProvenance, EvalReport};

use crate::error::Result;
use crate::eval::{EvalOptions, evaluate_planned};
use crate::model::{LoadedModel, model_file};
use crate::reuse;

/// What `json` holds.
enum Stored {
    /// The report of this model file and data with the expected provenance.
    UpToDate(Box<EvalReport>),
    /// No file.
    Missing,
    /// Something else (why); it will be replaced.
    Stale(String),
}

/// Reads the report stored at `json` and compares it with the evaluation of `model` (the
/// artifact file) on `data` with provenance `expected`. An unreadable, foreign or different
/// file is stale, never an error.
fn stored_report(json: &Path, model: &Path, data: &Path, expected: &EvalProvenance) -> Stored {
    let text = match std::fs::read_to_string(json) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Stored::Missing,
        Err(e) => return Stored::Stale(format!("unreadable: {e}")),
    };
    let stored: EvalReport = match serde_json::from_str(&text) {
        Ok(report) => report,
        Err(e) => return Stored::Stale(format!("not an evaluation report: {e}")),
    };
    let reason = match &stored.provenance {
        None => Some("it records no provenance".to_string()),
        Some(_) if stored.model != model => Some(format!(
            "it is the evaluation of {}",
            stored.model.display()
        )),
        Some(_) if stored.data != data => {
            Some(format!("it is an evaluation on {}", stored.data.display()))
        }
        Some(found) => expected.difference(found),
    };
    match reason {
        None => Stored::UpToDate(Box::new(stored)),
        Some(reason) => Stored::Stale(reason),
    }
}

/// What [`evaluate_cached`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cached {
    /// The stored report was up to date; nothing was loaded or classified.
    UpToDate(EvalReport),
    /// The model was evaluated and the report written.
    Evaluated {
        /// The new report (with its provenance).
        report: EvalReport,
        /// Why the stored report was replaced (`None`: there was none).
        reason: Option<String>,
    },
}

impl Cached {
    /// The report, stored or new.
    pub fn report(&self) -> &EvalReport {
        match self {
            Cached::UpToDate(report) | Cached::Evaluated { report, .. } => report,
        }
    }
}

/// Evaluates the model artifact at `model` (a stage's folder or its model file) on `data` and
/// writes the report with its provenance to `json` atomically, unless `json` already holds
/// the report of this model file, these images and these options (and `force` is off): then
/// it returns the stored report without calling `load` or reading an image more than to
/// digest it.
///
/// `load` opens the model (it receives the artifact file); it runs only when evaluating.
pub fn evaluate_cached(
    model: &Path,
    data: &Path,
    json: &Path,
    options: &EvalOptions,
    force: bool,
    load: impl FnOnce(&Path) -> Result<LoadedModel>,
) -> Result<Cached> {
    let file = model_file(model)?;
    let sha256 = artifact::sha256_file(&file)?;
    let calibration = if options.calibrated {
        crate::model::applicable_calibration(&file, &sha256)
            .ok()
            .flatten()
            .filter(|c| c.calibration.applied)
            .map(|c| c.sha256)
    } else {
        None
    };
    let mut expected = EvalProvenance::compute(sha256, data, options.tta, calibration)?;
    // Which features the evaluation would read is part of what it is computed from (see
    // `EvalProvenance::features`).
    let plan = reuse::plan_for_file(
        &file,
        data,
        &expected.data_digest,
        options.tta,
        &options.features,
    );
    expected.features = plan.digest().map(str::to_string);
    let reason = if force {
        Some("--force".to_string())
    } else {
        match stored_report(json, &file, data, &expected) {
            Stored::UpToDate(stored) => return Ok(Cached::UpToDate(*stored)),
            Stored::Stale(reason) => Some(reason),
            Stored::Missing => None,
        }
    };
    let loaded = load(&file)?;
    let mut report = evaluate_planned(&loaded, data, options, &plan)?;
    let mut provenance = expected;
    // What was applied, as the loaded model found it (the same file unless it changed since).
    provenance.calibration = match (&loaded.calibration, report.temperature) {
        (Some(applied), Some(_)) => Some(applied.sha256.clone()),
        _ => None,
    };
    report.provenance = Some(provenance);
    crate::write_output(json, &report.to_json())?;
    Ok(Cached::Evaluated { report, reason })
}
