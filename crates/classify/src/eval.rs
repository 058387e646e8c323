//! `classify evaluate`: accuracy, loss, confusion matrix and per-class precision, recall and
//! F1 of a model on a labelled folder.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use engine::{BatchIter, BatchSource, Evaluation, FlowSource, TensorSource};
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use models::{BackboneKind, GradCam, Head, Model, Network};
use stage::{EvalReport, Mistake, class_scores};

use crate::error::{ClassifyError, Result};
use crate::model::{LoadedModel, Tempered};
use crate::reuse::{self, CachedRows, FeatureLookup, FeaturePlan};

/// The smallest probability the test-time-augmented loss takes the logarithm of (Keras'
/// `epsilon`), so that a confidently wrong prediction gives a large, finite loss.
const PROBABILITY_FLOOR: f64 = 1e-7;

/// How to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images per forward batch.
    pub batch_size: usize,
    /// Average each image's probabilities with its left-right mirror's.
    pub tta: bool,
    /// Progress bars on stderr (when it is a terminal).
    pub progress: bool,
    /// Apply the model's calibration (its temperature), when it has one.
    pub calibrated: bool,
    /// Where to look for cached backbone outputs of the folder's images, read instead of
    /// running the backbone again when they match (see [`crate::reuse`]).
    pub features: FeatureLookup,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            tta: false,
            progress: true,
            calibrated: true,
            features: FeatureLookup::default(),
        }
    }
}

/// Checks that the class subfolders of `data` are the model's classes.
pub fn check_classes(data: &Path, model: &LoadedModel) -> Result<()> {
    let found = imagedata::folder::list_class_dirs(data)?;
    let expected = &model.spec.classes;
    if &found == expected {
        return Ok(());
    }
    let missing: Vec<&String> = expected.iter().filter(|c| !found.contains(c)).collect();
    let extra: Vec<&String> = found.iter().filter(|c| !expected.contains(c)).collect();
    let mut detail = Vec::new();
    if !missing.is_empty() {
        detail.push(format!("no folder for {missing:?}"));
    }
    if !extra.is_empty() {
        detail.push(format!("folders the model does not know: {extra:?}"));
    }
    Err(ClassifyError::ClassMismatch {
        path: data.to_path_buf(),
        reason: format!(
            "its classes {found:?} differ from the model's {expected:?} ({}): {}",
            model.path.display(),
            detail.join("; ")
        ),
    })
}

/// A batch source that advances a progress bar by each batch's size.
pub(crate) struct Counted<'a> {
    pub(crate) inner: &'a mut dyn BatchSource,
    pub(crate) bar: &'a ProgressBar,
}

impl BatchSource for Counted<'_> {
    fn num_samples(&self) -> usize {
        self.inner.num_samples()
    }

    fn num_batches(&self) -> usize {
        self.inner.num_batches()
    }

    fn epoch(&mut self, epoch: usize) -> engine::Result<BatchIter<'_>> {
        let bar = self.bar;
        Ok(Box::new(self.inner.epoch(epoch)?.inspect(move |b| {
            if let Ok(b) = b {
                bar.inc(b.len() as u64);
            }
        })))
    }
}

pub(crate) fn bar(show: bool, len: usize, prefix: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos:>6}/{len:6} images  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64).with_style(style);
    bar.set_prefix(prefix.to_string());
    bar
}

/// The loss, accuracy and predictions with test-time augmentation: each image's probabilities
/// are the mean of its own and its mirror's; the loss is the cross-entropy of those means.
fn evaluate_tta(
    model: &LoadedModel,
    network: &dyn Network,
    source: &mut dyn BatchSource,
) -> Result<Evaluation> {
    let classes = model.spec.classes.len();
    let mut out = Evaluation {
        loss: 0.0,
        acc: 0.0,
        classes,
        labels: Vec::new(),
        predicted: Vec::new(),
        probabilities: Vec::new(),
    };
    let mut loss_sum = 0.0f64;
    for batch in source.epoch(0)? {
        let batch = batch?;
        let labels = batch.labels.to_vec1::<u32>()?;
        let rows = crate::model::probabilities(network, &batch.x, true)?.to_vec2::<f32>()?;
        for (row, &label) in rows.iter().zip(&labels) {
            let p = row.get(label as usize).copied().unwrap_or(0.0);
            loss_sum -= f64::from(p).max(PROBABILITY_FLOOR).ln();
            out.predicted.push(engine::argmax(row) as u32);
        }
        out.labels.extend(labels);
        out.probabilities.extend(rows);
    }
    let n = out.labels.len();
    if n == 0 {
        return Err(engine::EngineError::Data {
            what: "evaluation data".into(),
            reason: "no samples".into(),
        }
        .into());
    }
    let correct = out
        .labels
        .iter()
        .zip(&out.predicted)
        .filter(|(a, b)| a == b)
        .count();
    out.loss = loss_sum / n as f64;
    out.acc = correct as f64 / n as f64;
    Ok(out)
}

/// The labelled folder `data` as a batch source for `model` (its classes checked, its images
/// resized and preprocessed as the artifact records, in a fixed order), with the image paths
/// in that order.
pub(crate) fn labelled_source(
    model: &LoadedModel,
    data: &Path,
    options: &EvalOptions,
) -> Result<(FlowSource, Vec<PathBuf>)> {
    check_classes(data, model)?;
    let spec = &model.spec;
    let generator = ImageDataGenerator::preprocessing_only(spec.preprocessing);
    let directory = DirectoryOptions {
        target_size: model.target_size(),
        interpolation: model.interpolation,
        class_mode: ClassMode::Categorical,
        classes: Some(spec.classes.clone()),
        ..DirectoryOptions::default()
    };
    let flow_options = FlowOptions {
        batch_size: options.batch_size.max(1),
        shuffle: false,
        device: model.device.clone(),
        ..FlowOptions::default()
    };
    let loading = bar(options.progress, 0, "loading");
    let on_progress = |p: Progress| {
        loading.set_length(p.total as u64);
        loading.set_position(p.done as u64);
    };
    let loaded = generator.flow_from_directory(data, &directory, flow_options, Some(&on_progress));
    loading.finish_and_clear();
    let (flow, _) = loaded?;
    let source = FlowSource::new(flow)?;
    let paths = source.flow().image_set().paths().to_vec();
    Ok((source, paths))
}

/// Evaluates `model` on the labelled folder `data` (one subfolder per class, the model's
/// classes exactly), resizing and preprocessing the images as the artifact records.
///
/// When features cached for these very images match the model (its backbone, weights, input
/// size, resize filter and preprocessing; looked for as `options.features` says, see
/// [`crate::reuse`]), they are read instead and only the network after them runs: the same
/// predictions, and probabilities and loss equal within float rounding.
/// [`EvalReport::features`] says which it was.
///
/// An image that cannot be decoded is an error naming it: scores over a silently smaller set
/// would not be comparable.
pub fn evaluate(model: &LoadedModel, data: &Path, options: &EvalOptions) -> Result<EvalReport> {
    let plan = reuse::plan(
        &model.path,
        &model.spec,
        model.interpolation,
        data,
        None,
        options.tta,
        &options.features,
    );
    evaluate_planned(model, data, options, &plan)
}

/// The network after the cached part of `model`: the top model on the backbone's features,
/// or the fine-tuned tail and top on the frozen part's outputs.
pub(crate) fn head_network(model: &LoadedModel) -> Result<&dyn Network> {
    match &model.model {
        Model::Pretrained(c) => Ok(match c.head() {
            Head::Top(top) => top,
            Head::Finetune(net) => net,
        }),
        Model::SmallCnn(_) => Err(ClassifyError::NotAModel {
            path: model.path.clone(),
            reason: "cached features stand for a pretrained backbone, and the small convnet \
                     has none"
                .into(),
        }),
    }
}

/// [`evaluate`] with the features already planned (`plan`).
pub(crate) fn evaluate_planned(
    model: &LoadedModel,
    data: &Path,
    options: &EvalOptions,
    plan: &FeaturePlan,
) -> Result<EvalReport> {
    let temperature = options
        .calibrated
        .then(|| model.applied_temperature())
        .flatten();
    let (evaluation, paths, cached) = match plan {
        FeaturePlan::Cached(header) => {
            check_classes(data, model)?;
            let rows = reuse::load(header, data, &model.device)?;
            let network = Tempered::new(head_network(model)?, temperature.unwrap_or(1.0));
            let mut source = TensorSource::new(
                rows.x.clone(),
                rows.labels.clone(),
                options.batch_size.max(1),
            )?;
            let running = bar(options.progress, source.num_samples(), "classifying");
            let evaluation = engine::evaluate(
                &network,
                &mut Counted {
                    inner: &mut source,
                    bar: &running,
                },
            );
            running.finish_and_clear();
            let paths = rows.paths.clone();
            (evaluation?, paths, Some(rows))
        }
        FeaturePlan::Computed(_) => {
            let (mut source, paths) = labelled_source(model, data, options)?;
            let running = bar(options.progress, source.num_samples(), "classifying");
            let network = Tempered::new(&model.model, temperature.unwrap_or(1.0));
            let evaluation = {
                let mut counted = Counted {
                    inner: &mut source,
                    bar: &running,
                };
                if options.tta {
                    evaluate_tta(model, &network, &mut counted)
                } else {
                    engine::evaluate(&network, &mut counted).map_err(ClassifyError::from)
                }
            };
            running.finish_and_clear();
            (evaluation?, paths, None)
        }
    };
    let mut report = report(model, data, options.tta, &evaluation, &paths);
    report.temperature = temperature;
    report.features = Some(plan.source());
    let rows: Vec<usize> = (0..evaluation.labels.len())
        .filter(|&i| evaluation.labels[i] != evaluation.predicted[i])
        .collect();
    explain_mistakes(model, &mut report.mistakes, &rows, cached.as_ref(), options)?;
    Ok(report)
}

/// Whether the top model of a backbone of `kind` sees its last feature map globally pooled
/// (as `models::Classifier::grad_cam_tensors` does it: every backbone but VGG16).
fn pools_feature_map(kind: BackboneKind) -> bool {
    kind != BackboneKind::Vgg16
}

/// The Grad-CAM of `class` for the cached rows `rows` of `cached`, when the feature map it
/// explains can be had from them: a top model on VGG16 (its features are the block-5 map),
/// a fine-tuned model (its tail runs on the frozen part's outputs). `None` for a top model on
/// pooled features, whose map was pooled away before caching.
fn cams_from_cache(
    model: &LoadedModel,
    cached: &CachedRows,
    rows: &[usize],
    class: usize,
) -> Result<Option<Vec<GradCam>>> {
    let Model::Pretrained(classifier) = &model.model else {
        return Ok(None);
    };
    let pool = pools_feature_map(classifier.backbone().kind());
    let index = Tensor::new(
        rows.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        cached.x.device(),
    )?;
    let selected = cached.x.index_select(&index, 0)?;
    let (map, top) = match classifier.head() {
        Head::Top(_) if pool => return Ok(None),
        Head::Top(top) => (selected, top),
        Head::Finetune(net) => (net.tail().feature_map(&selected)?, net.top()),
    };
    let cams = models::gradcam::grad_cam_tensors(&map, class, |a| {
        if pool {
            top.forward_eval(&a.mean((2, 3))?)
        } else {
            top.forward_eval(a)
        }
    })?;
    Ok(Some(cams.maps()?))
}

/// Records on each of `mistakes` (rows `rows` of the evaluation) the Grad-CAM of its
/// predicted class, when the model can be explained (nothing otherwise), a batch per
/// predicted class. The feature map comes from the `cached` rows when they hold it (see
/// [`cams_from_cache`]); otherwise the mistakes' images are read again, resized and
/// preprocessed as for the evaluation, and run through the network. Only the mistakes are,
/// so the cost stays a few dozen images'.
fn explain_mistakes(
    model: &LoadedModel,
    mistakes: &mut [Mistake],
    rows: &[usize],
    cached: Option<&CachedRows>,
    options: &EvalOptions,
) -> Result<()> {
    if mistakes.is_empty() || !model.model.supports_grad_cam() {
        return Ok(());
    }
    let classes = &model.spec.classes;
    let running = bar(options.progress, mistakes.len(), "explaining");
    for (class, name) in classes.iter().enumerate() {
        let indices: Vec<usize> = (0..mistakes.len())
            .filter(|&i| &mistakes[i].predicted == name)
            .collect();
        for chunk in indices.chunks(options.batch_size.max(1)) {
            let from_cache = match cached {
                Some(cached) => {
                    let chunk_rows: Vec<usize> = chunk.iter().map(|&i| rows[i]).collect();
                    cams_from_cache(model, cached, &chunk_rows, class)?
                }
                None => None,
            };
            let cams = match from_cache {
                Some(cams) => cams,
                None => {
                    let images = chunk
                        .iter()
                        .map(|&i| {
                            imagedata::load_resized(
                                &mistakes[i].image,
                                model.target_size(),
                                model.interpolation,
                                &imagedata::Limits::default(),
                            )
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    let x = imagedata::images_to_tensor(
                        &images,
                        &model.spec.preprocessing,
                        &model.device,
                    )?;
                    model.model.grad_cam(&x, class)?
                }
            };
            for (&i, cam) in chunk.iter().zip(cams) {
                mistakes[i].cam = Some(cam);
            }
            running.inc(chunk.len() as u64);
        }
    }
    running.finish_and_clear();
    Ok(())
}

/// The report of an evaluation over the images `paths` (in the evaluation's order).
fn report(
    model: &LoadedModel,
    data: &Path,
    tta: bool,
    e: &Evaluation,
    paths: &[PathBuf],
) -> EvalReport {
    let classes = model.spec.classes.clone();
    let confusion_matrix = e.confusion_matrix();
    let (per_class, macro_avg, weighted_avg) = class_scores(&classes, &confusion_matrix);
    let name = |i: u32| classes.get(i as usize).cloned().unwrap_or_default();
    let mistakes = e
        .labels
        .iter()
        .zip(&e.predicted)
        .enumerate()
        .filter(|(_, (t, p))| t != p)
        .map(|(i, (&t, &p))| Mistake {
            image: paths.get(i).cloned().unwrap_or_default(),
            actual: name(t),
            predicted: name(p),
            probability: e
                .probabilities
                .get(i)
                .and_then(|r| r.get(p as usize))
                .copied()
                .unwrap_or(0.0),
            cam: None,
        })
        .collect();
    let correct = e.labels.len()
        - e.labels
            .iter()
            .zip(&e.predicted)
            .filter(|(t, p)| t != p)
            .count();
    EvalReport {
        model: model.path.clone(),
        architecture: model.spec.architecture.name().into(),
        data: data.to_path_buf(),
        classes,
        tta,
        temperature: None,
        samples: e.labels.len(),
        correct,
        accuracy: e.acc,
        loss: e.loss,
        confusion_matrix,
        per_class,
        macro_avg,
        weighted_avg,
        mistakes,
        provenance: None,
        features: None,
    }
}
