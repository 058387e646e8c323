//! The report that compares the post's three methods, rebuilt from the artifacts alone.
//!
//! [`build_report`] reads what the stages left under `[data] artifacts` ([`gather`]): each
//! method's model metadata (spec, provenance), `history.json`, `metrics.json` and the
//! `classify evaluate --json` results in `<stage>/evaluation/{validation,test}.json`, the
//! bottleneck features' metadata, `top/kfold.json`, each model's `calibration.safetensors`
//! (`classify calibrate`) and `audit/audit.json` (`audit`). It writes `<artifacts>/report/`:
//!
//! - `report.md`: a results table with the post's published figures beside ours, the
//!   training curves, the k-fold estimate, confusion matrices, the validation images each
//!   model got wrong, each model's calibration (temperature, ECE and NLL before and after),
//!   "Know your photos" (what the audit found in the photos, the accuracy without the photos
//!   leaking from train, the command that rebuilds the split without the flagged ones, and
//!   the learning curve; see [`audit`]), and provenance (pipeline file, weights and data
//!   digests, the audit's digest, commit, machine);
//! - `curves.png`, `mistakes_<method>.png`, `calibration_<method>.png` (a reliability
//!   diagram), the audit's grids (`audit_label_issues.png`, `audit_leakage.png`,
//!   `audit_duplicates.png`, `audit_strays.png`) and `learning_curve.png`, the pictures
//!   `report.md` shows;
//! - `report.html`: the same page, self-contained (pictures as `data:` URIs, style inline).
//!
//! Stages not run yet are listed with the command that runs them; files that exist but cannot
//! be read are errors naming the file. Every file is written atomically.

#![warn(missing_docs)]

pub mod audit;
pub mod error;
pub mod figures;
pub mod gather;
pub mod grid;
pub mod html;
pub mod machine;
pub mod markdown;
pub mod method;
pub mod text;

pub use error::{ReportError, Result};
pub use gather::{CalibrationState, Gathered, MethodRun, MethodState, gather};
pub use method::Method;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use markdown::{Context, Figures, MistakesFigure};
use stage::Mistake;

/// The report's folder under the artifacts folder.
pub const REPORT_DIR: &str = "report";
/// The Markdown report's file name.
pub const MARKDOWN_FILE: &str = "report.md";
/// The self-contained HTML report's file name.
pub const HTML_FILE: &str = "report.html";
/// The training curves' file name.
pub const CURVES_FILE: &str = "curves.png";
/// How many mistakes a method's grid shows by default.
pub const DEFAULT_MAX_MISTAKES: usize = 48;

/// The mistakes grid's file name for `method` (`mistakes_small_cnn.png`).
pub fn mistakes_file(method: Method) -> String {
    format!("mistakes_{}.png", method.key())
}

/// The reliability diagram's file name for `method` (`calibration_small_cnn.png`).
pub fn calibration_file(method: Method) -> String {
    format!("calibration_{}.png", method.key())
}

/// The report's folder, `<artifacts>/report`.
pub fn report_dir(artifacts: &Path) -> PathBuf {
    artifacts.join(REPORT_DIR)
}

/// How to build the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportOptions {
    /// The pipeline file (its digest goes into the provenance).
    pub pipeline_file: PathBuf,
    /// `--set` overrides in effect (listed in the provenance).
    pub overrides: Vec<String>,
    /// The most mistakes shown per method (the most confident first).
    pub max_mistakes: usize,
    /// The folder whose git commit is reported (the project's root).
    pub source_dir: PathBuf,
}

/// What [`build_report`] wrote and found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOutput {
    /// The report folder.
    pub dir: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// The pictures, in the report folder.
    pub images: Vec<PathBuf>,
    /// What was read.
    pub gathered: Gathered,
}

/// Reads the artifacts under `pipeline`'s `[data] artifacts` folder and writes the report into
/// its `report/` folder (see the crate documentation).
pub fn build_report(
    pipeline: &pipeline::Pipeline,
    options: &ReportOptions,
) -> Result<ReportOutput> {
    let artifacts = &pipeline.data.artifacts;
    let gathered = gather(artifacts)?;
    let dir = report_dir(artifacts);
    let pipeline_sha256 = artifact::sha256_file(&options.pipeline_file)?;
    let cuda_used = gathered
        .runs()
        .filter_map(|r| Some(r.metrics.as_ref()?.device.as_str()))
        .any(|d| d.starts_with("cuda"));
    let ctx = Context {
        pipeline_file: options.pipeline_file.clone(),
        pipeline_sha256,
        overrides: options.overrides.clone(),
        data_dir: pipeline.data.dir.clone(),
        commit: machine::git_commit(&options.source_dir),
        machine: machine::Machine::detect(cuda_used),
        created: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default(),
    };

    let mut images: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut figs = Figures::default();
    let curves: Vec<(String, &engine::History)> = gathered
        .runs()
        .filter_map(|r| Some((r.method.label(), r.history.as_ref()?)))
        .collect();
    if !curves.is_empty() {
        let named: Vec<(&str, &engine::History)> =
            curves.iter().map(|(n, h)| (n.as_str(), *h)).collect();
        let png = figures::curves(&named, &dir.join(CURVES_FILE))?;
        images.insert(CURVES_FILE.into(), png);
        figs.curves = Some(CURVES_FILE.into());
    }
    for run in gathered.runs() {
        let Some(eval) = &run.validation else {
            continue;
        };
        let mut mistakes: Vec<&Mistake> = eval.report.mistakes.iter().collect();
        if mistakes.is_empty() {
            continue;
        }
        // The most confident mistakes first; ties in file order.
        mistakes.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let total = mistakes.len();
        mistakes.truncate(options.max_mistakes.max(1));
        let file = mistakes_file(run.method);
        let (png, unreadable) = figures::mistakes_grid(&mistakes, &dir.join(&file))?;
        figs.mistakes.insert(
            run.method,
            MistakesFigure {
                file: file.clone(),
                shown: mistakes.len(),
                total,
                unreadable,
            },
        );
        images.insert(file, png);
    }
    for run in gathered.runs() {
        let Some(calibration) = run.calibration.fitted() else {
            continue;
        };
        let file = calibration_file(run.method);
        let png = figures::reliability(
            &format!("{}: reliability", run.method.label()),
            calibration,
            &dir.join(&file),
        )?;
        figs.calibration.insert(run.method, file.clone());
        images.insert(file, png);
    }

    if let Some(audit) = &gathered.audit {
        figs.audit = audit::figures::draw(audit, &pipeline.data.dir, &dir, &mut images)?;
    }

    let md = markdown::render(&gathered, &figs, &ctx);
    let page = html::render("littledata: the three methods compared", &md, &images);
    let mut written = Vec::new();
    for (name, png) in &images {
        let path = dir.join(name);
        artifact::atomic_write(&path, png)?;
        written.push(path);
    }
    // Pictures of an earlier report that this one no longer shows.
    let stale = std::iter::once(CURVES_FILE.to_string())
        .chain(Method::ALL.iter().map(|&m| mistakes_file(m)))
        .chain(Method::ALL.iter().map(|&m| calibration_file(m)))
        .chain(audit::FILES.iter().map(|f| f.to_string()))
        .filter(|name| !images.contains_key(name));
    for name in stale {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ReportError::io(path, e));
            }
            _ => {}
        }
    }
    let markdown_path = dir.join(MARKDOWN_FILE);
    artifact::atomic_write(&markdown_path, md.as_bytes())?;
    let html_path = dir.join(HTML_FILE);
    artifact::atomic_write(&html_path, page.as_bytes())?;
    Ok(ReportOutput {
        dir,
        markdown: markdown_path,
        html: html_path,
        images: written,
        gathered,
    })
}
