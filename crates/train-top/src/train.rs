//! Training the top model on cached features and writing `<data.artifacts>/top/`:
//! `model.safetensors` (the weights `top.*`, the model spec, provenance), `metrics.json`,
//! and the engine's `history.csv`, `history.json`, `curves.png` and `checkpoints/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::{Freshness, Metadata, Provenance, check_fresh};
use candle_core::Device;
use candle_nn::VarMap;
use engine::{
    BatchSource, EarlyStopping, EpochRecord, FitConfig, FitStatus, Interrupt, Metric, Params,
    TensorSource, Verbosity,
};
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
    /// Train on `train_augmented.safetensors` (one cached augmented view per image per epoch)
    /// instead of `train.safetensors`.
    pub use_augmented: bool,
    /// Train even when the model is up to date.
    pub force: bool,
    /// Continue an interrupted run from `top/checkpoints/last.safetensors`.
    pub resume: bool,
    /// Where to train.
    pub device: Device,
    /// Console output of the training loop.
    pub verbosity: Verbosity,
    /// A stop request checked after every batch.
    pub interrupt: Option<Interrupt>,
}

impl TopOptions {
    /// Defaults on `device`: plain features, no force, no resume, a progress bar.
    pub fn new(device: Device) -> Self {
        Self {
            use_augmented: false,
            force: false,
            resume: false,
            device,
            verbosity: Verbosity::Bar,
            interrupt: None,
        }
    }
}

/// The best epoch by the monitored metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestEpoch {
    /// The metric (`val_acc` or `val_loss`).
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// The epoch (1-based).
    pub epoch: usize,
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
    /// `completed` or `early_stopped`.
    pub status: String,
    /// The last epoch's figures.
    pub final_epoch: EpochRecord,
    /// The best epoch by the monitored metric.
    pub best: Option<BestEpoch>,
    /// The epoch whose weights `model.safetensors` holds (the best one).
    pub saved_epoch: usize,
    /// Validation loss of the saved model.
    pub saved_val_loss: f64,
    /// Validation accuracy of the saved model.
    pub saved_val_acc: f64,
    /// The saved model's validation confusion matrix, `[true][predicted]`.
    pub confusion_matrix: Vec<Vec<usize>>,
    /// Seconds of training, validation included.
    pub seconds: f64,
}

/// What the stage did.
#[derive(Debug, Clone, PartialEq)]
pub enum TopOutcome {
    /// The model was up to date; its metrics, when `metrics.json` could be read.
    UpToDate(Option<MetricsFile>),
    /// A model was trained.
    Trained(MetricsFile),
    /// A stop was requested; a checkpoint to resume from was saved, no model was written.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// The last batch finished in it.
        batch: usize,
    },
}

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

/// The early stopping `[top]` asks for.
pub(crate) fn early_stopping(pipeline: &Pipeline) -> Option<EarlyStopping> {
    pipeline
        .top
        .early_stopping_patience
        .map(|patience| EarlyStopping {
            monitor: Metric::from(pipeline.top.monitor),
            patience,
            min_delta: 0.0,
        })
}

fn read_metrics(path: &Path) -> Option<MetricsFile> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Runs the `train-top` stage: unless `top/model.safetensors` is up to date with the features
/// and the `[top]` settings, trains the top model on the cached features (validating on the
/// validation features every epoch) and writes the output folder. The saved model holds the
/// weights of the best epoch by `top.monitor`.
pub fn train_top(pipeline: &Pipeline, options: &TopOptions) -> Result<TopReport> {
    let dir = top_dir(&pipeline.data.artifacts);
    let model_path = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.json");
    let (train_header, validation_header) = FeaturePair::headers(pipeline, options.use_augmented)?;
    check_class_mode(pipeline, &train_header.meta.classes)?;
    let settings = training_settings(
        pipeline,
        serde_json::json!({ "use_augmented": options.use_augmented }),
    );
    let provenance = Provenance::new(crate::STAGE, artifact::sha256_json(&settings))
        .input("train_features", &train_header.digest)
        .input("validation_features", &validation_header.digest);
    if !options.force && check_fresh(&model_path, &provenance)? == Freshness::UpToDate {
        return Ok(TopReport {
            dir,
            model: model_path,
            outcome: TopOutcome::UpToDate(read_metrics(&metrics_path)),
        });
    }

    let device = &options.device;
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

    let metric = Metric::from(pipeline.top.monitor);
    let mut spec_meta = Metadata::new();
    spec.insert_into(&mut spec_meta);
    let mut config = FitConfig::new(pipeline.top.epochs, seed, pipeline.top.optimizer.clone());
    config.out_dir = Some(dir.clone());
    config.resume = options.resume;
    config.keep_best = Some(metric);
    config.early_stopping = early_stopping(pipeline);
    config.verbosity = options.verbosity;
    config.interrupt = options.interrupt.clone();
    config.weights_metadata = spec_meta.clone();

    let started = Instant::now();
    let outcome = engine::fit(
        &model,
        &params,
        train_source.as_mut(),
        Some(&mut validation_source),
        &config,
    )?;
    let status = match outcome.status {
        FitStatus::Interrupted { epoch, batch } => {
            return Ok(TopReport {
                dir,
                model: model_path,
                outcome: TopOutcome::Interrupted { epoch, batch },
            });
        }
        FitStatus::Completed => "completed",
        FitStatus::EarlyStopped { .. } => "early_stopped",
    };
    let final_epoch = outcome
        .history
        .last()
        .cloned()
        .ok_or_else(|| TopError::Settings("training ran no epoch".into()))?;
    let best_path = dir.join("checkpoints").join("best.safetensors");
    let saved_epoch = match &outcome.best {
        Some(best) if best_path.exists() => {
            params.load(&best_path)?;
            best.epoch
        }
        _ => final_epoch.epoch,
    };
    let evaluation = engine::evaluate(&model, &mut validation_source)?;
    let metrics = MetricsFile {
        classes: spec.classes.clone(),
        train_samples: train_source.num_samples(),
        validation_samples: validation.rows(),
        use_augmented: options.use_augmented,
        status: status.into(),
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
        seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&metrics).map_err(|e| TopError::Output {
        path: metrics_path.clone(),
        reason: e.to_string(),
    })?;
    artifact::atomic_write(&metrics_path, json.as_bytes())?;
    // The model goes last: its provenance marks the folder as complete.
    let mut meta = spec_meta;
    meta.extend(provenance.to_metadata());
    meta.insert("top.epoch".into(), saved_epoch.to_string());
    meta.insert("top.val_acc".into(), evaluation.acc.to_string());
    meta.insert("top.val_loss".into(), evaluation.loss.to_string());
    params.save(&model_path, &meta)?;
    Ok(TopReport {
        dir,
        model: model_path,
        outcome: TopOutcome::Trained(metrics),
    })
}
