//! Training the top model on cached features and writing `<data.artifacts>/top/`:
//! `model.safetensors` (the weights `top.*`, the model spec, provenance), `metrics.json`,
//! and the engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use candle_nn::VarMap;
use engine::{BatchSource, Params, TensorSource};
use features::{FeatureMeta, FeaturePair, Features, Header, ViewSource};
use imagedata::rng::names;
use models::{Architecture, BackboneRef, ModelSpec, TopModel};
use pipeline::{Layout, Pipeline, layout};
use stage::{Built, Plan, Result, StageError, StageOptions, StageReport, Trainer};

/// The spec of a top model trained on features described by `meta`, with the pipeline's
/// `[top]` layers.
pub fn spec_for(meta: &FeatureMeta, pipeline: &Pipeline) -> Result<ModelSpec> {
    let [h, w] = meta.settings.target_size;
    Ok(ModelSpec::new(
        Architecture::Top,
        meta.classes.clone(),
        (h as usize, w as usize),
        meta.settings.preprocessing,
        Some(BackboneRef {
            kind: meta.settings.backbone,
            sha256: meta.weights_sha256.clone(),
        }),
        Some(pipeline.top.layers()),
    )?)
}

/// A fresh top model for `spec` in a new variable map, initialised from `rng`.
pub(crate) fn build_top(
    spec: &ModelSpec,
    rng: &mut rand_chacha::ChaCha8Rng,
    device: &Device,
) -> Result<(TopModel, VarMap)> {
    let config = spec
        .top_config()
        .ok_or_else(|| StageError::Settings("the top model needs a backbone's features".into()))?;
    let varmap = VarMap::new();
    let model = TopModel::new(&varmap, config, rng, device)?;
    Ok((model, varmap))
}

/// The top model as a stage: trained on `train.safetensors` (or, with `use_augmented`, one
/// cached augmented view per image per epoch from `train_augmented.safetensors`), validated on
/// `validation.safetensors`.
#[derive(Debug, Default)]
pub struct TopTrainer {
    /// Train on the cached augmented views instead of the plain training features.
    pub use_augmented: bool,
    headers: Option<(Header, Header)>,
}

impl TopTrainer {
    /// A trainer on plain or (`use_augmented`) augmented features.
    pub fn new(use_augmented: bool) -> Self {
        Self {
            use_augmented,
            headers: None,
        }
    }
}

impl Trainer for TopTrainer {
    const STAGE: &'static str = layout::stage::TRAIN_TOP;
    const KEY: &'static str = "top";

    fn dir(layout: &Layout) -> PathBuf {
        layout.top()
    }

    fn plan(&mut self, pipeline: &Pipeline, _options: &StageOptions) -> Result<Plan> {
        let (train, validation) =
            FeaturePair::headers(pipeline, self.use_augmented).map_err(StageError::other)?;
        let meta = &train.meta;
        let class_mode = stage::class_mode(pipeline.data.class_mode, &meta.classes)?;
        let t = &pipeline.top;
        let plan = Plan {
            spec: spec_for(meta, pipeline)?,
            class_mode,
            interpolation: meta.settings.interpolation,
            schedule: t.schedule(),
            batch_size: t.batch_size,
            settings: serde_json::json!({
                "batch_size": t.batch_size,
                "hidden_units": t.hidden_units,
                "dropout": t.dropout,
                "use_augmented": self.use_augmented,
            }),
            inputs: vec![
                ("train_features".into(), train.digest.clone()),
                ("validation_features".into(), validation.digest.clone()),
            ],
        };
        self.headers = Some((train, validation));
        Ok(plan)
    }

    fn build(
        &mut self,
        pipeline: &Pipeline,
        plan: &Plan,
        options: &StageOptions,
        _reason: &str,
    ) -> Result<Built> {
        let (train, validation) = self
            .headers
            .take()
            .ok_or_else(|| StageError::Settings("the top model was built before planned".into()))?;
        let device = &options.device;
        let train = Features::load(train, device).map_err(StageError::other)?;
        let validation = Features::load(validation, device).map_err(StageError::other)?;
        let seed = pipeline.data.seed;
        let mut rng = imagedata::rng::stream(seed, names::TOP_INIT);
        let (model, varmap) = build_top(&plan.spec, &mut rng, device)?;
        let params = Params::all_trainable(&varmap)?;
        let batch_size = plan.batch_size;
        let train_source: Box<dyn BatchSource> = match &train.header.meta.settings.views {
            Some(v) => Box::new(ViewSource::new(
                train.x.clone(),
                train.labels.clone(),
                v.count,
                batch_size,
                seed,
            )?),
            None => Box::new(
                TensorSource::new(train.x.clone(), train.labels.clone(), batch_size)?
                    .shuffled(seed),
            ),
        };
        let validation_source =
            TensorSource::new(validation.x.clone(), validation.labels.clone(), batch_size)?;
        let details = BTreeMap::from([(
            "use_augmented".to_string(),
            serde_json::json!(self.use_augmented),
        )]);
        Ok(Built {
            network: Box::new(model),
            params,
            train: train_source,
            validation: Box::new(validation_source),
            details,
        })
    }
}

/// How to run the stage (besides the pipeline file).
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// What every training stage takes: force, resume, device, console output, stop request.
    pub stage: StageOptions,
    /// Train on `train_augmented.safetensors` (one cached augmented view per image per epoch)
    /// instead of `train.safetensors`.
    pub use_augmented: bool,
}

impl TopOptions {
    /// Defaults on `device`: plain features, no force, no resume, a progress bar.
    pub fn new(device: Device) -> Self {
        Self {
            stage: StageOptions::new(device),
            use_augmented: false,
        }
    }
}

/// Runs the `train-top` stage: unless `top/model.safetensors` is up to date with the features
/// and the `[top]` settings, trains the top model on the cached features (validating on the
/// validation features every epoch) and writes the output folder. The saved model holds the
/// weights of the best epoch by `top.monitor`.
pub fn train_top(pipeline: &Pipeline, options: &TopOptions) -> Result<StageReport> {
    stage::run(
        &mut TopTrainer::new(options.use_augmented),
        pipeline,
        &options.stage,
    )
}
