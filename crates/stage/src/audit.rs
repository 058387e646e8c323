//! `audit/audit.json`: what `audit` found in the photos (likely wrong labels, duplicates,
//! photos leaking from train into validation, strays) and the learning curve, as the audit
//! stage writes it and the report and `prep split --exclude` read it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::StoredProvenance;

/// The format of `audit.json` this crate writes and reads.
pub const AUDIT_FORMAT: u32 = 1;

/// What a flagged photo is suspected of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// Its given label is likely wrong (confident learning).
    LabelIssue,
    /// It is a copy or near copy of another photo of the same split.
    Duplicate,
    /// A validation photo whose copy or near copy is in train.
    Leakage,
    /// Far from every photo of every class: of neither class, a blank frame, a screenshot.
    Stray,
}

impl FlagKind {
    /// The name used in `audit.json` and the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::LabelIssue => "label_issue",
            Self::Duplicate => "duplicate",
            Self::Leakage => "leakage",
            Self::Stray => "stray",
        }
    }
}

/// One photo: where it is, which split, which class folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRef {
    /// The file as the split folder has it (`data/train/cats/cat.12.jpg`).
    pub path: PathBuf,
    /// `train` or `validation`.
    pub split: String,
    /// The path relative to the split folder (`cats/cat.12.jpg`).
    pub file: String,
    /// Its given class (the folder).
    pub given: String,
}

/// A flagged photo, as `prep split --exclude` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flagged {
    /// The photo.
    #[serde(flatten)]
    pub photo: PhotoRef,
    /// What it is suspected of.
    pub kind: FlagKind,
    /// How strongly, in `[0, 1]`; higher is more suspicious. Label issues: one minus the
    /// out-of-fold probability of the given class; duplicates and leakage: the cosine
    /// similarity of the features (1 for identical files); strays: the mean cosine distance to
    /// the nearest photos.
    pub score: f64,
    /// Label issues: the class the out-of-fold probabilities suggest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested: Option<String>,
    /// Duplicates and leakage: the photo it copies (kept; this one is the one to drop).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twin: Option<PhotoRef>,
    /// Duplicates and leakage: whether the two files have the same content digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<bool>,
    /// Duplicates and leakage: the cosine similarity of the two photos' centred features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
    /// Duplicates and leakage: the bits in which their difference hashes differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_distance: Option<u32>,
}

/// Out-of-fold probabilities and confident learning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelIssues {
    /// The folds of the out-of-fold probabilities (train and validation pooled).
    pub folds: usize,
    /// The linear probe's L2 penalty (chosen by k-fold log-loss on the train split).
    pub l2: f64,
    /// The out-of-fold accuracy against the given labels.
    pub oof_accuracy: f64,
    /// Per class: the mean out-of-fold probability of the class over the photos given it.
    pub thresholds: Vec<f64>,
    /// The confident joint: row = given class, column = confidently predicted class.
    pub confident_joint: Vec<Vec<usize>>,
    /// Photos in the off-diagonal of the confident joint.
    pub confident: usize,
    /// The photos in the off-diagonal of the confident joint and those whose most probable
    /// class is not their given one, ranked by self-confidence: the lowest out-of-fold
    /// probability of the given class first.
    pub issues: Vec<Flagged>,
}

/// Copies within a split and across splits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Duplicates {
    /// The cosine similarity of centred, normalised pooled features above which two photos
    /// count as near copies.
    pub threshold: f64,
    /// Bits (of 256) of difference-hash distance at or below which two photos count as near
    /// copies.
    pub hash_bits: u32,
    /// Groups of files with the same content digest.
    pub exact_groups: usize,
    /// Pairs above the threshold (exact ones included).
    pub pairs: usize,
    /// Among the photos with no copy: the highest similarity to any other photo (how close
    /// the set comes to the threshold).
    pub closest_similarity: f64,
    /// Among the photos with no copy: the smallest hash distance to any other photo.
    pub closest_hash_distance: u32,
    /// Each duplicate (within a split) and leaking photo (validation with a twin in train).
    pub found: Vec<Flagged>,
}

/// A model's validation accuracy with and without the leaking photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakFreeAccuracy {
    /// The model (`top`, `finetune`, `small_cnn`).
    pub model: String,
    /// Its accuracy on the whole validation split (from its evaluation).
    pub accuracy: f64,
    /// Its accuracy on the validation photos without a twin in train.
    pub without_leaks: f64,
    /// Validation photos left.
    pub photos: usize,
}

/// Photos far from all others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Strays {
    /// The nearest photos the distance is averaged over.
    pub neighbours: usize,
    /// The score above which a photo is flagged: the upper quartile plus three times the
    /// interquartile range of every photo's score (Tukey's far-out fence).
    pub threshold: f64,
    /// The photos with the highest scores, highest first (the flagged ones and at least
    /// twenty).
    pub ranked: Vec<Flagged>,
}

/// One size of the learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Training photos per class.
    pub per_class: usize,
    /// The validation accuracy of each seed.
    pub accuracies: Vec<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation.
    pub std: f64,
}

/// `error ≈ a · n^(−b)`, fitted to the learning curve's mean error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerLaw {
    /// The scale.
    pub a: f64,
    /// The exponent: each doubling of the photos multiplies the error by `2^(−b)`.
    pub b: f64,
    /// The accuracy the fit gives for every training photo (the largest size).
    pub accuracy_now: f64,
    /// The accuracy the fit predicts with twice as many photos per class.
    pub accuracy_doubled: f64,
}

/// The validation accuracy against the number of training photos.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearningCurve {
    /// What is trained at each size.
    pub head: String,
    /// Its L2 penalty.
    pub l2: f64,
    /// Seeds (random subsets) per size.
    pub seeds: usize,
    /// Validation photos it is measured on.
    pub validation_photos: usize,
    /// One point per size, smallest first.
    pub points: Vec<CurvePoint>,
    /// The power law through the points (absent with fewer than three sizes or a perfect
    /// score everywhere).
    pub power_law: Option<PowerLaw>,
}

/// The contents of `audit/audit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// [`AUDIT_FORMAT`].
    pub format: u32,
    /// The backbone whose features were audited.
    pub backbone: String,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Train photos.
    pub train_photos: usize,
    /// Validation photos.
    pub validation_photos: usize,
    /// Every flagged photo (label issues, duplicates, leakage, strays above the fence).
    pub flagged: Vec<Flagged>,
    /// Label issues.
    pub label_issues: LabelIssues,
    /// Copies and leakage.
    pub duplicates: Duplicates,
    /// The trained models' validation accuracy without the leaking photos.
    pub leak_free: Vec<LeakFreeAccuracy>,
    /// Strays.
    pub strays: Strays,
    /// The learning curve.
    pub learning_curve: LearningCurve,
    /// Seconds the audit took.
    pub seconds: f64,
    /// Seconds per part: `load`, `l2`, `out_of_fold`, `fingerprints`, `neighbours`, `curve`.
    #[serde(default)]
    pub part_seconds: BTreeMap<String, f64>,
    /// What the audit was computed from.
    pub provenance: StoredProvenance,
}

impl AuditReport {
    /// The flagged photos of `kind`.
    pub fn flagged_of(&self, kind: FlagKind) -> impl Iterator<Item = &Flagged> {
        self.flagged.iter().filter(move |f| f.kind == kind)
    }
}
