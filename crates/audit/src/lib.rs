//! Know your photos: the `audit` stage reads the cached bottleneck features of train and
//! validation (pooled to one vector per photo where the backbone caches maps) and finds
//!
//! - **label issues**: out-of-fold probabilities of a linear probe
//!   ([`engine::linear::out_of_fold`]; its L2 penalty chosen by k-fold log-loss on the train
//!   split, [`engine::linear::choose_l2`]), then confident learning ([`labels`]);
//! - **duplicates and leakage**: identical files by content digest and near copies by cosine
//!   similarity ([`neighbours`]), within a split and from train into validation, with every
//!   evaluated model's validation accuracy recomputed without the leaking photos;
//! - **strays**: photos far from all others (mean distance to the nearest photos);
//! - **the learning curve**: the probe's validation accuracy against the training photos per
//!   class, several random subsets each, with a fitted power law ([`curve`]).
//!
//! It writes `<data.artifacts>/audit/audit.json` ([`stage::audit::AuditReport`]), which the
//! report shows and `prep split --exclude` reads. Like every stage it is cached: a rerun with
//! the same features, evaluations and `[audit]` settings reads the file back. [`plant`] plants
//! known faults in a split, to measure what the audit finds.

#![warn(missing_docs)]

pub mod curve;
pub mod fingerprint;
pub mod labels;
pub mod neighbours;
pub mod plant;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use engine::linear::Rows;
use features::{FeaturePair, Features};
use pipeline::{Layout, Pipeline, layout};
use stage::audit::{
    AUDIT_FORMAT, AuditReport, Duplicates, FlagKind, Flagged, LabelIssues, LeakFreeAccuracy,
    LearningCurve, PhotoRef, Strays,
};
use stage::{EvalReport, Result, StageError, StoredProvenance};

/// The fewest strays the report ranks, flagged or not.
pub const RANKED_STRAYS: usize = 20;

/// How to run the audit.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Run even when `audit.json` is up to date.
    pub force: bool,
}

/// The photos of both splits in one table: train rows first, then validation.
struct Photos {
    refs: Vec<PhotoRef>,
    rows: Rows,
    labels: Vec<u32>,
    train: usize,
}

impl Photos {
    fn is_train(&self, i: usize) -> bool {
        i < self.train
    }
}

/// One vector per row: the feature maps `[N, C, h, w]` averaged over `h × w`.
fn pooled(features: &Features) -> Result<Rows> {
    let x = features.x.to_dtype(DType::F32)?;
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let flat = x.reshape((n, c, ()))?.mean(2)?;
    let values: Vec<f32> = flat.flatten_all()?.to_vec1()?;
    Ok(Rows::new(values, c)?)
}

fn photo_refs(pipeline: &Pipeline, features: &Features) -> Result<(Vec<PhotoRef>, Vec<u32>)> {
    let meta = &features.header.meta;
    let split = meta.split;
    let root = pipeline.data.dir.join(split.dir_name());
    let labels: Vec<u32> = features.labels.to_vec1()?;
    let refs = meta
        .files
        .iter()
        .zip(&labels)
        .map(|(file, &l)| PhotoRef {
            path: root.join(file),
            split: split.dir_name().to_string(),
            file: file.clone(),
            given: meta.classes[l as usize].clone(),
        })
        .collect();
    Ok((refs, labels))
}

/// The validation evaluations the leak-free accuracies are recomputed from.
fn evaluations(layout: &Layout) -> Vec<(&'static str, PathBuf)> {
    [
        ("small_cnn", layout.small_cnn()),
        ("top", layout.top()),
        ("finetune", layout.finetune()),
    ]
    .into_iter()
    .map(|(name, dir)| (name, Layout::evaluation(&dir, "validation")))
    .filter(|(_, path)| path.exists())
    .collect()
}

/// The audit's provenance: the features' digests, the evaluations' file digests and the
/// settings.
fn provenance(
    pipeline: &Pipeline,
    pair: (&str, &str),
    evals: &[(&str, PathBuf)],
) -> Result<StoredProvenance> {
    let mut inputs = BTreeMap::from([
        ("train_features".to_string(), pair.0.to_string()),
        ("validation_features".to_string(), pair.1.to_string()),
    ]);
    for (name, path) in evals {
        inputs.insert(format!("evaluation_{name}"), artifact::sha256_file(path)?);
    }
    Ok(StoredProvenance {
        stage: layout::stage::AUDIT.to_string(),
        config_digest: artifact::sha256_json(&serde_json::json!({
            "audit": pipeline.audit,
            "seed": pipeline.data.seed,
            "format": AUDIT_FORMAT,
        })),
        inputs,
    })
}

/// Runs the audit unless `audit/audit.json` is up to date. Returns the report and whether it
/// was read back (nothing computed).
pub fn run_audit(pipeline: &Pipeline, options: &AuditOptions) -> Result<(AuditReport, bool)> {
    let started = Instant::now();
    let layout = pipeline.layout();
    let path = layout.audit_report();
    let (train_h, validation_h) =
        FeaturePair::headers(pipeline, false).map_err(StageError::other)?;
    let evals = evaluations(&layout);
    let stored = provenance(pipeline, (&train_h.digest, &validation_h.digest), &evals)?;
    if !options.force
        && let Some(previous) = stage::read_json::<AuditReport>(&path)
        && previous.format == AUDIT_FORMAT
        && previous.provenance == stored
    {
        return Ok((previous, true));
    }
    let validation_digest = validation_h.meta.data_digest.clone();
    let backbone = train_h.meta.settings.backbone.to_string();
    let classes = train_h.meta.classes.clone();
    let train = Features::load(train_h, &Device::Cpu).map_err(StageError::other)?;
    let validation = Features::load(validation_h, &Device::Cpu).map_err(StageError::other)?;
    let photos = {
        let (mut refs, mut labels) = photo_refs(pipeline, &train)?;
        let (vrefs, vlabels) = photo_refs(pipeline, &validation)?;
        let n_train = refs.len();
        refs.extend(vrefs);
        labels.extend(vlabels);
        let (t, v) = (pooled(&train)?, pooled(&validation)?);
        let mut values = t.values;
        values.extend(v.values);
        Photos {
            refs,
            rows: Rows::new(values, t.dim)?,
            labels,
            train: n_train,
        }
    };
    drop((train, validation));
    let mut parts = BTreeMap::new();
    let mut lap = Instant::now();
    let mut part = |name: &str| {
        parts.insert(name.to_string(), lap.elapsed().as_secs_f64());
        lap = Instant::now();
    };
    part("load");
    let k = classes.len();
    let a = &pipeline.audit;
    let seed = pipeline.data.seed;

    // Label issues.
    let train_rows: Vec<usize> = (0..photos.train).collect();
    let train_x = photos.rows.select(&train_rows);
    let train_labels = &photos.labels[..photos.train];
    let train_folds = engine::folds::stratified_folds(train_labels, a.folds, seed)?;
    let (l2, _) = engine::linear::choose_l2(&train_x, train_labels, k, &train_folds, &a.l2)?;
    part("l2");
    let all_folds = engine::folds::stratified_folds(&photos.labels, a.folds, seed)?;
    let oof = engine::linear::out_of_fold(&photos.rows, &photos.labels, k, &all_folds, l2)?;
    let oof_accuracy = oof
        .chunks(k)
        .zip(&photos.labels)
        .filter(|(p, y)| engine::argmax(p) == **y as usize)
        .count() as f64
        / photos.labels.len() as f64;
    let cl = labels::confident_learning(&oof, &photos.labels, k);
    part("out_of_fold");
    let issues: Vec<Flagged> = cl
        .issues
        .iter()
        .map(|&(i, j, score)| Flagged {
            photo: photos.refs[i].clone(),
            kind: FlagKind::LabelIssue,
            score,
            suggested: Some(classes[j].clone()),
            twin: None,
            exact: None,
            similarity: None,
            hash_distance: None,
        })
        .collect();

    // Copies, leakage and strays.
    let paths: Vec<&Path> = photos.refs.iter().map(|r| r.path.as_path()).collect();
    let prints = fingerprint::fingerprints(&paths)?;
    part("fingerprints");
    let exact_groups = {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &prints {
            *counts.entry(&p.sha256).or_default() += 1;
        }
        counts.values().filter(|&&c| c > 1).count()
    };
    let rule = neighbours::CopyRule {
        similarity: a.near_duplicate as f32,
        hash_bits: a.near_hash_bits,
    };
    let near = neighbours::scan(&photos.rows, &prints, rule, a.neighbours)?;
    part("neighbours");
    let mut copies: BTreeMap<(usize, FlagKind), Flagged> = BTreeMap::new();
    for pair in &near.pairs {
        let (i, j) = (pair.i, pair.j);
        let (flagged, twin, kind) = match (photos.is_train(i), photos.is_train(j)) {
            (true, false) => (j, i, FlagKind::Leakage),
            (false, true) => (i, j, FlagKind::Leakage),
            _ => (j, i, FlagKind::Duplicate),
        };
        let entry = Flagged {
            photo: photos.refs[flagged].clone(),
            kind,
            score: pair.score(),
            suggested: None,
            twin: Some(photos.refs[twin].clone()),
            exact: Some(pair.exact),
            similarity: Some(f64::from(pair.similarity)),
            hash_distance: Some(pair.hash_distance),
        };
        copies
            .entry((flagged, kind))
            .and_modify(|e| {
                if entry.score > e.score {
                    *e = entry.clone();
                }
            })
            .or_insert(entry);
    }
    let mut in_pair = vec![false; photos.refs.len()];
    for pair in &near.pairs {
        in_pair[pair.i] = true;
        in_pair[pair.j] = true;
    }
    let unpaired = || (0..photos.refs.len()).filter(|&i| !in_pair[i]);
    let closest_similarity = unpaired()
        .map(|i| f64::from(near.nearest_similarity[i]))
        .fold(f64::NEG_INFINITY, f64::max);
    let closest_hash_distance = unpaired().map(|i| near.nearest_hash[i]).min().unwrap_or(0);
    let mut found: Vec<Flagged> = copies.into_values().collect();
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    let leaking: BTreeSet<String> = found
        .iter()
        .filter(|f| f.kind == FlagKind::Leakage)
        .map(|f| f.photo.file.clone())
        .collect();
    let leak_free = leak_free_accuracies(&evals, &validation_digest, &leaking);

    let fence = neighbours::far_out_fence(&near.stray_scores);
    let mut order: Vec<usize> = (0..photos.refs.len()).collect();
    order.sort_by(|&a, &b| near.stray_scores[b].total_cmp(&near.stray_scores[a]));
    let above = order
        .iter()
        .take_while(|&&i| near.stray_scores[i] > fence)
        .count();
    let ranked: Vec<Flagged> = order
        .iter()
        .take(above.max(RANKED_STRAYS))
        .map(|&i| Flagged {
            photo: photos.refs[i].clone(),
            kind: FlagKind::Stray,
            score: near.stray_scores[i],
            suggested: None,
            twin: None,
            exact: None,
            similarity: None,
            hash_distance: None,
        })
        .collect();

    // The learning curve.
    let validation_rows: Vec<usize> = (photos.train..photos.refs.len()).collect();
    let validation_x = photos.rows.select(&validation_rows);
    let validation_labels = &photos.labels[photos.train..];
    let smallest = (0..k as u32)
        .map(|c| train_labels.iter().filter(|&&l| l == c).count())
        .min()
        .unwrap_or(0);
    let sizes = curve::sizes(&a.curve_sizes, smallest);
    let points = curve::learning_curve(
        &train_x,
        train_labels,
        &validation_x,
        validation_labels,
        k,
        &sizes,
        a.curve_seeds,
        l2,
        seed,
    )?;
    let power_law = curve::power_law(&points, validation_rows.len());
    part("curve");

    let mut flagged: Vec<Flagged> = issues.clone();
    flagged.extend(found.iter().cloned());
    flagged.extend(ranked.iter().take(above).cloned());
    let report = AuditReport {
        format: AUDIT_FORMAT,
        backbone,
        classes,
        train_photos: photos.train,
        validation_photos: validation_rows.len(),
        flagged,
        label_issues: LabelIssues {
            folds: a.folds,
            l2,
            oof_accuracy,
            thresholds: cl.thresholds,
            confident: cl.confident,
            confident_joint: cl.joint,
            issues,
        },
        duplicates: Duplicates {
            threshold: a.near_duplicate,
            hash_bits: a.near_hash_bits,
            exact_groups,
            pairs: near.pairs.len(),
            closest_similarity,
            closest_hash_distance,
            found,
        },
        leak_free,
        strays: Strays {
            neighbours: a.neighbours,
            threshold: fence,
            ranked,
        },
        learning_curve: LearningCurve {
            head: "linear probe (multinomial logistic regression) on the pooled features".into(),
            l2,
            seeds: a.curve_seeds,
            validation_photos: validation_rows.len(),
            points,
            power_law,
        },
        seconds: started.elapsed().as_secs_f64(),
        part_seconds: parts,
        provenance: stored,
    };
    stage::write_json(&path, &report)?;
    Ok((report, false))
}

/// Each current evaluation's accuracy on validation without the `leaking` photos (files
/// relative to the validation folder). Evaluations of other photos are left out.
fn leak_free_accuracies(
    evals: &[(&str, PathBuf)],
    validation_digest: &str,
    leaking: &BTreeSet<String>,
) -> Vec<LeakFreeAccuracy> {
    evals
        .iter()
        .filter_map(|(name, path)| {
            let eval = stage::read_json::<EvalReport>(path)?;
            let current = eval
                .provenance
                .as_ref()
                .is_some_and(|p| p.data_digest == validation_digest);
            if !current {
                return None;
            }
            let wrong_leaking = eval
                .mistakes
                .iter()
                .filter(|m| leaking.iter().any(|f| m.image.ends_with(Path::new(f))))
                .count();
            let left = eval.samples.saturating_sub(leaking.len());
            let correct = eval
                .correct
                .saturating_sub(leaking.len().saturating_sub(wrong_leaking));
            Some(LeakFreeAccuracy {
                model: (*name).to_string(),
                accuracy: eval.accuracy,
                without_leaks: if left > 0 {
                    correct as f64 / left as f64
                } else {
                    0.0
                },
                photos: left,
            })
        })
        .collect()
}
