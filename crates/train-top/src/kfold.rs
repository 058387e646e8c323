//! Stratified k-fold cross-validation of the top model on the training and validation
//! features pooled: the trustworthy estimate the post recommends when validation accuracy
//! swings, cheap because the features are cached.
//!
//! Each fold trains a fresh top model (its own initialisation) for `top.epochs` epochs on the
//! other folds and reports the accuracy of the **last** epoch's weights on the held-out fold:
//! no choice is made on the held-out data, so the figure is an unbiased estimate.

use std::time::Instant;

use candle_core::{Device, Tensor};
pub use engine::folds::{mean_std, stratified_folds};
use engine::{FitConfig, FitStatus, Interrupt, Metric, Params, TensorSource, Verbosity};
use features::{FeaturePair, Features};
use imagedata::rng::names;
use pipeline::{Pipeline, layout};
use stage::{FoldResult, KFoldReport, Plan, Result, StageError, StoredProvenance};

use crate::train::{TopTrainer, build_top};

/// How to cross-validate.
#[derive(Debug, Clone)]
pub struct KFoldOptions {
    /// The number of folds (at least 2).
    pub k: usize,
    /// Run even when `kfold.json` is up to date.
    pub force: bool,
    /// Where to train.
    pub device: Device,
    /// A stop request checked after every batch.
    pub interrupt: Option<Interrupt>,
}

/// Runs k-fold cross-validation unless `top/kfold.json` is up to date with the features and
/// settings. `on_fold` is called as each fold finishes. Returns the report and whether it was
/// up to date (read back, nothing run). Writes `kfold.json` and, per fold,
/// `top/kfold/fold-<i>/{history.csv,history.json,curves.png}`.
pub fn run_kfold(
    pipeline: &Pipeline,
    options: &KFoldOptions,
    on_fold: &mut dyn FnMut(&FoldResult),
) -> Result<(KFoldReport, bool)> {
    let layout = pipeline.layout();
    let path = layout.kfold();
    let options_stage = stage::StageOptions::new(options.device.clone());
    let mut trainer = TopTrainer::new(false);
    let plan: Plan = stage::Trainer::plan(&mut trainer, pipeline, &options_stage)?;
    let seed = pipeline.data.seed;
    let mut provenance = plan.provenance(layout::stage::TRAIN_TOP_KFOLD, seed);
    provenance.config_digest = artifact::sha256_json(&serde_json::json!({
        "model": provenance.config_digest,
        "k": options.k,
    }));
    let stored = StoredProvenance::from(&provenance);
    if !options.force
        && let Some(previous) = stage::read_json::<KFoldReport>(&path)
        && previous.provenance == stored
    {
        return Ok((previous, true));
    }

    let device = &options.device;
    let (train_header, validation_header) =
        FeaturePair::headers(pipeline, false).map_err(StageError::other)?;
    let pair = FeaturePair {
        train: Features::load(train_header, device).map_err(StageError::other)?,
        validation: Features::load(validation_header, device).map_err(StageError::other)?,
    };
    let spec = plan.spec;
    let x = Tensor::cat(&[&pair.train.x, &pair.validation.x], 0)?;
    let labels = Tensor::cat(&[&pair.train.labels, &pair.validation.labels], 0)?;
    let label_values = labels.to_vec1::<u32>()?;
    let folds = stratified_folds(&label_values, options.k, seed)?;
    let fold_dir = layout.top().join("kfold");

    let mut results = Vec::with_capacity(options.k);
    for (f, held) in folds.iter().enumerate() {
        let mut is_held = vec![false; label_values.len()];
        for &i in held {
            is_held[i] = true;
        }
        let rows = |held: bool| -> Vec<u32> {
            (0..label_values.len() as u32)
                .filter(|&i| is_held[i as usize] == held)
                .collect()
        };
        let select = |idx: &[u32]| -> Result<(Tensor, Tensor)> {
            let t = Tensor::from_slice(idx, idx.len(), x.device())?;
            Ok((x.index_select(&t, 0)?, labels.index_select(&t, 0)?))
        };
        let (train_rows, held_rows) = (rows(false), rows(true));
        let (tx, tl) = select(&train_rows)?;
        let (vx, vl) = select(&held_rows)?;

        let mut rng = imagedata::rng::substream(seed, names::TOP_INIT, f as u64);
        let (model, varmap) = build_top(&spec, &mut rng, device)?;
        let params = Params::all_trainable(&varmap)?;
        let mut train = TensorSource::new(tx, tl, pipeline.top.batch_size)?.shuffled(seed);
        let mut validation = TensorSource::new(vx, vl, pipeline.top.batch_size)?;
        let mut config = FitConfig::from_schedule(&pipeline.top.schedule(), seed);
        config.keep_best = Some(Metric::ValAcc);
        config.restore_best = false;
        config.verbosity = Verbosity::Quiet;
        config.interrupt = options.interrupt.clone();
        let started = Instant::now();
        let outcome = engine::fit(&model, &params, &mut train, Some(&mut validation), &config)?;
        if let FitStatus::Interrupted { .. } = outcome.status {
            return Err(StageError::Interrupted(format!(
                "during fold {} of {}; kfold.json was not written",
                f + 1,
                options.k
            )));
        }
        let last = outcome
            .history
            .last()
            .cloned()
            .ok_or_else(|| StageError::Settings("training ran no epoch".into()))?;
        let best = outcome
            .best
            .map_or((last.val_acc.unwrap_or(0.0), last.epoch), |b| {
                (b.value, b.epoch)
            });
        let out = fold_dir.join(format!("fold-{}", f + 1));
        outcome
            .history
            .write(&out.join("history.csv"), &out.join("history.json"))?;
        engine::write_curves(&outcome.history, &out.join("curves.png"))?;
        let result = FoldResult {
            fold: f + 1,
            train_samples: train_rows.len(),
            validation_samples: held_rows.len(),
            acc: last.val_acc.unwrap_or(0.0),
            loss: last.val_loss.unwrap_or(f64::NAN),
            best_acc: best.0,
            best_epoch: best.1,
            epochs: last.epoch,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_fold(&result);
        results.push(result);
    }
    let accs: Vec<f64> = results.iter().map(|r| r.acc).collect();
    let (mean_acc, std_acc) = mean_std(&accs);
    let report = KFoldReport {
        k: options.k,
        seed,
        samples: label_values.len(),
        classes: spec.classes.clone(),
        folds: results,
        mean_acc,
        std_acc,
        provenance: stored,
    };
    stage::write_json(&path, &report)?;
    Ok((report, false))
}
