//! The `finetune` stage: VGG16 block 5 and the trained top model, fine-tuned with SGD on the
//! frozen blocks' outputs, writing `<data.artifacts>/finetune/`: `model.safetensors` (block 5
//! and the top, best epoch, `vgg16_finetune` model spec, provenance), `metrics.json`, and the
//! engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::{Freshness, Metadata, Provenance, check_fresh};
use candle_core::Device;
use candle_nn::VarMap;
use engine::{
    BatchSource, EarlyStopping, EpochRecord, FitConfig, FitStatus, FlowSource, Interrupt, Params,
    TensorSource, Verbosity,
};
use extract::{Split, SplitData};
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, TargetSize};
use models::{Architecture, ModelSpec, Vgg16, Vgg16Top, resolve_vgg16_weights};
use pipeline::Pipeline;
use serde::{Deserialize, Serialize};
use train_top::{BestEpoch, ViewSource};

use crate::cache::{CacheKind, CacheOutcome, CachePlan, DEFAULT_PART_IMAGES, finetune_dir};
use crate::error::{FinetuneError, Result};
use crate::source::Block4Source;
use crate::top::{TopRequirements, TrainedTop, top_model_path};

/// How the training stream is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingMode {
    /// Each epoch trains on one cached augmented view per image (`views.safetensors`), so the
    /// frozen blocks 1–4 run once per view instead of once per image per epoch.
    ViewCache,
    /// The post's exact semantics: every batch is freshly augmented and run through the whole
    /// network (blocks 1–4 forward only).
    Live,
}

impl TrainingMode {
    /// The name in reports (`view_cache`, `live`).
    pub fn name(self) -> &'static str {
        match self {
            TrainingMode::ViewCache => "view_cache",
            TrainingMode::Live => "live",
        }
    }

    /// The mode `pipeline` asks for (`finetune.view_cache`), or live when `live` is set.
    pub fn choose(pipeline: &Pipeline, live: bool) -> Self {
        if live || !pipeline.finetune.view_cache {
            TrainingMode::Live
        } else {
            TrainingMode::ViewCache
        }
    }
}

/// How to run the stage (besides the pipeline file).
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    /// Live augmentation through the whole network, whatever `finetune.view_cache` says.
    pub live: bool,
    /// VGG16 weights file (overrides `bottleneck.weights`; unset: the usual resolution).
    pub weights: Option<PathBuf>,
    /// Train even when the model is up to date (caches are rebuilt only when stale: they are
    /// a deterministic function of their inputs).
    pub force: bool,
    /// Continue an interrupted run from `finetune/checkpoints/last.safetensors`.
    pub resume: bool,
    /// Where to compute.
    pub device: Device,
    /// Console output of the training loop.
    pub verbosity: Verbosity,
    /// Progress bars and notes while caches are built (on stderr).
    pub progress: bool,
    /// A stop request checked after every batch (cache building and training).
    pub interrupt: Option<Interrupt>,
    /// Training images per part of the view cache.
    pub part_images: usize,
}

impl FinetuneOptions {
    /// Defaults on `device`: the pipeline's mode, no force, no resume, progress bars.
    pub fn new(device: Device) -> Self {
        Self {
            live: false,
            weights: None,
            force: false,
            resume: false,
            device,
            verbosity: Verbosity::Bar,
            progress: true,
            interrupt: None,
            part_images: DEFAULT_PART_IMAGES,
        }
    }
}

/// What happened to one cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheReport {
    /// Which cache.
    pub kind: CacheKind,
    /// Where it is.
    pub path: PathBuf,
    /// Rows it holds.
    pub rows: usize,
    /// Why it was built (`missing`, what changed), when it was.
    pub reason: Option<String>,
    /// What happened.
    pub outcome: CacheOutcome,
}

/// `finetune/metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// How the training stream was made.
    pub mode: TrainingMode,
    /// Cached views per training image (view-cache mode).
    pub views: Option<usize>,
    /// The device trained on.
    pub device: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Training images per epoch.
    pub train_samples: usize,
    /// Validation images.
    pub validation_samples: usize,
    /// `completed` or `early_stopped`.
    pub status: String,
    /// Epochs run (those before a resume included).
    pub epochs: usize,
    /// The last epoch's figures.
    pub final_epoch: EpochRecord,
    /// The best epoch by `finetune.monitor`.
    pub best: Option<BestEpoch>,
    /// The epoch whose weights `model.safetensors` holds (the best one).
    pub saved_epoch: usize,
    /// Validation loss of the saved model.
    pub saved_val_loss: f64,
    /// Validation accuracy of the saved model.
    pub saved_val_acc: f64,
    /// The saved model's validation confusion matrix, `[true][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Mean wall-clock seconds per epoch, validation included.
    pub seconds_per_epoch: f64,
    /// Training images per second over a whole epoch (`train_samples / seconds_per_epoch`).
    pub train_images_per_second: f64,
    /// Seconds this run spent building caches (0 when they were up to date).
    pub cache_seconds: f64,
    /// Seconds this run spent in the training loop.
    pub training_seconds: f64,
}

/// What the stage did.
#[derive(Debug, Clone, PartialEq)]
pub enum FinetuneOutcome {
    /// The model was up to date; its metrics, when `metrics.json` could be read.
    UpToDate(Option<MetricsFile>),
    /// A model was trained.
    Trained(MetricsFile),
    /// A stop was requested during training; a checkpoint to resume from was saved, no model
    /// was written.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

/// The stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FinetuneReport {
    /// The output folder.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub model: PathBuf,
    /// How the training stream is made.
    pub mode: TrainingMode,
    /// The caches used (validation, then the views in view-cache mode); empty when the model
    /// was up to date.
    pub caches: Vec<CacheReport>,
    /// What happened.
    pub outcome: FinetuneOutcome,
}

/// The settings that determine the fine-tuned model besides its inputs (data, weights, top
/// model): `[finetune]` (less `view_cache`, which `mode` replaces, and `views` in live mode),
/// the seed, the image size and resampling, and the preprocessing.
pub fn training_settings(pipeline: &Pipeline, mode: TrainingMode) -> serde_json::Value {
    let f = &pipeline.finetune;
    serde_json::json!({
        "epochs": f.epochs,
        "batch_size": f.batch_size,
        "optimizer": f.optimizer,
        "augment": f.augment,
        "early_stopping_patience": f.early_stopping_patience,
        "monitor": engine::Metric::from(f.monitor).name(),
        "seed": pipeline.data.seed,
        "target_size": pipeline.data.target_size,
        "interpolation": pipeline.data.interpolation,
        "preprocessing": pipeline.bottleneck.preprocessing,
        "mode": mode.name(),
        "views": (mode == TrainingMode::ViewCache).then_some(f.views),
    })
}

/// The file recording what an interrupted run was made from, so that `--resume` refuses to
/// continue it with other settings or inputs (the number of epochs may change).
const RUN_FILE: &str = "run.json";

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunRecord {
    mode: TrainingMode,
    settings_digest: String,
    inputs: BTreeMap<String, String>,
}

impl RunRecord {
    fn new(pipeline: &Pipeline, mode: TrainingMode, provenance: &Provenance) -> Self {
        let mut settings = training_settings(pipeline, mode);
        if let Some(map) = settings.as_object_mut() {
            map.remove("epochs");
        }
        Self {
            mode,
            settings_digest: artifact::sha256_json(&settings),
            inputs: provenance.inputs.clone(),
        }
    }

    fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| FinetuneError::Output {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        artifact::atomic_write(path, json.as_bytes())?;
        Ok(())
    }

    /// Checks that the run recorded at `path` is this one.
    fn check(&self, path: &Path) -> Result<()> {
        let refuse = |reason: String| FinetuneError::Resume {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| refuse(format!("no record of the interrupted run ({e})")))?;
        let stored: RunRecord = serde_json::from_str(&text)
            .map_err(|e| refuse(format!("unreadable record of the interrupted run ({e})")))?;
        if stored.mode != self.mode {
            return Err(refuse(format!(
                "the interrupted run trained in {} mode, this one in {} mode",
                stored.mode.name(),
                self.mode.name()
            )));
        }
        let as_provenance = |r: &RunRecord| Provenance {
            stage: crate::STAGE.into(),
            config_digest: r.settings_digest.clone(),
            inputs: r.inputs.clone(),
        };
        match as_provenance(self).difference(&as_provenance(&stored)) {
            None => Ok(()),
            Some(why) if why == "settings changed" => Err(refuse(
                "settings other than `finetune.epochs` changed since it started".into(),
            )),
            Some(why) => Err(refuse(why)),
        }
    }
}

fn read_metrics(path: &Path) -> Option<MetricsFile> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Builds `plan`'s cache unless it is up to date, and reports what happened.
fn build_cache(
    plan: &CachePlan<'_>,
    vgg: &Vgg16,
    options: &FinetuneOptions,
) -> Result<CacheReport> {
    let reason = match plan.freshness()? {
        Freshness::UpToDate => None,
        Freshness::Missing => Some("missing".to_string()),
        Freshness::Stale(why) => Some(why),
    };
    if options.progress
        && let Some(why) = &reason
    {
        eprintln!(
            "{}: computing {} rows of VGG16 blocks 1-4 ({why}) into {}",
            plan.kind().label(),
            plan.rows(),
            plan.path().display()
        );
    }
    let outcome = plan.build(vgg, options.progress, options.interrupt.as_ref())?;
    Ok(CacheReport {
        kind: plan.kind(),
        path: plan.path().to_path_buf(),
        rows: plan.rows(),
        reason,
        outcome,
    })
}

/// The training images, freshly augmented every epoch, through the frozen blocks.
fn live_source(
    pipeline: &Pipeline,
    train: &SplitData,
    vgg: &Vgg16,
    device: &Device,
) -> Result<Block4Source<FlowSource>> {
    let generator = ImageDataGenerator::new(
        pipeline.finetune.augment.clone(),
        pipeline.bottleneck.preprocessing,
    )
    .map_err(|e| FinetuneError::Settings(format!("finetune.augment: {e}")))?;
    let [h, w] = pipeline.data.target_size;
    let directory = DirectoryOptions {
        target_size: TargetSize::new(h, w),
        interpolation: pipeline.data.interpolation,
        class_mode: if train.classes.len() == 2 {
            ClassMode::Binary
        } else {
            ClassMode::Categorical
        },
        classes: Some(train.classes.clone()),
        ..Default::default()
    };
    let flow_options = FlowOptions {
        batch_size: pipeline.finetune.batch_size,
        shuffle: true,
        seed: pipeline.data.seed,
        device: device.clone(),
        ..Default::default()
    };
    let (flow, _) = generator.flow_from_directory(&train.root, &directory, flow_options, None)?;
    Ok(Block4Source::new(FlowSource::new(flow)?, vgg.clone()))
}

/// Runs the `finetune` stage: unless `finetune/model.safetensors` is up to date with the data,
/// the VGG16 weights, the trained top model and the settings, builds (or reuses) the caches of
/// the frozen blocks' outputs, initialises block 5 from the pretrained weights and the top
/// from `top/model.safetensors`, trains both with the `[finetune]` settings (validating every
/// epoch) and writes the output folder. The saved model holds the best epoch's weights by
/// `finetune.monitor`.
pub fn finetune(pipeline: &Pipeline, options: &FinetuneOptions) -> Result<FinetuneReport> {
    let artifacts = &pipeline.data.artifacts;
    let dir = finetune_dir(artifacts);
    let model_path = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.json");
    let run_path = dir.join(RUN_FILE);
    let mode = TrainingMode::choose(pipeline, options.live);
    let device = &options.device;
    let report = |caches, outcome| FinetuneReport {
        dir: dir.clone(),
        model: model_path.clone(),
        mode,
        caches,
        outcome,
    };

    let train = SplitData::scan(&pipeline.data.dir, Split::Train)?;
    let validation = SplitData::scan(&pipeline.data.dir, Split::Validation)?;
    train.check_same_classes(&validation)?;
    let weights = resolve_vgg16_weights(
        options
            .weights
            .as_deref()
            .or(pipeline.bottleneck.weights.as_deref()),
    )?;
    let [h, w] = pipeline.data.target_size;
    let target_size = (h as usize, w as usize);
    let preprocessing = pipeline.bottleneck.preprocessing;
    let top = TrainedTop::load(
        &top_model_path(artifacts),
        &TopRequirements {
            classes: &train.classes,
            target_size,
            preprocessing,
            vgg16_sha256: &weights.sha256,
        },
        device,
    )?;

    let settings = training_settings(pipeline, mode);
    let provenance = Provenance::new(crate::STAGE, artifact::sha256_json(&settings))
        .input("train_data", &train.digest)
        .input("validation_data", &validation.digest)
        .input("weights", &weights.sha256)
        .input("top_model", &top.sha256);
    if !options.force
        && !options.resume
        && check_fresh(&model_path, &provenance)? == Freshness::UpToDate
    {
        return Ok(report(
            Vec::new(),
            FinetuneOutcome::UpToDate(read_metrics(&metrics_path)),
        ));
    }
    let run = RunRecord::new(pipeline, mode, &provenance);
    if options.resume {
        run.check(&run_path)?;
    }

    let vgg = Vgg16::load_resolved(&weights, device)?;
    let f = &pipeline.finetune;
    let seed = pipeline.data.seed;

    // The caches: validation's block-4 outputs in both modes, the augmented views in
    // view-cache mode.
    let mut caches = Vec::new();
    let validation_plan = CachePlan::new(
        CacheKind::Validation,
        pipeline,
        &validation,
        &weights.sha256,
        options.part_images,
    )?;
    caches.push(build_cache(&validation_plan, &vgg, options)?);
    let views_plan = match mode {
        TrainingMode::ViewCache => Some(CachePlan::new(
            CacheKind::Views,
            pipeline,
            &train,
            &weights.sha256,
            options.part_images,
        )?),
        TrainingMode::Live => None,
    };
    if let Some(plan) = &views_plan {
        caches.push(build_cache(plan, &vgg, options)?);
    }
    let cache_seconds: f64 = caches
        .iter()
        .map(|c| match c.outcome {
            CacheOutcome::Built(stats) => stats.seconds,
            CacheOutcome::UpToDate => 0.0,
        })
        .sum();

    let (vx, vlabels) = validation_plan.load(device)?;
    let mut validation_source = TensorSource::new(vx, vlabels, f.batch_size)?;
    let mut train_source: Box<dyn BatchSource> = match &views_plan {
        Some(plan) => {
            let (x, labels) = plan.load(device)?;
            Box::new(ViewSource::new(x, labels, f.views, f.batch_size, seed)?)
        }
        None => Box::new(live_source(pipeline, &train, &vgg, device)?),
    };

    // Block 5 from the pretrained weights, the top from the trained top model.
    let varmap = VarMap::new();
    let mut rng = imagedata::rng::stream(seed, "finetune-init");
    let network = Vgg16Top::new(&varmap, &vgg, target_size, top.spec.units, &mut rng, device)?;
    models::load_varmap(
        &varmap,
        &top.tensors,
        &top.path,
        &format!("{}.", models::TopModel::PREFIX),
    )?;
    let params = Params::all_trainable(&varmap)?;

    let spec = ModelSpec::new(
        Architecture::Vgg16Finetune,
        top.spec.classes.clone(),
        target_size,
        preprocessing,
        Some(weights.sha256.clone()),
    )?;
    let mut spec_meta = Metadata::new();
    spec.insert_into(&mut spec_meta);
    spec_meta.insert(
        engine::INTERPOLATION_KEY.into(),
        serde_json::to_string(&pipeline.data.interpolation).unwrap_or_default(),
    );
    let metric = engine::Metric::from(f.monitor);
    let mut config = FitConfig::new(f.epochs, seed, f.optimizer.clone());
    config.out_dir = Some(dir.clone());
    config.resume = options.resume;
    config.keep_best = Some(metric);
    config.early_stopping = f.early_stopping_patience.map(|patience| EarlyStopping {
        monitor: metric,
        patience,
        min_delta: 0.0,
    });
    config.verbosity = options.verbosity;
    config.interrupt = options.interrupt.clone();
    config.weights_metadata = spec_meta.clone();
    if !options.resume {
        run.write(&run_path)?;
    }

    let started = Instant::now();
    let outcome = engine::fit(
        &network,
        &params,
        train_source.as_mut(),
        Some(&mut validation_source),
        &config,
    )?;
    let training_seconds = started.elapsed().as_secs_f64();
    let status = match outcome.status {
        FitStatus::Interrupted { epoch, batch } => {
            return Ok(report(
                caches,
                FinetuneOutcome::Interrupted { epoch, batch },
            ));
        }
        FitStatus::Completed => "completed",
        FitStatus::EarlyStopped { .. } => "early_stopped",
    };
    let final_epoch = outcome
        .history
        .last()
        .cloned()
        .ok_or_else(|| FinetuneError::Settings("training ran no epoch".into()))?;
    let best_path = dir.join("checkpoints").join("best.safetensors");
    let saved_epoch = match &outcome.best {
        Some(best) if best_path.exists() => {
            params.load(&best_path)?;
            best.epoch
        }
        _ => final_epoch.epoch,
    };
    let evaluation = engine::evaluate(&network, &mut validation_source)?;
    let epochs = outcome.history.epochs.len();
    let seconds_per_epoch = outcome
        .history
        .epochs
        .iter()
        .map(|e| e.seconds)
        .sum::<f64>()
        / epochs.max(1) as f64;
    let train_samples = train_source.num_samples();
    let metrics = MetricsFile {
        mode,
        views: (mode == TrainingMode::ViewCache).then_some(f.views),
        device: pipeline::describe_device(device),
        classes: spec.classes.clone(),
        train_samples,
        validation_samples: validation.len(),
        status: status.into(),
        epochs,
        final_epoch,
        best: outcome.best.map(|b| BestEpoch {
            metric: b.metric.name().into(),
            value: b.value,
            epoch: b.epoch,
        }),
        saved_epoch,
        saved_val_loss: evaluation.loss,
        saved_val_acc: evaluation.acc,
        confusion_matrix: evaluation.confusion_matrix(),
        seconds_per_epoch,
        train_images_per_second: if seconds_per_epoch > 0.0 {
            train_samples as f64 / seconds_per_epoch
        } else {
            0.0
        },
        cache_seconds,
        training_seconds,
    };
    let json = serde_json::to_string_pretty(&metrics).map_err(|e| FinetuneError::Output {
        path: metrics_path.clone(),
        reason: e.to_string(),
    })?;
    artifact::atomic_write(&metrics_path, json.as_bytes())?;
    // The model goes last: its provenance marks the folder as complete.
    let mut meta = spec_meta;
    meta.extend(provenance.to_metadata());
    meta.insert("finetune.mode".into(), mode.name().into());
    meta.insert("finetune.epoch".into(), saved_epoch.to_string());
    meta.insert("finetune.val_acc".into(), evaluation.acc.to_string());
    meta.insert("finetune.val_loss".into(), evaluation.loss.to_string());
    params.save(&model_path, &meta)?;
    Ok(report(caches, FinetuneOutcome::Trained(metrics)))
}
