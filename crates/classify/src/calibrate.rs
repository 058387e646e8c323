//! `classify calibrate`: temperature scaling of a model on a labelled folder (the validation
//! split), stored beside the model as `calibration.safetensors` and applied by `predict`,
//! `serve` and `evaluate` from then on.
//!
//! The temperature applied is fitted on every photo of the folder. What the file reports as
//! the calibrated ECE and NLL is never measured on the photos that fitted it: the folder is
//! dealt into two stratified halves (from the seed), a temperature is fitted on each, and
//! each half is scored with the other half's. The temperature is applied only when that
//! cross-fitted NLL is lower than the uncalibrated one (on a handful of photos a fitted
//! temperature can make things worse out of sample; the model is then used as it is).

use std::path::{Path, PathBuf};

use artifact::Freshness;
use candle_core::Tensor;
use engine::calibration::{
    ECE_BINS, cross_fit, ece, fit_temperature, nll, reliability, softmax, softmax_logits,
    stratified_halves,
};
use engine::{BatchSource, TensorSource};
use imagedata::folder::ImageFolder;
use rand::seq::SliceRandom;
use stage::calibration::{calibration_file, provenance};
use stage::{Calibration, FeatureSource};

use crate::error::{ClassifyError, Result};
use crate::eval::{Counted, EvalOptions, bar, check_classes, head_network, labelled_source};
use crate::model::{LoadedModel, model_file};
use crate::reuse::{self, FeaturePlan};

/// The provenance input naming the digest of the cached features a calibration was fitted on.
const FEATURES_INPUT: &str = "features";

/// What [`calibrate_cached`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum CalibrateOutcome {
    /// The file already held this model's calibration on these photos with this seed.
    UpToDate(Calibration, PathBuf),
    /// The model was calibrated and the file written; the logits came from where the
    /// [`FeatureSource`] says.
    Calibrated(Calibration, PathBuf, FeatureSource),
}

impl CalibrateOutcome {
    /// The calibration, stored or new.
    pub fn calibration(&self) -> &Calibration {
        match self {
            Self::UpToDate(c, _) | Self::Calibrated(c, _, _) => c,
        }
    }

    /// The calibration file.
    pub fn path(&self) -> &Path {
        match self {
            Self::UpToDate(_, p) | Self::Calibrated(_, p, _) => p,
        }
    }
}

/// The raw logits of every photo of the labelled folder `data` under `model` (its temperature
/// ignored), with their labels: from the cached features `plan` names (only the network after
/// them runs), or by running the network over the images.
fn logits_and_labels(
    model: &LoadedModel,
    data: &Path,
    options: &EvalOptions,
    plan: &FeaturePlan,
) -> Result<(Vec<Vec<f32>>, Vec<u32>)> {
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    let mut run = |source: &mut dyn BatchSource, forward: &dyn Fn(&Tensor) -> Result<Tensor>| {
        let running = bar(options.progress, source.num_samples(), "calibrating");
        let mut counted = Counted {
            inner: source,
            bar: &running,
        };
        for batch in counted.epoch(0)? {
            let batch = batch?;
            labels.extend(batch.labels.to_vec1::<u32>()?);
            logits.extend(forward(&batch.x)?.to_vec2::<f32>()?);
        }
        running.finish_and_clear();
        Ok::<_, ClassifyError>(())
    };
    match plan {
        FeaturePlan::Cached(header) => {
            check_classes(data, model)?;
            let rows = reuse::load(header, data, &model.device)?;
            let head = head_network(model)?;
            let mut source = TensorSource::new(rows.x, rows.labels, options.batch_size.max(1))?;
            run(&mut source, &|x| Ok(head.forward_eval(x)?))?;
        }
        FeaturePlan::Computed(_) => {
            let (mut source, _) = labelled_source(model, data, options)?;
            run(&mut source, &|x| model.logits(x))?;
        }
    }
    Ok((logits, labels))
}

/// Fits the temperature of `model` on the labelled folder `data` and measures what it does by
/// two-fold cross-fitting (halves drawn from `seed`). `model_sha256` and `data_digest` are
/// recorded. The logits come from cached features when they match (see [`crate::reuse`]).
pub fn calibrate(
    model: &LoadedModel,
    data: &Path,
    data_digest: &str,
    seed: u64,
    options: &EvalOptions,
) -> Result<Calibration> {
    let plan = reuse::plan(
        &model.path,
        &model.spec,
        model.interpolation,
        data,
        Some(data_digest),
        false,
        &options.features,
    );
    calibrate_planned(model, data, data_digest, seed, options, &plan)
}

/// [`calibrate`] with the features already planned (`plan`).
fn calibrate_planned(
    model: &LoadedModel,
    data: &Path,
    data_digest: &str,
    seed: u64,
    options: &EvalOptions,
    plan: &FeaturePlan,
) -> Result<Calibration> {
    let (logits, labels) = logits_and_labels(model, data, options, plan)?;
    let rows = softmax_logits(&logits);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(&mut imagedata::rng::stream(
        seed,
        imagedata::rng::names::CALIBRATION_HALVES,
    ));
    let halves = stratified_halves(&labels, &order);
    let fit = cross_fit(&rows, &labels, &halves);
    let raw: Vec<Vec<f64>> = rows.iter().map(|r| softmax(r, 1.0)).collect();
    let reliability_before = reliability(&raw, &labels, ECE_BINS);
    let reliability_after = reliability(&fit.probabilities, &labels, ECE_BINS);
    let crossed_nll = {
        let n = labels.len().max(1) as f64;
        fit.probabilities
            .iter()
            .zip(&labels)
            .map(|(p, &y)| -p[y as usize].max(1e-300).ln())
            .sum::<f64>()
            / n
    };
    let correct = raw
        .iter()
        .zip(&labels)
        .filter(|(p, y)| engine::argmax(p) == **y as usize)
        .count();
    let nll_before = nll(&rows, &labels, 1.0);
    Ok(Calibration {
        applied: crossed_nll < nll_before,
        method: "temperature".into(),
        temperature: fit_temperature(&rows, &labels),
        model_sha256: model.sha256.clone(),
        data: data.to_path_buf(),
        data_digest: data_digest.to_string(),
        seed,
        samples: labels.len(),
        accuracy: correct as f64 / labels.len().max(1) as f64,
        fold_temperatures: fit.temperatures,
        bins: ECE_BINS,
        ece_before: ece(&reliability_before),
        ece_after: ece(&reliability_after),
        nll_before,
        nll_after: crossed_nll,
        reliability_before,
        reliability_after,
    })
}

/// Calibrates the model artifact at `model` (a stage's folder or its model file) on `data`
/// and writes `calibration.safetensors` beside it, unless that file already holds the
/// calibration of this model file on these photos with this seed (then nothing is loaded).
///
/// `load` opens the model (it receives the artifact file); it runs only when calibrating.
/// When cached features stand for the backbone's output on `data` ([`crate::reuse`]), the
/// logits are computed from them and their digest is part of the calibration's provenance.
pub fn calibrate_cached(
    model: &Path,
    data: &Path,
    seed: u64,
    options: &EvalOptions,
    force: bool,
    load: impl FnOnce(&Path) -> Result<LoadedModel>,
) -> Result<CalibrateOutcome> {
    let file = model_file(model)?;
    let out = calibration_file(&file);
    artifact::remove_stale_temps(out.parent().unwrap_or(Path::new(".")), Some(&out))?;
    let sha256 = artifact::sha256_file(&file)?;
    let data_digest = ImageFolder::scan(data)?.content_digest()?;
    let plan = reuse::plan_for_file(&file, data, &data_digest, false, &options.features);
    let mut expected = provenance(&sha256, &data_digest, seed);
    // Fitted on cached features, the calibration depends on that file (as an evaluation does:
    // see `stage::EvalProvenance::features`).
    if let Some(digest) = plan.digest() {
        expected = expected.input(FEATURES_INPUT, digest);
    }
    if !force && Calibration::freshness(&out, &expected)? == Freshness::UpToDate {
        return Ok(CalibrateOutcome::UpToDate(Calibration::read(&out)?, out));
    }
    let loaded = load(&file)?.uncalibrated();
    let calibration = calibrate_planned(&loaded, data, &data_digest, seed, options, &plan)?;
    calibration.save(&out, &expected)?;
    Ok(CalibrateOutcome::Calibrated(
        calibration,
        out,
        plan.source(),
    ))
}
