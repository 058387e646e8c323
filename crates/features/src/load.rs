//! Loading cached features, with the checks that keep a model from training on features that
//! do not belong together or no longer describe the data and the settings.

use std::path::{Path, PathBuf};

use artifact::{Metadata, Provenance};
use candle_core::{DType, Device, Tensor};
use imagedata::{Split, SplitData};
use pipeline::{Pipeline, layout};

use crate::error::{FeaturesError, Result};
use crate::meta::{ExtractSettings, FeatureFile, FeatureMeta, FeaturePart, feature_path};

/// The digest that stands for a features file in the top model's provenance: the sha256 of its
/// metadata, which records the extraction's provenance and creation time, so it changes
/// whenever the file is rewritten (without reading the tensor data).
pub fn features_digest(raw: &Metadata) -> String {
    artifact::sha256_json(raw)
}

/// A features file's description, read from its header.
#[derive(Debug, Clone)]
pub struct Header {
    /// The file.
    pub path: PathBuf,
    /// Which features file it is.
    pub file: FeatureFile,
    /// Its description.
    pub meta: FeatureMeta,
    /// [`features_digest`] of its metadata.
    pub digest: String,
}

/// `text` without a leading `"<path>: "` (the errors of the crate's readers start with it).
pub(crate) fn without_path(text: String, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    text.strip_prefix(&prefix)
        .map(str::to_string)
        .unwrap_or(text)
}

impl Header {
    /// The description and raw metadata of the features file at `path`, refusing a missing
    /// file and one that `extract` did not write (shared by every reader of headers).
    pub(crate) fn read_extracted(path: &Path) -> Result<(FeatureMeta, Metadata)> {
        if !path.exists() {
            return Err(FeaturesError::Missing {
                path: path.to_path_buf(),
            });
        }
        let bad = |reason: String| FeaturesError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        let (meta, raw) =
            FeatureMeta::read(path).map_err(|e| bad(without_path(e.to_string(), path)))?;
        match Provenance::from_metadata(&raw) {
            Some(p) if p.stage == layout::stage::EXTRACT => Ok((meta, raw)),
            _ => Err(bad("it has no provenance of the `extract` stage".into())),
        }
    }

    /// Reads the header of features `file` at `path`, checking that it is a whole (not
    /// sharded) features file of the right split written by `extract`.
    pub fn read(path: &Path, file: FeatureFile) -> Result<Self> {
        let (meta, raw) = Self::read_extracted(path)?;
        let bad = |reason: String| FeaturesError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        if meta.split != file.split() {
            return Err(bad(format!(
                "it holds the {} split, expected {}",
                meta.split,
                file.split()
            )));
        }
        if meta.settings.views.is_some() != file.is_augmented() {
            return Err(bad(if file.is_augmented() {
                "it holds plain features, expected augmented views".into()
            } else {
                "it holds augmented views, expected plain features".into()
            }));
        }
        if let Some(s) = meta.shard {
            return Err(bad(format!(
                "it is shard {}/{} only; join the shards with `extract merge`",
                s.index, s.count
            )));
        }
        if meta.settings.part != FeaturePart::Features {
            return Err(bad(format!(
                "it holds the {}; the top model needs the backbone's features",
                meta.holds
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            digest: features_digest(&raw),
            meta,
        })
    }

    /// Checks that the features were made with the pipeline's current settings and, when the
    /// split's data folder exists, from its current images.
    pub fn check_current(&self, pipeline: &Pipeline) -> Result<()> {
        let stale = |reason: String| FeaturesError::Stale {
            path: self.path.clone(),
            reason,
        };
        let Some(expected) = ExtractSettings::for_file(pipeline, self.file) else {
            return Err(FeaturesError::Settings(format!(
                "{}: bottleneck.augmented_views is 0 in the pipeline file; set it (for example \
                 `--set bottleneck.augmented_views=5`) and run `just extract-bottlenecks`",
                self.path.display()
            )));
        };
        let found = &self.meta.settings;
        let what = if found.backbone != expected.backbone {
            Some(format!(
                "it holds `{}` features, the pipeline file says bottleneck.backbone = \"{}\"",
                found.backbone, expected.backbone
            ))
        } else if found.target_size != expected.target_size {
            Some(format!(
                "it holds images of size {:?}, the backbone's input size is {:?} \
                 (bottleneck.target_size)",
                found.target_size, expected.target_size
            ))
        } else if found.interpolation != expected.interpolation {
            Some(format!(
                "it was resized with {:?}, the pipeline file says data.interpolation = {:?}",
                found.interpolation, expected.interpolation
            ))
        } else if found.preprocessing != expected.preprocessing {
            Some(format!(
                "it was preprocessed with {}, the backbone's preprocessing is {} \
                 (bottleneck.preprocessing)",
                serde_json::to_string(&found.preprocessing).unwrap_or_default(),
                serde_json::to_string(&expected.preprocessing).unwrap_or_default()
            ))
        } else if found.views != expected.views {
            Some(
                "its augmented views were drawn with other settings (bottleneck.augmented_views, \
                 bottleneck.augment or data.seed changed)"
                    .to_string(),
            )
        } else {
            None
        };
        if let Some(what) = what {
            return Err(stale(what));
        }
        let dir = pipeline.data.dir.join(self.meta.split.dir_name());
        if dir.is_dir() {
            let data = SplitData::scan(&pipeline.data.dir, self.meta.split)?;
            if data.digest != self.meta.data_digest {
                return Err(stale(format!(
                    "it was extracted from other images than those now in {} ({} files then, {} \
                     now)",
                    dir.display(),
                    self.meta.files.len(),
                    data.len()
                )));
            }
        } else {
            tracing::warn!(
                "{} is not there: cannot check that {} still matches the images",
                dir.display(),
                self.path.display()
            );
        }
        Ok(())
    }
}

/// Checks that training features `train` and validation features `validation` can be used
/// together: same classes, image size, resizing, preprocessing, feature shape and weights.
pub fn check_pair(train: &Header, validation: &Header) -> Result<()> {
    let (t, v) = (&train.meta, &validation.meta);
    let reason = if t.classes != v.classes {
        Some(format!(
            "their classes differ ({:?} and {:?})",
            t.classes, v.classes
        ))
    } else if t.feature_shape != v.feature_shape {
        Some(format!(
            "their feature shapes differ ({:?} and {:?})",
            t.feature_shape, v.feature_shape
        ))
    } else if t.settings.target_size != v.settings.target_size
        || t.settings.interpolation != v.settings.interpolation
    {
        Some(format!(
            "they were made from images resized differently ({:?} {:?} and {:?} {:?})",
            t.settings.target_size,
            t.settings.interpolation,
            v.settings.target_size,
            v.settings.interpolation
        ))
    } else if t.settings.preprocessing != v.settings.preprocessing {
        Some(format!(
            "their preprocessing differs ({} and {})",
            serde_json::to_string(&t.settings.preprocessing).unwrap_or_default(),
            serde_json::to_string(&v.settings.preprocessing).unwrap_or_default()
        ))
    } else if t.settings.backbone != v.settings.backbone {
        Some(format!(
            "they come from different backbones ({} and {})",
            t.settings.backbone, v.settings.backbone
        ))
    } else if t.weights_sha256 != v.weights_sha256 {
        Some(format!(
            "they come from different {} weights (sha256 {} and {})",
            t.settings.backbone, t.weights_sha256, v.weights_sha256
        ))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FeaturesError::Mismatch {
            train: train.path.clone(),
            validation: validation.path.clone(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Features loaded into memory.
#[derive(Debug, Clone)]
pub struct Features {
    /// Where they came from, and their description.
    pub header: Header,
    /// `[rows, C, h, w]` f32.
    pub x: Tensor,
    /// `[rows]` u32 class indices.
    pub labels: Tensor,
}

impl Features {
    /// Loads the tensors of the file `header` describes onto `device`, checking them against
    /// the description.
    pub fn load(header: Header, device: &Device) -> Result<Self> {
        let path = &header.path;
        let bad = |reason: String| FeaturesError::Unusable {
            path: path.clone(),
            reason,
        };
        let (mut t, _) = artifact::load_tensors(path, &["features", "labels"], device)
            .map_err(|e| bad(without_path(e.to_string(), path)))?;
        let (Some(x), Some(labels)) = (t.remove("features"), t.remove("labels")) else {
            return Err(bad("it lacks `features` or `labels`".into()));
        };
        header
            .meta
            .check_shapes(path, x.dims(), labels.dims())
            .map_err(|e| bad(without_path(e.to_string(), path)))?;
        if labels.dtype() != DType::U32 {
            return Err(bad(format!(
                "`labels` is {:?}, expected U32",
                labels.dtype()
            )));
        }
        if !x.dtype().is_float() {
            return Err(bad(format!("`features` is {:?}, expected F32", x.dtype())));
        }
        let classes = header.meta.classes.len() as u32;
        let values = labels
            .to_vec1::<u32>()
            .map_err(FeaturesError::tensor(format!("{}: labels", path.display())))?;
        if let Some(&l) = values.iter().find(|&&l| l >= classes) {
            return Err(bad(format!(
                "label {l} is out of range for its {classes} classes"
            )));
        }
        let x = x
            .to_dtype(DType::F32)
            .map_err(FeaturesError::tensor(format!(
                "{}: features",
                path.display()
            )))?;
        Ok(Self { header, x, labels })
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.header.meta.rows()
    }
}

/// Training and validation features that belong together.
#[derive(Debug, Clone)]
pub struct FeaturePair {
    /// Training features (plain or augmented views).
    pub train: Features,
    /// Validation features.
    pub validation: Features,
}

impl FeaturePair {
    /// Reads the headers of the pipeline's training features (`train_augmented` with
    /// `augmented`) and validation features, checks them against each other, the pipeline file
    /// and the data, then loads them onto `device`.
    pub fn load(pipeline: &Pipeline, augmented: bool, device: &Device) -> Result<Self> {
        let (train, validation) = Self::headers(pipeline, augmented)?;
        Ok(Self {
            train: Features::load(train, device)?,
            validation: Features::load(validation, device)?,
        })
    }

    /// The checked headers [`FeaturePair::load`] reads (cheap: no tensor data).
    pub fn headers(pipeline: &Pipeline, augmented: bool) -> Result<(Header, Header)> {
        let dir = pipeline.layout().bottleneck();
        let file = if augmented {
            FeatureFile::TrainAugmented
        } else {
            FeatureFile::Train
        };
        if augmented && pipeline.bottleneck.augmented_views == 0 {
            return Err(FeaturesError::Settings(
                "--use-augmented needs augmented views: set bottleneck.augmented_views (for \
                 example `--set bottleneck.augmented_views=5`) and run `just \
                 extract-bottlenecks`"
                    .into(),
            ));
        }
        let train = Header::read(&feature_path(&dir, file, None), file)?;
        let validation = Header::read(
            &feature_path(&dir, FeatureFile::Validation, None),
            FeatureFile::Validation,
        )?;
        check_pair(&train, &validation)?;
        train.check_current(pipeline)?;
        validation.check_current(pipeline)?;
        if train.meta.split != Split::Train {
            return Err(FeaturesError::Unusable {
                path: train.path.clone(),
                reason: "it does not hold the training split".into(),
            });
        }
        Ok((train, validation))
    }
}
