//! The `finetune` stage: VGG16 block 5 and the trained top model, fine-tuned with SGD on the
//! frozen blocks' outputs, writing `<data.artifacts>/finetune/`: `model.safetensors` (block 5
//! and the top, best epoch, `vgg16_finetune` model spec, provenance), `metrics.json`, and the
//! engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::{Freshness, Provenance};
use candle_core::Device;
use candle_nn::VarMap;
use engine::stage::{self, FitSummary, StageDir, StageFit, StageOptions, StageOutcome};
use engine::{BatchSource, FlowSource, Params, TensorSource};
use extract::SplitData;
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, TargetSize};
use models::{Architecture, ModelSpec, Vgg16, Vgg16Top};
use pipeline::Pipeline;
use serde::{Deserialize, Serialize};
use train_top::ViewSource;

use crate::cache::{CacheKind, CacheOutcome, CachePlan, DEFAULT_PART_IMAGES, finetune_dir};
use crate::error::{FinetuneError, Result};
use crate::source::{Block4Source, FrozenBlocks};
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
    /// What every training stage takes: force (caches are rebuilt only when stale: they are a
    /// deterministic function of their inputs), resume, device, console output, and a stop
    /// request (checked while caches are built too).
    pub stage: StageOptions,
    /// Live augmentation through the whole network, whatever `finetune.view_cache` says.
    pub live: bool,
    /// VGG16 weights file (overrides `bottleneck.weights`; unset: the usual resolution).
    pub weights: Option<PathBuf>,
    /// Progress bars and notes while caches are built (on stderr).
    pub progress: bool,
    /// Training images per part of the view cache.
    pub part_images: usize,
}

impl FinetuneOptions {
    /// Defaults on `device`: the pipeline's mode, no force, no resume, progress bars.
    pub fn new(device: Device) -> Self {
        Self {
            stage: StageOptions::new(device),
            live: false,
            weights: None,
            progress: true,
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
    /// The last and best (by `finetune.monitor`) epochs, and the saved model's validation
    /// figures.
    #[serde(flatten)]
    pub summary: FitSummary,
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
pub type FinetuneOutcome = StageOutcome<MetricsFile>;

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
    let outcome = plan.build(vgg, options.progress, options.stage.interrupt.as_ref())?;
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
    Ok(Block4Source::new(
        FlowSource::new(flow)?,
        FrozenBlocks(vgg.clone()),
    ))
}

/// Runs the `finetune` stage: unless `finetune/model.safetensors` is up to date with the data,
/// the VGG16 weights, the trained top model and the settings, builds (or reuses) the caches of
/// the frozen blocks' outputs, initialises block 5 from the pretrained weights and the top
/// from `top/model.safetensors`, trains both with the `[finetune]` settings (validating every
/// epoch) and writes the output folder. The saved model holds the best epoch's weights by
/// `finetune.monitor`.
pub fn finetune(pipeline: &Pipeline, options: &FinetuneOptions) -> Result<FinetuneReport> {
    let artifacts = &pipeline.data.artifacts;
    let out = StageDir::new(finetune_dir(artifacts));
    let o = &options.stage;
    let run_path = out.dir.join(RUN_FILE);
    let mode = TrainingMode::choose(pipeline, options.live);
    let device = &o.device;
    let report = |caches, outcome| FinetuneReport {
        dir: out.dir.clone(),
        model: out.model.clone(),
        mode,
        caches,
        outcome,
    };

    let (train, validation) = SplitData::scan_pair(&pipeline.data.dir)?;
    let weights = extract::resolve_weights(pipeline, options.weights.as_deref())?;
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
    // A resumed run always trains: it continues what the checkpoint holds.
    if stage::retrain_reason(&out.model, &provenance, o.force || o.resume)?.is_none() {
        return Ok(report(
            Vec::new(),
            StageOutcome::UpToDate(out.read_metrics()),
        ));
    }
    let run = RunRecord::new(pipeline, mode, &provenance);
    if o.resume {
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
    let spec_meta = stage::spec_metadata(&spec, Some(pipeline.data.interpolation));
    let config = o.fit_config(&f.schedule(), seed, &out.dir, spec_meta.clone());
    if !o.resume {
        stage::write_json(&run_path, &run)?;
    }

    let started = Instant::now();
    let fitted = match stage::fit_keep_best(
        &network,
        &params,
        train_source.as_mut(),
        &mut validation_source,
        &config,
    )? {
        StageFit::Finished(fitted) => fitted,
        StageFit::Interrupted { epoch, batch } => {
            return Ok(report(caches, StageOutcome::Interrupted { epoch, batch }));
        }
    };
    let training_seconds = started.elapsed().as_secs_f64();
    let evaluation = engine::evaluate(&network, &mut validation_source)?;
    let epochs = fitted.history.epochs.len();
    let seconds_per_epoch =
        fitted.history.epochs.iter().map(|e| e.seconds).sum::<f64>() / epochs.max(1) as f64;
    let train_samples = train_source.num_samples();
    let metrics = MetricsFile {
        mode,
        views: (mode == TrainingMode::ViewCache).then_some(f.views),
        device: pipeline::describe_device(device),
        classes: spec.classes.clone(),
        train_samples,
        validation_samples: validation.len(),
        status: fitted.status.into(),
        epochs,
        summary: fitted.summary(&evaluation),
        seconds_per_epoch,
        train_images_per_second: if seconds_per_epoch > 0.0 {
            train_samples as f64 / seconds_per_epoch
        } else {
            0.0
        },
        cache_seconds,
        training_seconds,
    };
    let mut meta = metrics
        .summary
        .model_metadata(spec_meta, &provenance, "finetune");
    meta.insert("finetune.mode".into(), mode.name().into());
    out.save(&metrics, &params, &meta)?;
    Ok(report(caches, StageOutcome::Trained(metrics)))
}
