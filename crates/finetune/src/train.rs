//! The `finetune` stage as a [`Trainer`]: the backbone's tail and the trained top model,
//! fine-tuned with SGD on the frozen part's outputs, written to `<data.artifacts>/finetune/`:
//! `model.safetensors` (tail and top, best epoch, `finetune` model spec, provenance),
//! `metrics.json`, and the engine's `history.csv`, `history.json`, `curves.png` and
//! `checkpoints/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use artifact::Freshness;
use candle_core::Device;
use candle_nn::VarMap;
use engine::{BatchSource, FlowSource, Params, TensorSource};
use features::ViewSource;
use imagedata::rng::names;
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, SplitData};
use models::{
    Architecture, Backbone, BackboneRef, FinetuneNet, ModelSpec, ResolvedWeights, TopModel,
};
use pipeline::{Layout, Pipeline, layout};
use serde::{Deserialize, Serialize};
use stage::{
    Built, Plan, Result, StageError, StageOptions, StageOutcome, StageReport, TopRequirements,
    TrainedTop, Trainer,
};

use crate::cache::{CacheKind, CacheOutcome, CachePlan, DEFAULT_PART_IMAGES};
use crate::source::{Frozen, FrozenSource};

/// How the training stream is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainingMode {
    /// Each epoch trains on one cached augmented view per image (`views.safetensors`), so the
    /// frozen part runs once per view instead of once per image per epoch.
    ViewCache,
    /// The post's exact semantics: every batch is freshly augmented and run through the whole
    /// network (the frozen part forward only).
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

impl CacheReport {
    /// One line: up to date, or rows built, speed, finished parts reused, why.
    pub fn line(&self) -> String {
        match &self.outcome {
            CacheOutcome::UpToDate => {
                format!(
                    "{}: up to date ({})",
                    self.kind.label(),
                    self.path.display()
                )
            }
            CacheOutcome::Built(stats) => format!(
                "{}: {} rows in {:.1} s, {:.1} rows/s{} ({}; {})",
                self.kind.label(),
                stats.rows,
                stats.seconds,
                stats.rows_per_second(),
                if stats.parts_reused > 0 {
                    format!(", {} finished parts reused", stats.parts_reused)
                } else {
                    String::new()
                },
                self.path.display(),
                self.reason.as_deref().unwrap_or("built")
            ),
        }
    }
}

/// What the plan found, kept for the build.
#[derive(Debug)]
struct Inputs {
    train: SplitData,
    validation: SplitData,
    weights: ResolvedWeights,
    top: TrainedTop,
}

/// Fine-tuning as a stage: the backbone's tail and the trained top model, trained on the
/// frozen part's outputs (cached views, or live augmentation).
#[derive(Debug)]
pub struct FinetuneTrainer {
    /// Live augmentation through the whole network, whatever `finetune.view_cache` says.
    pub live: bool,
    /// The backbone's weights file (overrides `bottleneck.weights`).
    pub weights: Option<PathBuf>,
    /// Training images per part of the view cache.
    pub part_images: usize,
    /// The caches used (validation, then the views in view-cache mode), once built.
    pub caches: Vec<CacheReport>,
    inputs: Option<Inputs>,
}

impl FinetuneTrainer {
    /// A trainer in the pipeline's mode (or live), with the usual weights resolution.
    pub fn new(live: bool, weights: Option<PathBuf>) -> Self {
        Self {
            live,
            weights,
            part_images: DEFAULT_PART_IMAGES,
            caches: Vec::new(),
            inputs: None,
        }
    }
}

/// Builds `plan`'s cache unless it is up to date, and reports what happened.
fn build_cache(
    plan: &CachePlan<'_>,
    backbone: &Backbone,
    options: &StageOptions,
) -> Result<CacheReport> {
    let reason = match plan.freshness().map_err(StageError::from)? {
        Freshness::UpToDate => None,
        Freshness::Missing => Some("missing".to_string()),
        Freshness::Stale(why) => Some(why),
    };
    if options.progress()
        && let Some(why) = &reason
    {
        eprintln!(
            "{}: computing {} rows of the {} frozen part ({why}) into {}",
            plan.kind().label(),
            plan.rows(),
            backbone.kind(),
            plan.path().display()
        );
    }
    let outcome = plan.build(backbone, options.progress(), options.interrupt.as_ref())?;
    Ok(CacheReport {
        kind: plan.kind(),
        path: plan.path().to_path_buf(),
        rows: plan.rows(),
        reason,
        outcome,
    })
}

/// The training images, freshly augmented every epoch, through the frozen part.
fn live_source(
    pipeline: &Pipeline,
    train: &SplitData,
    backbone: &Backbone,
    device: &Device,
) -> Result<FrozenSource<FlowSource>> {
    let b = &pipeline.bottleneck;
    let generator =
        ImageDataGenerator::new(pipeline.finetune.augment.clone(), b.pixel_preprocessing())
            .map_err(|e| StageError::Settings(format!("finetune.augment: {e}")))?;
    let directory = DirectoryOptions {
        target_size: b.target(),
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
    Ok(FrozenSource::new(
        FlowSource::new(flow)?,
        Frozen(backbone.clone()),
    ))
}

impl Trainer for FinetuneTrainer {
    const STAGE: &'static str = layout::stage::FINETUNE;
    const KEY: &'static str = "finetune";

    fn dir(layout: &Layout) -> PathBuf {
        layout.finetune()
    }

    fn plan(&mut self, pipeline: &Pipeline, options: &StageOptions) -> Result<Plan> {
        let b = &pipeline.bottleneck;
        if b.backbone.finetune_split().is_none() {
            return Err(b.backbone.finetune_unsupported().into());
        }
        let (train, validation) = SplitData::scan_pair(&pipeline.data.dir)?;
        let class_mode = stage::class_mode(pipeline.data.class_mode, &train.classes)?;
        let weights = pipeline.resolve_weights(self.weights.as_deref())?;
        let backbone = BackboneRef {
            kind: b.backbone,
            sha256: weights.sha256.clone(),
        };
        let target_size = b.input_hw();
        let preprocessing = b.pixel_preprocessing();
        let top = TrainedTop::load(
            &pipeline.layout().top_model(),
            &TopRequirements {
                classes: &train.classes,
                target_size,
                preprocessing,
                backbone: &backbone,
            },
            &options.device,
        )?;
        let spec = ModelSpec::new(
            Architecture::Finetune,
            top.spec.classes.clone(),
            target_size,
            preprocessing,
            Some(backbone),
            top.spec.top,
        )?;
        let f = &pipeline.finetune;
        let mode = TrainingMode::choose(pipeline, self.live);
        let plan = Plan {
            spec,
            class_mode,
            interpolation: pipeline.data.interpolation,
            schedule: f.schedule(),
            batch_size: f.batch_size,
            settings: serde_json::json!({
                "batch_size": f.batch_size,
                "augment": f.augment,
                "mode": mode.name(),
                "views": (mode == TrainingMode::ViewCache).then_some(f.views),
            }),
            inputs: vec![
                ("train_data".into(), train.digest.clone()),
                ("validation_data".into(), validation.digest.clone()),
                ("weights".into(), weights.sha256.clone()),
                ("top_model".into(), top.sha256.clone()),
            ],
        };
        self.inputs = Some(Inputs {
            train,
            validation,
            weights,
            top,
        });
        Ok(plan)
    }

    fn build(
        &mut self,
        pipeline: &Pipeline,
        plan: &Plan,
        options: &StageOptions,
        _reason: &str,
    ) -> Result<Built> {
        let Inputs {
            train,
            validation,
            weights,
            top,
        } = self
            .inputs
            .take()
            .ok_or_else(|| StageError::Settings("fine-tuning was built before planned".into()))?;
        let device = &options.device;
        let backbone = Backbone::load(pipeline.bottleneck.backbone, &weights, device)?;
        let f = &pipeline.finetune;
        let seed = pipeline.data.seed;
        let mode = TrainingMode::choose(pipeline, self.live);

        // The caches: validation's frozen outputs in both modes, the augmented views in
        // view-cache mode.
        let part_images = self.part_images;
        let plan_cache = |kind, data| {
            CachePlan::new(kind, pipeline, data, &weights.sha256, part_images)
                .map_err(StageError::from)
        };
        let validation_plan = plan_cache(CacheKind::Validation, &validation)?;
        self.caches
            .push(build_cache(&validation_plan, &backbone, options)?);
        let views_plan = match mode {
            TrainingMode::ViewCache => Some(plan_cache(CacheKind::Views, &train)?),
            TrainingMode::Live => None,
        };
        if let Some(plan) = &views_plan {
            self.caches.push(build_cache(plan, &backbone, options)?);
        }
        let cache_seconds: f64 = self
            .caches
            .iter()
            .map(|c| match c.outcome {
                CacheOutcome::Built(stats) => stats.seconds,
                CacheOutcome::UpToDate => 0.0,
            })
            .sum();

        let (vx, vlabels) = validation_plan.load(device)?;
        let validation_source = TensorSource::new(vx, vlabels, f.batch_size)?;
        let train_source: Box<dyn BatchSource> = match &views_plan {
            Some(cache) => {
                let (x, labels) = cache.load(device)?;
                Box::new(ViewSource::new(x, labels, f.views, f.batch_size, seed)?)
            }
            None => Box::new(live_source(pipeline, &train, &backbone, device)?),
        };

        // The tail from the pretrained weights, the top from the trained top model.
        let varmap = VarMap::new();
        let mut rng = imagedata::rng::stream(seed, names::FINETUNE_INIT);
        let config = plan
            .spec
            .top_config()
            .ok_or_else(|| StageError::Settings("fine-tuning needs a top model".into()))?;
        let tail = backbone.tail(&varmap, device)?;
        let network = FinetuneNet::new(tail, TopModel::new(&varmap, config, &mut rng, device)?);
        models::load_varmap(
            &varmap,
            &top.tensors,
            &top.path,
            &format!("{}.", TopModel::PREFIX),
        )?;
        let details = BTreeMap::from([
            ("mode".to_string(), serde_json::json!(mode.name())),
            (
                "views".to_string(),
                serde_json::json!((mode == TrainingMode::ViewCache).then_some(f.views)),
            ),
            (
                "cache_seconds".to_string(),
                serde_json::json!(cache_seconds),
            ),
        ]);
        Ok(Built {
            network: Box::new(network),
            params: Params::all_trainable(&varmap)?,
            train: train_source,
            validation: Box::new(validation_source),
            details,
        })
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
    /// The backbone's weights file (overrides `bottleneck.weights`; unset: the usual
    /// resolution).
    pub weights: Option<PathBuf>,
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
            part_images: DEFAULT_PART_IMAGES,
        }
    }
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
    pub outcome: StageOutcome,
    /// The template's report (the same folder and outcome).
    pub report: StageReport,
}

/// Runs the `finetune` stage: unless `finetune/model.safetensors` is up to date with the data,
/// the backbone's weights, the trained top model and the settings, builds (or reuses) the
/// caches of the frozen part's outputs, initialises the tail from the pretrained weights and
/// the top from `top/model.safetensors`, trains both with the `[finetune]` settings
/// (validating every epoch) and writes the output folder. The saved model holds the best
/// epoch's weights by `finetune.monitor`.
pub fn finetune(pipeline: &Pipeline, options: &FinetuneOptions) -> Result<FinetuneReport> {
    let mut trainer = FinetuneTrainer::new(options.live, options.weights.clone());
    trainer.part_images = options.part_images;
    let report = stage::run(&mut trainer, pipeline, &options.stage)?;
    Ok(FinetuneReport {
        dir: report.dir.clone(),
        model: report.model.clone(),
        mode: TrainingMode::choose(pipeline, options.live),
        caches: trainer.caches,
        outcome: report.outcome.clone(),
        report,
    })
}
