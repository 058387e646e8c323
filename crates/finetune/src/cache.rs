//! The caches of the frozen part's outputs, under `<data.artifacts>/finetune/`.
//!
//! The frozen part of the backbone (VGG16: blocks 1–4, about 90% of the network's arithmetic)
//! never changes during fine-tuning, so its outputs are computed once and stored:
//!
//! - `views.safetensors`: `K = finetune.views` augmented views of every training image
//!   (image-major: row `i·K + v` is view `v` of image `i`), run through the frozen part,
//!   `features` `[N·K, C, h, w]` stored as f16, and `labels` `[N·K]`. View `v` of image `i` is
//!   the transform drawn from `imagedata::rng::substream(seed, names::VIEWS, i << 32 | v)`
//!   with the `[finetune.augment]` settings, so it depends neither on `K` nor on batching.
//! - `validation_frozen.safetensors`: the plain validation images through the frozen part, f32.
//!
//! Both are features files in the format of the `features` crate (its [`Extractor`] computes
//! them), with their provenance: the images' content digest, the backbone and its weights
//! digest, the image size, interpolation, preprocessing, augmentation, view count and seed. A cache made
//! from other data or settings is rebuilt, never reused.
//!
//! The view cache is built in parts of [`DEFAULT_PART_IMAGES`] images, each written
//! atomically into `views.parts/` as soon as it is done; an interrupted build continues from
//! the finished parts, which are then merged into `views.safetensors` (and removed). Only a
//! complete, merged cache is ever read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::{Freshness, Provenance, check_fresh};
use candle_core::{DType, Device, Tensor};
use engine::Interrupt;
use features::{
    ExtractSettings, Extractor, FEATURES_FORMAT, FeatureFile, FeatureMeta, FeaturePart,
    FeaturesError, Job, MergeOptions, RunStats, Shard, ShardMeta, extract_to_file, feature_path,
    features_provenance, merge_file,
};
use imagedata::{Split, SplitData};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use models::Backbone;
use pipeline::Pipeline;

use crate::error::{FinetuneError, Result};

/// Training images per part of the view cache (at 150×150 and 10 views of VGG16, a part is
/// about 80 MiB of f16 and a minute or so of CPU time).
pub const DEFAULT_PART_IMAGES: usize = 100;

/// Which cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKind {
    /// Augmented views of the training images (`views.safetensors`).
    Views,
    /// The plain validation images (`validation_frozen.safetensors`).
    Validation,
}

impl CacheKind {
    /// The file name in the stage's folder.
    pub fn file_name(self) -> &'static str {
        match self {
            CacheKind::Views => "views.safetensors",
            CacheKind::Validation => "validation_frozen.safetensors",
        }
    }

    /// A short name for messages and progress bars.
    pub fn label(self) -> &'static str {
        match self {
            CacheKind::Views => "views",
            CacheKind::Validation => "validation",
        }
    }

    /// The split whose images the cache holds.
    pub fn split(self) -> Split {
        match self {
            CacheKind::Views => Split::Train,
            CacheKind::Validation => Split::Validation,
        }
    }

    /// The features file kind it is, for its provenance.
    fn feature_file(self) -> FeatureFile {
        match self {
            CacheKind::Views => FeatureFile::TrainAugmented,
            CacheKind::Validation => FeatureFile::Validation,
        }
    }

    /// The storage type: f16 for the (large) views, f32 for validation, so that validation
    /// figures do not depend on the caching.
    pub fn dtype(self) -> DType {
        match self {
            CacheKind::Views => DType::F16,
            CacheKind::Validation => DType::F32,
        }
    }
}

/// What building a cache did.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheOutcome {
    /// It was up to date; nothing was computed.
    UpToDate,
    /// It was (re)built.
    Built(CacheStats),
}

/// The work of one build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheStats {
    /// Rows computed now.
    pub rows: usize,
    /// Finished parts of an interrupted build that were reused.
    pub parts_reused: usize,
    /// Wall-clock seconds, decoding and merging included.
    pub seconds: f64,
}

impl CacheStats {
    /// Rows computed per second.
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// One cache: what it holds, where, and how to build and read it.
#[derive(Debug, Clone)]
pub struct CachePlan<'a> {
    kind: CacheKind,
    settings: ExtractSettings,
    data: &'a SplitData,
    weights_sha256: String,
    path: PathBuf,
    parts: usize,
    batch_size: usize,
}

/// A progress bar of `len` rows, hidden unless `show`.
fn progress_bar(show: bool, len: usize, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos:>7}/{len:7} rows  {rate}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.1} rows/s", state.per_sec());
        },
    )
    .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64).with_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}

impl<'a> CachePlan<'a> {
    /// The `kind` cache of `pipeline` over `data` (the training split for views, the
    /// validation split otherwise), for the backbone weights with sha256 `weights_sha256`; the
    /// view cache is built in parts of `part_images` images.
    pub fn new(
        kind: CacheKind,
        pipeline: &Pipeline,
        data: &'a SplitData,
        weights_sha256: &str,
        part_images: usize,
    ) -> Result<Self> {
        if data.split != kind.split() {
            return Err(FinetuneError::Cache {
                path: data.root.clone(),
                reason: format!(
                    "the {} cache holds {} images, not {} images",
                    kind.label(),
                    kind.split(),
                    data.split
                ),
            });
        }
        if part_images == 0 {
            return Err(FinetuneError::Settings(
                "the view cache needs at least one image per part".into(),
            ));
        }
        let settings = match kind {
            CacheKind::Views => ExtractSettings::finetune_views(pipeline),
            CacheKind::Validation => ExtractSettings::plain(pipeline, FeaturePart::Frozen),
        };
        settings.feature_shape()?;
        let parts = match kind {
            CacheKind::Views => data.len().div_ceil(part_images).max(1),
            CacheKind::Validation => 1,
        };
        Ok(Self {
            kind,
            settings,
            data,
            weights_sha256: weights_sha256.to_string(),
            path: pipeline.layout().finetune().join(kind.file_name()),
            parts,
            batch_size: pipeline.bottleneck.batch_size,
        })
    }

    /// Which cache.
    pub fn kind(&self) -> CacheKind {
        self.kind
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The extraction settings (the frozen part, views, preprocessing, ...).
    pub fn settings(&self) -> &ExtractSettings {
        &self.settings
    }

    /// The number of parts the cache is built in.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The number of rows (images × views).
    pub fn rows(&self) -> usize {
        self.data.len() * self.settings.rows_per_image()
    }

    /// The folder holding the finished parts of a build in progress (`views.parts/`).
    pub fn parts_dir(&self) -> PathBuf {
        self.path.with_extension("parts")
    }

    fn shard(&self, index: usize) -> Shard {
        Shard {
            index,
            count: self.parts,
        }
    }

    /// The file of part `index` (1-based) of a multi-part build.
    pub fn part_path(&self, index: usize) -> PathBuf {
        feature_path(
            &self.parts_dir(),
            self.kind.feature_file(),
            Some(self.shard(index)),
        )
    }

    /// The description stored in the cache (or in one part of it).
    fn meta(&self, shard: Option<Shard>) -> Result<FeatureMeta> {
        let (c, h, w) = self.settings.feature_shape()?;
        Ok(FeatureMeta {
            format: FEATURES_FORMAT,
            split: self.data.split,
            classes: self.data.classes.clone(),
            files: self.data.relative.clone(),
            holds: self.settings.describe(),
            settings: self.settings.clone(),
            weights_sha256: self.weights_sha256.clone(),
            feature_shape: [c, h, w],
            data_digest: self.data.digest.clone(),
            shard: shard.map(|s| {
                let r = s.range(self.data.len());
                ShardMeta {
                    index: s.index,
                    count: s.count,
                    start: r.start,
                    end: r.end,
                }
            }),
        })
    }

    /// The provenance of the cache (or of one part of it).
    pub fn provenance(&self, shard: Option<Shard>) -> Provenance {
        features_provenance(
            self.kind.feature_file(),
            &self.settings,
            shard,
            &self.data.digest,
            &self.weights_sha256,
        )
    }

    /// Whether the cache file is missing, up to date, or stale (and why).
    pub fn freshness(&self) -> Result<Freshness> {
        Ok(check_fresh(&self.path, &self.provenance(None))?)
    }

    /// Whether part `index` is finished and current (for a single-part cache: the cache).
    pub fn part_is_done(&self, index: usize) -> Result<bool> {
        if self.parts == 1 {
            return Ok(self.freshness()? == Freshness::UpToDate);
        }
        let fresh = check_fresh(
            &self.part_path(index),
            &self.provenance(Some(self.shard(index))),
        )?;
        Ok(fresh == Freshness::UpToDate)
    }

    /// The extractor computing this cache's rows with `backbone`.
    pub fn extractor(&self, backbone: &Backbone) -> Result<Extractor> {
        Ok(Extractor::new(backbone.clone(), self.settings.clone())?)
    }

    /// Computes part `index` (1-based) and writes it atomically (a single-part cache is
    /// written to the cache file itself), advancing `progress` by its rows.
    pub fn build_part(
        &self,
        extractor: &Extractor,
        index: usize,
        progress: &ProgressBar,
        interrupt: Option<&Interrupt>,
    ) -> Result<RunStats> {
        if !(1..=self.parts).contains(&index) {
            return Err(FinetuneError::Settings(format!(
                "part {index} of a cache in {} parts",
                self.parts
            )));
        }
        let (shard, dest) = if self.parts == 1 {
            (None, self.path.clone())
        } else {
            (Some(self.shard(index)), self.part_path(index))
        };
        let meta = self.meta(shard)?;
        let mut metadata = meta.to_metadata();
        metadata.extend(self.provenance(shard).to_metadata());
        let job = Job {
            files: &self.data.files,
            images: meta.image_range(),
            batch_size: self.batch_size,
        };
        extract_to_file(
            extractor,
            &job,
            &self.data.labels,
            &metadata,
            &dest,
            self.kind.dtype(),
            progress,
            interrupt,
        )
        .map_err(|e| match e {
            FeaturesError::Interrupted { .. } => FinetuneError::Interrupted {
                path: self.path.clone(),
            },
            other => other.into(),
        })
    }

    /// Removes whatever in the parts folder is not a finished, current part of this build
    /// (parts of a build with other data or settings, temp files of a killed run); removes
    /// the folder altogether for a single-part cache.
    fn remove_stale_parts(&self) -> Result<()> {
        let dir = self.parts_dir();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| FinetuneError::Output {
                path,
                reason: e.to_string(),
            }
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let current: BTreeSet<PathBuf> = if self.parts > 1 {
            (1..=self.parts)
                .filter_map(|i| match self.part_is_done(i) {
                    Ok(true) => Some(Ok(self.part_path(i))),
                    Ok(false) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_>>()?
        } else {
            BTreeSet::new()
        };
        for entry in entries {
            let path = entry.map_err(io(&dir))?.path();
            if current.contains(&path) {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            } else {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        if self.parts == 1 {
            std::fs::remove_dir(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// Builds the cache with `backbone` unless it is up to date: computes the parts not yet
    /// finished (a progress bar when `progress`), merges them into the cache file and removes
    /// the parts. A stop request ends the build after the current batch with
    /// [`FinetuneError::Interrupted`], keeping the finished parts.
    pub fn build(
        &self,
        backbone: &Backbone,
        progress: bool,
        interrupt: Option<&Interrupt>,
    ) -> Result<CacheOutcome> {
        if self.freshness()? == Freshness::UpToDate {
            return Ok(CacheOutcome::UpToDate);
        }
        let started = Instant::now();
        self.remove_stale_parts()?;
        let extractor = self.extractor(backbone)?;
        let per_image = self.settings.rows_per_image();
        let mut todo = Vec::new();
        let mut reused_rows = 0;
        for index in 1..=self.parts {
            if self.parts > 1 && self.part_is_done(index)? {
                reused_rows += self.shard(index).range(self.data.len()).len() * per_image;
            } else {
                todo.push(index);
            }
        }
        let parts_reused = self.parts - todo.len();
        let bar = progress_bar(progress, self.rows(), self.kind.label());
        bar.set_position(reused_rows as u64);
        let mut rows = 0;
        for index in todo {
            let stats = self.build_part(&extractor, index, &bar, interrupt);
            if stats.is_err() {
                bar.abandon();
            }
            rows += stats?.rows;
        }
        bar.finish_and_clear();
        if self.parts > 1 {
            let dir = self.parts_dir();
            let merged = merge_file(
                &dir,
                self.kind.feature_file(),
                &self.settings,
                &MergeOptions {
                    force: true,
                    keep_shards: false,
                },
            )?;
            std::fs::rename(&merged.path, &self.path).map_err(|e| FinetuneError::Output {
                path: self.path.clone(),
                reason: format!("cannot move {} into place: {e}", merged.path.display()),
            })?;
            std::fs::remove_dir(&dir).map_err(|e| FinetuneError::Output {
                path: dir.clone(),
                reason: format!("cannot remove the parts folder: {e}"),
            })?;
        }
        Ok(CacheOutcome::Built(CacheStats {
            rows,
            parts_reused,
            seconds: started.elapsed().as_secs_f64(),
        }))
    }

    /// Reads the cache onto `device`: `features` `[rows, C, h, w]` (in its stored dtype) and
    /// `labels` `[rows]` u32, after checking that it is the cache this plan describes.
    pub fn load(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let bad = |reason: String| FinetuneError::Cache {
            path: self.path.clone(),
            reason,
        };
        match self.freshness()? {
            Freshness::UpToDate => {}
            Freshness::Missing => return Err(bad("missing; build it first".into())),
            Freshness::Stale(why) => return Err(bad(format!("out of date ({why})"))),
        }
        let (meta, _) = FeatureMeta::read(&self.path)?;
        if meta != self.meta(None)? {
            return Err(bad(
                "its description does not match its provenance; delete it to rebuild".into(),
            ));
        }
        let (mut tensors, _) = artifact::load_tensors(&self.path, &["features", "labels"], device)?;
        let (Some(features), Some(labels)) = (tensors.remove("features"), tensors.remove("labels"))
        else {
            return Err(bad("missing `features` or `labels`".into()));
        };
        meta.check_shapes(&self.path, features.dims(), labels.dims())?;
        if labels.dtype() != DType::U32 {
            return Err(bad(format!("`labels` is {:?}, not U32", labels.dtype())));
        }
        Ok((features, labels))
    }
}
