//! Training the top model on cached features and writing `<data.artifacts>/top/`:
//! `model.safetensors` (the weights `top.*`, the model spec, provenance), `metrics.json`,
//! and the engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::Provenance;
use candle_core::Device;
use candle_nn::VarMap;
use engine::stage::{self, FitSummary, StageDir, StageFit, StageOptions, StageOutcome};
use engine::{BatchSource, Metric, Params, TensorSource};
use imagedata::ClassMode;
use models::{Architecture, ModelSpec, TopModel, TopModelConfig};
use pipeline::Pipeline;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TopError};
use crate::features::{FeaturePair, Features};
use crate::views::ViewSource;

/// The stage's output folder, `<artifacts>/top`.
pub fn top_dir(artifacts: &Path) -> PathBuf {
    artifacts.join("top")
}

/// The settings that determine a trained top model besides its features: `[top]` (less
/// `kfold`), the seed, and `extra` (the stage's flags).
pub fn training_settings(pipeline: &Pipeline, extra: serde_json::Value) -> serde_json::Value {
    let t = &pipeline.top;
    serde_json::json!({
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "optimizer": t.optimizer,
        "early_stopping_patience": t.early_stopping_patience,
        "monitor": Metric::from(t.monitor).name(),
        "seed": pipeline.data.seed,
        "extra": extra,
    })
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

/// `top/metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Training samples per epoch (images).
    pub train_samples: usize,
    /// Validation samples.
    pub validation_samples: usize,
    /// Whether training used cached augmented views.
    pub use_augmented: bool,
    /// The device trained on (empty in files written before it was recorded).
    #[serde(default)]
    pub device: String,
    /// `completed` or `early_stopped`.
    pub status: String,
    /// The last and best epochs, and the saved model's validation figures.
    #[serde(flatten)]
    pub summary: FitSummary,
    /// Seconds of training, validation included.
    pub seconds: f64,
}

/// What the stage did.
pub type TopOutcome = StageOutcome<MetricsFile>;

/// The stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TopReport {
    /// The output folder.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub model: PathBuf,
    /// What happened.
    pub outcome: TopOutcome,
}

/// Checks `data.class_mode` against the number of classes.
pub(crate) fn check_class_mode(pipeline: &Pipeline, classes: &[String]) -> Result<()> {
    match pipeline.data.class_mode {
        Some(ClassMode::Binary) if classes.len() != 2 => Err(TopError::Settings(format!(
            "data.class_mode = \"binary\" needs exactly 2 classes, the features have {}: {:?}",
            classes.len(),
            classes
        ))),
        Some(ClassMode::None) => Err(TopError::Settings(
            "data.class_mode = \"none\" gives no labels to train on".into(),
        )),
        // Two classes are always one sigmoid unit (the same model as a two-way softmax).
        _ => Ok(()),
    }
}

/// The model spec of a top model trained on `features`.
pub(crate) fn spec_for(features: &Features) -> Result<ModelSpec> {
    let m = &features.header.meta;
    let [h, w] = m.settings.target_size;
    Ok(ModelSpec::new(
        Architecture::Vgg16Top,
        m.classes.clone(),
        (h as usize, w as usize),
        m.settings.preprocessing,
        Some(m.weights_sha256.clone()),
    )?)
}

/// A fresh top model for `spec` in a new variable map, initialised from `rng`.
pub(crate) fn build_top(
    spec: &ModelSpec,
    feature_shape: [usize; 3],
    rng: &mut rand_chacha::ChaCha8Rng,
    device: &Device,
) -> Result<(TopModel, VarMap)> {
    let [c, h, w] = feature_shape;
    if spec.top_feature_shape() != Some((c, h, w)) {
        return Err(TopError::Settings(format!(
            "features of shape [{c}, {h}, {w}] do not fit a top model for {}x{} images",
            spec.target_size.0, spec.target_size.1
        )));
    }
    let varmap = VarMap::new();
    let model = TopModel::new(
        &varmap,
        TopModelConfig {
            feature_shape: (c, h, w),
            units: spec.units,
        },
        rng,
        device,
    )?;
    Ok((model, varmap))
}

/// Runs the `train-top` stage: unless `top/model.safetensors` is up to date with the features
/// and the `[top]` settings, trains the top model on the cached features (validating on the
/// validation features every epoch) and writes the output folder. The saved model holds the
/// weights of the best epoch by `top.monitor`.
pub fn train_top(pipeline: &Pipeline, options: &TopOptions) -> Result<TopReport> {
    let out = StageDir::new(top_dir(&pipeline.data.artifacts));
    let o = &options.stage;
    let report = |outcome| TopReport {
        dir: out.dir.clone(),
        model: out.model.clone(),
        outcome,
    };
    let (train_header, validation_header) = FeaturePair::headers(pipeline, options.use_augmented)?;
    check_class_mode(pipeline, &train_header.meta.classes)?;
    let settings = training_settings(
        pipeline,
        serde_json::json!({ "use_augmented": options.use_augmented }),
    );
    let provenance = Provenance::new(crate::STAGE, artifact::sha256_json(&settings))
        .input("train_features", &train_header.digest)
        .input("validation_features", &validation_header.digest);
    if stage::retrain_reason(&out.model, &provenance, o.force)?.is_none() {
        return Ok(report(StageOutcome::UpToDate(out.read_metrics())));
    }

    let device = &o.device;
    let train = Features::load(train_header, device)?;
    let validation = Features::load(validation_header, device)?;
    let spec = spec_for(&train)?;
    let seed = pipeline.data.seed;
    let mut rng = imagedata::rng::stream(seed, "top-init");
    let (model, varmap) = build_top(&spec, train.header.meta.feature_shape, &mut rng, device)?;
    let params = Params::all_trainable(&varmap)?;
    let batch_size = pipeline.top.batch_size;
    let mut train_source: Box<dyn BatchSource> = match &train.header.meta.settings.views {
        Some(v) => Box::new(ViewSource::new(
            train.x.clone(),
            train.labels.clone(),
            v.count,
            batch_size,
            seed,
        )?),
        None => Box::new(
            TensorSource::new(train.x.clone(), train.labels.clone(), batch_size)?.shuffled(seed),
        ),
    };
    let mut validation_source =
        TensorSource::new(validation.x.clone(), validation.labels.clone(), batch_size)?;

    let spec_meta = stage::spec_metadata(&spec, None);
    let config = o.fit_config(&pipeline.top.schedule(), seed, &out.dir, spec_meta.clone());
    let started = Instant::now();
    let fitted = match stage::fit_keep_best(
        &model,
        &params,
        train_source.as_mut(),
        &mut validation_source,
        &config,
    )? {
        StageFit::Finished(fitted) => fitted,
        StageFit::Interrupted { epoch, batch } => {
            return Ok(report(StageOutcome::Interrupted { epoch, batch }));
        }
    };
    let evaluation = engine::evaluate(&model, &mut validation_source)?;
    let metrics = MetricsFile {
        classes: spec.classes.clone(),
        train_samples: train_source.num_samples(),
        validation_samples: validation.rows(),
        use_augmented: options.use_augmented,
        device: pipeline::describe_device(device),
        status: fitted.status.into(),
        summary: fitted.summary(&evaluation),
        seconds: started.elapsed().as_secs_f64(),
    };
    let meta = metrics
        .summary
        .model_metadata(spec_meta, &provenance, "top");
    out.save(&metrics, &params, &meta)?;
    Ok(report(StageOutcome::Trained(metrics)))
}
