//! Training the small convnet and writing `<data.artifacts>/small_cnn/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use artifact::Provenance;
use candle_core::Device;
use candle_nn::VarMap;
use engine::stage::{self, FitSummary, StageDir, StageFit, StageOptions, StageOutcome};
use engine::{BatchIter, BatchSource, EpochRecord, Params, Wrap, Wrapped};
use extract::SplitData;
use imagedata::{ClassMode, FlowOptions, ImageDataGenerator};
use models::{Architecture, ModelSpec, SmallCnn, SmallCnnConfig};
use pipeline::Pipeline;
use serde::{Deserialize, Serialize};

use crate::data::{load_flow, resolve_class_mode};
use crate::error::{Result, TrainError};

/// The record tying `checkpoints/last.safetensors` to its data and settings.
const RUN_FILE: &str = "run.json";
/// Batches the image flows prepare ahead of the training loop.
const PREFETCH: usize = 2;

/// The stage's output folder, `<artifacts>/small_cnn`.
pub fn small_cnn_dir(artifacts: &Path) -> PathBuf {
    artifacts.join("small_cnn")
}

/// The settings that determine a trained model besides its images: every `[small_cnn]` key
/// and the `[data]` keys that change what the network sees (`target_size`, `interpolation`,
/// `class_mode`, `seed`). The folder paths are left out: the images are digested by content,
/// so moving the project does not make the model stale.
pub fn training_settings(pipeline: &Pipeline) -> serde_json::Value {
    let d = &pipeline.data;
    serde_json::json!({
        "target_size": d.target_size,
        "interpolation": d.interpolation,
        "class_mode": d.class_mode,
        "seed": d.seed,
        "small_cnn": pipeline.small_cnn,
    })
}

/// The identity of a run for resuming: the settings less those a resumed run may change
/// (`epochs`, `early_stopping_patience`, `monitor`), and the images.
fn run_identity(pipeline: &Pipeline, train: &SplitData, validation: &SplitData) -> String {
    let mut settings = training_settings(pipeline);
    if let Some(s) = settings
        .get_mut("small_cnn")
        .and_then(serde_json::Value::as_object_mut)
    {
        for key in ["epochs", "early_stopping_patience", "monitor"] {
            s.remove(key);
        }
    }
    artifact::sha256_json(&serde_json::json!({
        "settings": settings,
        "train_data": train.digest,
        "validation_data": validation.digest,
    }))
}

/// `checkpoints/run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RunRecord {
    stage: String,
    run: String,
}

/// How to run the stage (besides the pipeline file).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// What every training stage takes: force, resume, device, console output, stop request.
    pub stage: StageOptions,
    /// Show a progress bar while the images are decoded.
    pub progress: bool,
}

impl TrainOptions {
    /// Defaults on `device`: no force, no resume, progress bars, no stop request.
    pub fn new(device: Device) -> Self {
        Self {
            stage: StageOptions::new(device),
            progress: true,
        }
    }
}

/// How long the epochs run by one invocation took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The epochs timed (those run by this invocation; a resumed partial epoch counts with the
    /// time spent on it before the interruption).
    pub epochs: usize,
    /// Mean wall-clock seconds per epoch, training and validation.
    pub seconds_per_epoch: f64,
    /// Mean seconds per epoch spent training (augmentation, forward, backward, update).
    pub train_seconds_per_epoch: f64,
    /// Mean seconds per epoch spent validating.
    pub validation_seconds_per_epoch: f64,
    /// Training images per second (`train_samples / train_seconds_per_epoch`).
    pub train_images_per_second: f64,
    /// Validation images per second.
    pub validation_images_per_second: f64,
}

/// `small_cnn/metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Class names in label order.
    pub classes: Vec<String>,
    /// `binary` (one sigmoid unit) or `categorical` (softmax).
    pub class_mode: ClassMode,
    /// `[height, width]` of the network's input.
    pub target_size: [u32; 2],
    /// Training images per epoch.
    pub train_samples: usize,
    /// Validation images.
    pub validation_samples: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The device trained on.
    pub device: String,
    /// `completed` or `early_stopped`.
    pub status: String,
    /// Epochs in the history.
    pub epochs: usize,
    /// The last and best epochs, and the saved model's validation figures.
    #[serde(flatten)]
    pub summary: FitSummary,
    /// Epoch times and throughput of this invocation (`None` when it ran no epoch).
    pub timing: Option<Timing>,
    /// Wall-clock seconds of this invocation, loading the images included.
    pub seconds: f64,
}

/// What the stage did.
pub type TrainOutcome = StageOutcome<Metrics>;

/// The stage's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// The output folder.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub model: PathBuf,
    /// Why the model was (re)trained (`missing`, what changed, `--force`); `None` when it was
    /// up to date.
    pub reason: Option<String>,
    /// Seconds spent scanning, digesting and decoding the images.
    pub data_seconds: f64,
    /// What happened.
    pub outcome: TrainOutcome,
}

/// Wall-clock time spent in the passes over a wrapped source ([`Wrapped`]), each measured from
/// the request for the pass until its iterator is dropped (so the consumer's work on the
/// batches counts).
#[derive(Debug, Default)]
struct Clock {
    seconds: f64,
    passes: usize,
}

struct TimedIter<'a> {
    inner: BatchIter<'a>,
    clock: &'a mut Clock,
    started: Instant,
}

impl Iterator for TimedIter<'_> {
    type Item = engine::Result<engine::Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl Drop for TimedIter<'_> {
    fn drop(&mut self) {
        self.clock.seconds += self.started.elapsed().as_secs_f64();
        self.clock.passes += 1;
    }
}

impl<S: BatchSource> Wrap<S> for Clock {
    fn epoch_from<'a>(
        &'a mut self,
        inner: &'a mut S,
        epoch: usize,
        skip: usize,
    ) -> engine::Result<BatchIter<'a>> {
        let started = Instant::now();
        let inner = inner.epoch_from(epoch, skip)?;
        Ok(Box::new(TimedIter {
            inner,
            clock: self,
            started,
        }))
    }
}

/// Checks, before resuming, that the checkpoint in `dir` was made from the same images and
/// settings (less the epochs, early stopping and monitor, which a resumed run may change).
fn check_resumable(dir: &Path, identity: &str) -> Result<()> {
    let checkpoints = dir.join("checkpoints");
    let record_path = checkpoints.join(RUN_FILE);
    if !record_path.exists() {
        let last = checkpoints.join("last.safetensors");
        if last.exists() {
            return Err(TrainError::Resume {
                path: last,
                reason: format!("{RUN_FILE}, which records what it was trained on, is missing"),
            });
        }
        // No checkpoint at all: the engine says so.
        return Ok(());
    }
    let text = std::fs::read_to_string(&record_path).map_err(|e| TrainError::Resume {
        path: record_path.clone(),
        reason: e.to_string(),
    })?;
    let record: RunRecord = serde_json::from_str(&text).map_err(|e| TrainError::Resume {
        path: record_path.clone(),
        reason: format!("not a run record: {e}"),
    })?;
    if record.stage != crate::STAGE || record.run != identity {
        return Err(TrainError::Resume {
            path: checkpoints.join("last.safetensors"),
            reason: "it was trained on other images or with other settings (only \
                     small_cnn.epochs, small_cnn.early_stopping_patience and small_cnn.monitor \
                     may change between a run and its resumption)"
                .into(),
        });
    }
    Ok(())
}

/// Runs the `train-small` stage: unless `small_cnn/model.safetensors` is up to date with the
/// images and the settings (or `force` is set), trains the small convnet and writes the output
/// folder. The saved model holds the weights of the best epoch by `small_cnn.monitor`.
pub fn train_small(pipeline: &Pipeline, options: &TrainOptions) -> Result<TrainReport> {
    let started = Instant::now();
    let out = StageDir::new(small_cnn_dir(&pipeline.data.artifacts));
    let o = &options.stage;
    let (train, validation) = SplitData::scan_pair(&pipeline.data.dir)?;
    let class_mode = resolve_class_mode(pipeline.data.class_mode, &train.classes)?;
    let s = &pipeline.small_cnn;
    let target_size = pipeline.data.target_size;
    let [h, w] = target_size;
    let spec = ModelSpec::new(
        Architecture::SmallCnn,
        train.classes.clone(),
        (h as usize, w as usize),
        s.preprocessing,
        None,
    )?;
    let provenance = Provenance::new(
        crate::STAGE,
        artifact::sha256_json(&training_settings(pipeline)),
    )
    .input("train_data", &train.digest)
    .input("validation_data", &validation.digest);
    let report = |reason, data_seconds, outcome| TrainReport {
        dir: out.dir.clone(),
        model: out.model.clone(),
        reason,
        data_seconds,
        outcome,
    };
    let Some(reason) = stage::retrain_reason(&out.model, &provenance, o.force)? else {
        return Ok(report(
            None,
            started.elapsed().as_secs_f64(),
            StageOutcome::UpToDate(out.read_metrics()),
        ));
    };
    let identity = run_identity(pipeline, &train, &validation);
    if o.resume {
        check_resumable(&out.dir, &identity)?;
    }

    let device = &o.device;
    let seed = pipeline.data.seed;
    let generator = ImageDataGenerator::new(s.augment.clone(), s.preprocessing)
        .map_err(|e| TrainError::Settings(format!("small_cnn.augment: {e}")))?;
    let flow_options = |shuffle| FlowOptions {
        batch_size: s.batch_size,
        shuffle,
        seed,
        prefetch: PREFETCH,
        device: device.clone(),
        ..FlowOptions::default()
    };
    let interpolation = pipeline.data.interpolation;
    let mut train_source = load_flow(
        &train,
        target_size,
        interpolation,
        generator,
        flow_options(true),
        options.progress,
    )?;
    let mut validation_source = Wrapped::new(
        load_flow(
            &validation,
            target_size,
            interpolation,
            ImageDataGenerator::preprocessing_only(s.preprocessing),
            flow_options(false),
            options.progress,
        )?,
        Clock::default(),
    );
    let data_seconds = started.elapsed().as_secs_f64();
    o.note(&format!(
        "Training the small convnet ({reason}): {} training and {} validation images of \
         {h}x{w}, {} classes ({}), {}, on {}",
        train.len(),
        validation.len(),
        spec.classes.len(),
        spec.classes.join(", "),
        if spec.is_binary() {
            "one sigmoid unit"
        } else {
            "softmax"
        },
        pipeline::describe_device(device)
    ));

    let varmap = VarMap::new();
    let mut rng = imagedata::rng::stream(seed, crate::INIT_STREAM);
    let model = SmallCnn::new(
        &varmap,
        SmallCnnConfig {
            input_size: (h as usize, w as usize),
            units: spec.units,
        },
        &mut rng,
        device,
    )?;
    let params = Params::all_trainable(&varmap)?;
    let spec_meta = stage::spec_metadata(&spec, Some(interpolation));
    let config = o.fit_config(&s.schedule(), seed, &out.dir, spec_meta.clone());
    if !o.resume {
        stage::write_json(
            &out.dir.join("checkpoints").join(RUN_FILE),
            &RunRecord {
                stage: crate::STAGE.into(),
                run: identity,
            },
        )?;
    }
    let fitted = match stage::fit_keep_best(
        &model,
        &params,
        &mut train_source,
        &mut validation_source,
        &config,
    )? {
        StageFit::Finished(fitted) => fitted,
        StageFit::Interrupted { epoch, batch } => {
            return Ok(report(
                Some(reason),
                data_seconds,
                StageOutcome::Interrupted { epoch, batch },
            ));
        }
    };
    let timing = timing(
        &fitted.history.epochs,
        &validation_source.wrap,
        train.len(),
        validation.len(),
    );
    let evaluation = engine::evaluate(&model, &mut validation_source.inner)?;
    let metrics = Metrics {
        classes: spec.classes.clone(),
        class_mode,
        target_size,
        train_samples: train.len(),
        validation_samples: validation.len(),
        batch_size: s.batch_size,
        device: pipeline::describe_device(device),
        status: fitted.status.into(),
        epochs: fitted.history.epochs.len(),
        summary: fitted.summary(&evaluation),
        timing,
        seconds: started.elapsed().as_secs_f64(),
    };
    let meta = metrics
        .summary
        .model_metadata(spec_meta, &provenance, "small_cnn");
    out.save(&metrics, &params, &meta)?;
    Ok(report(
        Some(reason),
        data_seconds,
        StageOutcome::Trained(metrics),
    ))
}

/// The timing of the epochs this invocation ran: the last `clock.passes` records of the
/// history (each finished epoch validates once).
fn timing(
    history: &[EpochRecord],
    clock: &Clock,
    train_samples: usize,
    validation_samples: usize,
) -> Option<Timing> {
    let n = clock.passes.min(history.len());
    if n == 0 {
        return None;
    }
    let total: f64 = history[history.len() - n..].iter().map(|r| r.seconds).sum();
    let per_epoch = total / n as f64;
    let validation = clock.seconds / n as f64;
    let training = (per_epoch - validation).max(f64::MIN_POSITIVE);
    Some(Timing {
        epochs: n,
        seconds_per_epoch: per_epoch,
        train_seconds_per_epoch: training,
        validation_seconds_per_epoch: validation,
        train_images_per_second: train_samples as f64 / training,
        validation_images_per_second: if validation > 0.0 {
            validation_samples as f64 / validation
        } else {
            0.0
        },
    })
}
