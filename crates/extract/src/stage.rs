//! The `extract` stage: which files are stale, loading the backbone only when something must
//! be computed, and the report the binary prints.

use std::path::PathBuf;
use std::time::Instant;

use artifact::{Freshness, check_fresh};
use candle_core::{DType, Device};
use engine::Interrupt;
use features::{
    ExtractSettings, Extractor, FEATURES_FORMAT, FeatureFile, FeatureMeta, Job, Result, RunStats,
    Shard, ShardMeta, extract_to_file, feature_path, features_provenance,
};
use imagedata::{Split, SplitData};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use models::{Backbone, ResolvedWeights};
use pipeline::Pipeline;

/// How to run the stage (besides the pipeline file).
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// The backbone's weights file (overrides `bottleneck.weights`; unset: the usual
    /// resolution).
    pub weights: Option<PathBuf>,
    /// Compute one slice only.
    pub shard: Option<Shard>,
    /// Recompute even files that are up to date.
    pub force: bool,
    /// Where the backbone runs.
    pub device: Device,
    /// Draw progress bars (on stderr, when it is a terminal).
    pub progress: bool,
    /// A stop request checked after every batch.
    pub interrupt: Option<Interrupt>,
}

impl ExtractOptions {
    /// Defaults on `device`: no weights override, no shard, no force, progress bars on.
    pub fn new(device: Device) -> Self {
        Self {
            weights: None,
            shard: None,
            force: false,
            device,
            progress: true,
            interrupt: None,
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It was up to date; nothing was done.
    UpToDate,
    /// It was computed.
    Written(RunStats),
}

/// One file of the stage.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// Which file.
    pub file: FeatureFile,
    /// Where it is.
    pub path: PathBuf,
    /// Rows it holds.
    pub rows: usize,
    /// What happened.
    pub outcome: Outcome,
    /// Why it was computed (`missing`, what changed, `--force`).
    pub reason: Option<String>,
}

/// What the stage did.
#[derive(Debug, Clone)]
pub struct ExtractReport {
    /// Every file, in the order train, validation, train_augmented.
    pub files: Vec<FileReport>,
    /// The weights used.
    pub weights: ResolvedWeights,
    /// Seconds spent scanning and digesting the data folders.
    pub data_seconds: f64,
    /// Peak resident memory of the process in bytes, where the platform reports it.
    pub peak_memory: Option<u64>,
}

impl ExtractReport {
    /// Whether every file was up to date (no work was done).
    pub fn up_to_date(&self) -> bool {
        self.files.iter().all(|f| f.outcome == Outcome::UpToDate)
    }

    /// Rows computed and seconds spent computing them, over all files.
    pub fn computed(&self) -> (usize, f64) {
        self.files
            .iter()
            .filter_map(|f| match f.outcome {
                Outcome::Written(s) => Some((s.rows, s.seconds)),
                Outcome::UpToDate => None,
            })
            .fold((0, 0.0), |(r, t), (rows, s)| (r + rows, t + s))
    }
}

/// Peak resident memory of this process in bytes (`VmHWM` of `/proc/self/status`; `None`
/// where that is unavailable).
pub fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A progress bar of `len` images, hidden unless `show`.
fn progress_bar(show: bool, len: usize, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>15} [{bar:30}] {pos:>6}/{len:6} images  {rate}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} images/s", state.per_sec());
        },
    )
    .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64).with_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}

/// Runs the `extract` stage: for `train`, `validation` and (with augmented views)
/// `train_augmented`, recomputes the features file unless it is up to date with the current
/// images, settings and weights. With a shard, only that slice of each is computed (into
/// `<stem>.shard-i-of-n.safetensors`).
pub fn extract(pipeline: &Pipeline, options: &ExtractOptions) -> Result<ExtractReport> {
    let data_started = Instant::now();
    let (train, validation) = SplitData::scan_pair(&pipeline.data.dir)?;
    let weights = pipeline.resolve_weights(options.weights.as_deref())?;
    let data_seconds = data_started.elapsed().as_secs_f64();
    let dir = pipeline.layout().bottleneck();

    struct Planned<'a> {
        file: FeatureFile,
        settings: ExtractSettings,
        data: &'a SplitData,
        meta: FeatureMeta,
        provenance: artifact::Provenance,
        path: PathBuf,
        reason: Option<String>,
    }
    let mut planned = Vec::new();
    for file in FeatureFile::ALL {
        let Some(settings) = ExtractSettings::for_file(pipeline, file) else {
            continue;
        };
        let data = match file.split() {
            Split::Train => &train,
            Split::Validation => &validation,
        };
        let (c, h, w) = settings.feature_shape()?;
        let shard = options.shard.map(|s| {
            let r = s.range(data.len());
            ShardMeta {
                index: s.index,
                count: s.count,
                start: r.start,
                end: r.end,
            }
        });
        let meta = FeatureMeta {
            format: FEATURES_FORMAT,
            split: file.split(),
            classes: data.classes.clone(),
            files: data.relative.clone(),
            holds: settings.describe(),
            settings: settings.clone(),
            weights_sha256: weights.sha256.clone(),
            feature_shape: [c, h, w],
            data_digest: data.digest.clone(),
            shard,
        };
        let provenance = features_provenance(
            file,
            &settings,
            options.shard,
            &data.digest,
            &weights.sha256,
        );
        let path = feature_path(&dir, file, options.shard);
        let reason = match check_fresh(&path, &provenance)? {
            Freshness::UpToDate if !options.force => None,
            Freshness::UpToDate => Some("--force".to_string()),
            Freshness::Missing => Some("missing".to_string()),
            Freshness::Stale(why) => Some(why),
        };
        planned.push(Planned {
            file,
            settings,
            data,
            meta,
            provenance,
            path,
            reason,
        });
    }

    // What a killed run left (a forced rerun's too, even when the files are up to date now).
    artifact::remove_stale_temps(&dir, None)?;
    let needs_work = planned.iter().any(|p| p.reason.is_some());
    let backbone = if needs_work {
        Some(Backbone::load(
            pipeline.bottleneck.backbone,
            &weights,
            &options.device,
        )?)
    } else {
        None
    };
    let mut files = Vec::with_capacity(planned.len());
    for p in planned {
        let rows = p.meta.rows();
        let outcome = match (&p.reason, &backbone) {
            (Some(_), Some(backbone)) => {
                let extractor = Extractor::new(backbone.clone(), p.settings.clone())?;
                let mut metadata = p.meta.to_metadata();
                metadata.extend(p.provenance.to_metadata());
                let job = Job {
                    files: &p.data.files,
                    images: p.meta.image_range(),
                    batch_size: pipeline.bottleneck.batch_size,
                };
                let bar = progress_bar(options.progress, rows, p.file.stem());
                let stats = extract_to_file(
                    &extractor,
                    &job,
                    &p.data.labels,
                    &metadata,
                    &p.path,
                    DType::F32,
                    &bar,
                    options.interrupt.as_ref(),
                );
                bar.finish_and_clear();
                Outcome::Written(stats?)
            }
            _ => Outcome::UpToDate,
        };
        files.push(FileReport {
            file: p.file,
            path: p.path,
            rows,
            outcome,
            reason: p.reason,
        });
    }
    Ok(ExtractReport {
        files,
        weights,
        data_seconds,
        peak_memory: peak_memory_bytes(),
    })
}
