//! The schema of a model's calibration (`calibration.safetensors` beside `model.safetensors`,
//! written by `classify calibrate`, read by `classify` and the report).
//!
//! The file is an artifact like every other: one tensor `temperature` `[1]`, the provenance
//! of the model file and the photos it was fitted on, and the measurements as JSON under
//! [`CALIBRATION_KEY`]. It lives beside the model rather than inside it, so that calibrating a
//! model does not change the model file (which the fine-tuner and the evaluations record by
//! digest). A calibration whose recorded model digest is not the model file's is stale and is
//! not applied.

use std::path::{Path, PathBuf};

use artifact::{Freshness, Metadata, Provenance};
use candle_core::{Device, Tensor};
use engine::calibration::ReliabilityBin;
use pipeline::layout::{CALIBRATION_FILE, stage::CALIBRATE};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};

/// The metadata key holding the [`Calibration`] as JSON.
pub const CALIBRATION_KEY: &str = "littledata.calibration";
/// The tensor holding the temperature.
pub const TEMPERATURE_TENSOR: &str = "temperature";
/// The provenance input naming the model file's sha256.
const MODEL_INPUT: &str = "model";
/// The provenance input naming the calibration photos' content digest.
const DATA_INPUT: &str = "data";

/// What `classify calibrate` fitted and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The method: `temperature` (one scalar dividing the logits).
    pub method: String,
    /// The temperature fitted on every calibration photo: the one applied.
    pub temperature: f64,
    /// sha256 of the model file it was fitted for.
    pub model_sha256: String,
    /// The labelled folder it was fitted on.
    pub data: PathBuf,
    /// That folder's content digest.
    pub data_digest: String,
    /// The seed of the cross-fitting halves.
    pub seed: u64,
    /// Photos fitted on.
    pub samples: usize,
    /// Their accuracy (the same with and without the temperature).
    pub accuracy: f64,
    /// The temperature fitted on each half of the two-fold cross-fitting.
    pub fold_temperatures: [f64; 2],
    /// Confidence bins of the ECE.
    pub bins: usize,
    /// The expected calibration error without the temperature.
    pub ece_before: f64,
    /// The ECE of the cross-fitted probabilities (each half under the other half's fit).
    pub ece_after: f64,
    /// The mean negative log-likelihood without the temperature.
    pub nll_before: f64,
    /// The cross-fitted mean negative log-likelihood.
    pub nll_after: f64,
    /// The reliability diagram without the temperature.
    pub reliability_before: Vec<ReliabilityBin>,
    /// The cross-fitted reliability diagram.
    pub reliability_after: Vec<ReliabilityBin>,
    /// Whether the temperature is applied: only when the cross-fitted NLL is lower than the
    /// uncalibrated one, that is, when a temperature fitted on photos it is not measured on
    /// helps. On a handful of photos it may not, and the model is then used as it is.
    #[serde(default = "applied_default")]
    pub applied: bool,
}

fn applied_default() -> bool {
    true
}

/// The calibration file of the model artifact at `model_file`: `calibration.safetensors` in
/// the same folder.
pub fn calibration_file(model_file: &Path) -> PathBuf {
    model_file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(CALIBRATION_FILE)
}

/// The provenance a calibration of the model file with digest `model_sha256` on photos with
/// content digest `data_digest`, cross-fitted with `seed`, records.
pub fn provenance(model_sha256: &str, data_digest: &str, seed: u64) -> Provenance {
    let settings = serde_json::json!({ "method": "temperature", "seed": seed });
    Provenance::new(CALIBRATE, artifact::sha256_json(&settings))
        .input(MODEL_INPUT, model_sha256)
        .input(DATA_INPUT, data_digest)
}

impl Calibration {
    /// The temperature the logits are divided by: [`Calibration::temperature`] when it is
    /// applied, 1 otherwise.
    pub fn applied_temperature(&self) -> f64 {
        if self.applied { self.temperature } else { 1.0 }
    }

    /// Whether `path` already holds this model's calibration on these photos with this seed
    /// (and its bytes check out).
    pub fn freshness(path: &Path, expected: &Provenance) -> Result<Freshness> {
        Ok(artifact::check_fresh(path, expected)?)
    }

    /// Writes the calibration to `path` atomically, with `provenance`.
    pub fn save(&self, path: &Path, provenance: &Provenance) -> Result<()> {
        let mut meta = provenance.to_metadata();
        let json = serde_json::to_string(self)
            .map_err(|e| StageError::Settings(format!("{}: cannot encode: {e}", path.display())))?;
        meta.insert(CALIBRATION_KEY.into(), json);
        let t = Tensor::new(&[self.temperature as f32], &Device::Cpu)?;
        artifact::save(path, [(TEMPERATURE_TENSOR, &t)], &meta)?;
        Ok(())
    }

    /// Reads the calibration at `path` (its digest checked).
    pub fn read(path: &Path) -> Result<Self> {
        Ok(Self::read_with_metadata(path)?.0)
    }

    /// Reads the calibration at `path` (its digest checked) and the file's metadata (its
    /// provenance).
    pub fn read_with_metadata(path: &Path) -> Result<(Self, Metadata)> {
        artifact::verify(path)?;
        let meta = artifact::read_metadata(path)?;
        let calibration: Self = artifact::meta_json(&meta, path, CALIBRATION_KEY)?;
        if !(calibration.temperature.is_finite() && calibration.temperature > 0.0) {
            return Err(StageError::Settings(format!(
                "{}: temperature {} is not a positive number; rerun `classify calibrate`",
                path.display(),
                calibration.temperature
            )));
        }
        Ok((calibration, meta))
    }

    /// What the folder of the model file `model_file`, whose sha256 is `model_sha256`, holds
    /// for its calibration: nothing, one fitted for another model file, or this file's. A
    /// calibration file that cannot be read is an error naming it.
    pub fn lookup(model_file: &Path, model_sha256: &str) -> Result<Lookup> {
        let path = calibration_file(model_file);
        if !path.exists() {
            return Ok(Lookup::Missing);
        }
        let (calibration, metadata) = Self::read_with_metadata(&path)?;
        if !calibration.model_sha256.eq_ignore_ascii_case(model_sha256) {
            return Ok(Lookup::Stale {
                path,
                fitted_for: calibration.model_sha256,
            });
        }
        Ok(Lookup::Fitted {
            path,
            calibration: Box::new(calibration),
            metadata,
        })
    }

    /// The calibration of the model file `model_file` whose sha256 is `model_sha256`, if its
    /// folder holds one fitted for that file: `Ok(None)` when there is none, `Err` with the
    /// reason when there is one for another model file or it cannot be read.
    pub fn for_model(model_file: &Path, model_sha256: &str) -> Result<Option<(Self, PathBuf)>> {
        match Self::lookup(model_file, model_sha256)? {
            Lookup::Missing => Ok(None),
            Lookup::Fitted {
                path, calibration, ..
            } => Ok(Some((*calibration, path))),
            Lookup::Stale { path, fitted_for } => Err(StageError::Settings(format!(
                "{}: fitted for another model file (sha256 {}, {} is {}); rerun `classify \
                 calibrate --model {}`",
                path.display(),
                short(&fitted_for),
                model_file.display(),
                short(model_sha256),
                model_file
                    .parent()
                    .unwrap_or_else(|| Path::new("."))
                    .display()
            ))),
        }
    }
}

/// What [`Calibration::lookup`] found beside a model file.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// No calibration file.
    Missing,
    /// A calibration fitted for another model file (an earlier model).
    Stale {
        /// The calibration file.
        path: PathBuf,
        /// sha256 of the model file it was fitted for.
        fitted_for: String,
    },
    /// The calibration of this model file.
    Fitted {
        /// The calibration file.
        path: PathBuf,
        /// What it fitted and measured.
        calibration: Box<Calibration>,
        /// The file's metadata (its provenance).
        metadata: Metadata,
    },
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
