//! What a features artifact records, where it lives, and its provenance.
//!
//! Every field of [`FeatureMeta`] is stored as JSON under its own metadata key prefixed with
//! `bottleneck.` (`bottleneck.files`, `bottleneck.classes`, `bottleneck.target_size`,
//! `bottleneck.preprocessing`, `bottleneck.weights_sha256`, ...), beside the provenance keys of
//! the `artifact` crate, so `safetensors` header dumps stay readable.

use std::fmt;
use std::path::{Path, PathBuf};

use artifact::{Metadata, Provenance};
use imagedata::{AugmentConfig, Interpolation, Preprocessing, Split, TargetSize};
use models::BackboneKind;
use pipeline::{Pipeline, layout};
use serde::{Deserialize, Serialize};

use crate::error::{FeaturesError, Result};
use crate::slice::Shard;

/// The features file format this crate writes and reads.
pub const FEATURES_FORMAT: u32 = 2;

/// The prefix of every features metadata key.
const PREFIX: &str = "bottleneck.";

/// The files the stage writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureFile {
    /// `train.safetensors`: one row per training image.
    Train,
    /// `validation.safetensors`: one row per validation image.
    Validation,
    /// `train_augmented.safetensors`: K augmented views per training image.
    TrainAugmented,
}

impl FeatureFile {
    /// Every file, in the order the stage writes them.
    pub const ALL: [FeatureFile; 3] = [Self::Train, Self::Validation, Self::TrainAugmented];

    /// The file name without extension (`train`, `validation`, `train_augmented`).
    pub fn stem(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Validation => "validation",
            Self::TrainAugmented => "train_augmented",
        }
    }

    /// The split whose images the file holds.
    pub fn split(self) -> Split {
        match self {
            Self::Train | Self::TrainAugmented => Split::Train,
            Self::Validation => Split::Validation,
        }
    }

    /// Whether the file holds augmented views.
    pub fn is_augmented(self) -> bool {
        self == Self::TrainAugmented
    }
}

impl fmt::Display for FeatureFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stem())
    }
}

/// The path of `file` in `dir`: `train.safetensors`, or `train.shard-2-of-4.safetensors` for a
/// shard.
pub fn feature_path(dir: &Path, file: FeatureFile, shard: Option<Shard>) -> PathBuf {
    match shard {
        None => dir.join(format!("{}.safetensors", file.stem())),
        Some(s) => dir.join(format!(
            "{}.shard-{}-of-{}.safetensors",
            file.stem(),
            s.index,
            s.count
        )),
    }
}

/// How augmented views are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewSettings {
    /// Views per image (K).
    pub count: usize,
    /// The random transforms (Keras' `ImageDataGenerator` settings).
    pub augment: AugmentConfig,
    /// The seed of the views stream ([`imagedata::rng::names::VIEWS`]).
    pub seed: u64,
}

/// Which part of a backbone a features file holds the output of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeaturePart {
    /// The backbone's features ([`models::Backbone::features`]): what the top model trains on.
    Features,
    /// The frozen part of fine-tuning ([`models::Backbone::frozen`]): what the tail trains on.
    Frozen,
}

/// Everything besides the images and the weights that determines the features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractSettings {
    /// The backbone.
    pub backbone: BackboneKind,
    /// Which of its outputs is stored.
    pub part: FeaturePart,
    /// `[height, width]` every image is resized to.
    pub target_size: [u32; 2],
    /// The resampling filter of that resize.
    pub interpolation: Interpolation,
    /// Pixel preprocessing fed to the backbone.
    pub preprocessing: Preprocessing,
    /// Augmented views instead of the plain image (`None`: one plain row per image).
    pub views: Option<ViewSettings>,
}

impl ExtractSettings {
    /// The settings `extract` uses for `file` under `pipeline` (`None` for `train_augmented`
    /// when `bottleneck.augmented_views` is 0).
    pub fn for_file(pipeline: &Pipeline, file: FeatureFile) -> Option<Self> {
        let b = &pipeline.bottleneck;
        let views = if file.is_augmented() {
            if b.augmented_views == 0 {
                return None;
            }
            Some(ViewSettings {
                count: b.augmented_views,
                augment: b.augment.clone(),
                seed: pipeline.data.seed,
            })
        } else {
            None
        };
        Some(Self {
            views,
            ..Self::plain(pipeline, FeaturePart::Features)
        })
    }

    /// The settings of `part` of the pipeline's backbone on plain images (no views).
    pub fn plain(pipeline: &Pipeline, part: FeaturePart) -> Self {
        let b = &pipeline.bottleneck;
        Self {
            backbone: b.backbone,
            part,
            target_size: b.input_size(),
            interpolation: pipeline.data.interpolation,
            preprocessing: b.pixel_preprocessing(),
            views: None,
        }
    }

    /// The settings of the fine-tuning view cache: the frozen part on `finetune.views`
    /// augmented views (`[finetune.augment]`) of every training image.
    pub fn finetune_views(pipeline: &Pipeline) -> Self {
        Self {
            views: Some(ViewSettings {
                count: pipeline.finetune.views,
                augment: pipeline.finetune.augment.clone(),
                seed: pipeline.data.seed,
            }),
            ..Self::plain(pipeline, FeaturePart::Frozen)
        }
    }

    /// The image size.
    pub fn target(&self) -> TargetSize {
        TargetSize::new(self.target_size[0], self.target_size[1])
    }

    /// The shape `(C, h, w)` of one row, or an error when the image size is too small for the
    /// backbone (or the part is the frozen part of a backbone that cannot be fine-tuned).
    pub fn feature_shape(&self) -> Result<(usize, usize, usize)> {
        let [h, w] = self.target_size;
        let input = (h as usize, w as usize);
        let shape = match self.part {
            FeaturePart::Features => self.backbone.feature_shape(input),
            FeaturePart::Frozen => {
                if self.backbone.finetune_split().is_none() {
                    return Err(FeaturesError::Settings(
                        self.backbone.finetune_unsupported().to_string(),
                    ));
                }
                self.backbone.frozen_shape(input)
            }
        };
        shape.ok_or_else(|| {
            FeaturesError::Settings(format!(
                "bottleneck.target_size [{h}, {w}] is too small for {}: each side must be at \
                 least {}",
                self.backbone,
                self.backbone.min_input()
            ))
        })
    }

    /// What a row holds, for the metadata: the backbone's features name
    /// (`block5_pool`, `pooled`) or `frozen`.
    pub fn describe(&self) -> String {
        match self.part {
            FeaturePart::Features => {
                format!("{} {}", self.backbone, self.backbone.features_name())
            }
            FeaturePart::Frozen => format!("{} frozen part", self.backbone),
        }
    }

    /// Rows per image: the number of views, or 1 for plain features.
    pub fn rows_per_image(&self) -> usize {
        self.views.as_ref().map_or(1, |v| v.count)
    }
}

/// The image rows a shard file holds, out of the split's `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// The shard, 1-based.
    pub index: usize,
    /// The number of shards.
    pub count: usize,
    /// The first image (index into [`FeatureMeta::files`]).
    pub start: usize,
    /// One past the last image.
    pub end: usize,
}

/// The description of a features artifact stored in its metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    /// [`FEATURES_FORMAT`].
    pub format: u32,
    /// The split the images come from.
    pub split: Split,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Every image of the split, relative to the split's folder with `/` separators, in row
    /// order (a shard holds the rows of `files[start..end]`).
    pub files: Vec<String>,
    /// The extraction settings.
    #[serde(flatten)]
    pub settings: ExtractSettings,
    /// What a row holds (`vgg16 block5_pool`, `efficientnet_lite0 pooled`, ...).
    pub holds: String,
    /// sha256 of the backbone's weights file.
    pub weights_sha256: String,
    /// `[C, h, w]` of one row.
    pub feature_shape: [usize; 3],
    /// The content digest of the split's images (see [`imagedata::SplitData`]).
    pub data_digest: String,
    /// The slice a shard file holds (`None` for a whole file).
    pub shard: Option<ShardMeta>,
}

impl FeatureMeta {
    /// The images whose rows the file holds: a shard's range, else all of them.
    pub fn image_range(&self) -> std::ops::Range<usize> {
        match self.shard {
            Some(s) => s.start..s.end,
            None => 0..self.files.len(),
        }
    }

    /// The number of rows of `features` and `labels`.
    pub fn rows(&self) -> usize {
        self.image_range().len() * self.settings.rows_per_image()
    }

    /// The metadata keys of this description (every field as JSON under `bottleneck.<field>`).
    pub fn to_metadata(&self) -> Metadata {
        let mut out = Metadata::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) {
            for (k, v) in map {
                out.insert(format!("{PREFIX}{k}"), v.to_string());
            }
        }
        out
    }

    /// Reads the description back from a file's metadata; `path` names the file in errors.
    pub fn from_metadata(meta: &Metadata, path: &Path) -> Result<Self> {
        let mut map = serde_json::Map::new();
        for (k, v) in meta {
            if let Some(field) = k.strip_prefix(PREFIX) {
                let value = serde_json::from_str(v).map_err(|e| {
                    FeaturesError::features(path, format!("metadata `{k}` is not valid JSON: {e}"))
                })?;
                map.insert(field.to_string(), value);
            }
        }
        if map.is_empty() {
            return Err(FeaturesError::features(
                path,
                "not a bottleneck features artifact (no `bottleneck.*` metadata)",
            ));
        }
        let meta: Self = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| FeaturesError::features(path, format!("bad features metadata: {e}")))?;
        if meta.format != FEATURES_FORMAT {
            return Err(FeaturesError::features(
                path,
                format!(
                    "features format {} is not supported (this build reads format \
                     {FEATURES_FORMAT}); rerun the extraction",
                    meta.format
                ),
            ));
        }
        let range = meta.image_range();
        if range.start > range.end || range.end > meta.files.len() {
            return Err(FeaturesError::features(
                path,
                format!(
                    "shard rows {}..{} lie outside the {} files",
                    range.start,
                    range.end,
                    meta.files.len()
                ),
            ));
        }
        Ok(meta)
    }

    /// Reads the description and the raw metadata of the features file at `path` (its header
    /// only).
    pub fn read(path: &Path) -> Result<(Self, Metadata)> {
        let raw = artifact::read_metadata(path)?;
        let meta = Self::from_metadata(&raw, path)?;
        Ok((meta, raw))
    }

    /// Checks that `features` and `labels` tensors of the given shapes fit this description.
    pub fn check_shapes(&self, path: &Path, features: &[usize], labels: &[usize]) -> Result<()> {
        let rows = self.rows();
        let [c, h, w] = self.feature_shape;
        if features != [rows, c, h, w] {
            return Err(FeaturesError::features(
                path,
                format!(
                    "`features` has shape {features:?}, the metadata says [{rows}, {c}, {h}, {w}]"
                ),
            ));
        }
        if labels != [rows] {
            return Err(FeaturesError::features(
                path,
                format!("`labels` has shape {labels:?}, the metadata says [{rows}]"),
            ));
        }
        Ok(())
    }
}

/// The provenance of features `file` made with `settings` from data with content digest
/// `data_digest` and weights with sha256 `weights_sha256` (`shard`: one slice of it).
pub fn features_provenance(
    file: FeatureFile,
    settings: &ExtractSettings,
    shard: Option<Shard>,
    data_digest: &str,
    weights_sha256: &str,
) -> Provenance {
    let config = serde_json::json!({
        "format": FEATURES_FORMAT,
        "file": file.stem(),
        "settings": settings,
        "shard": shard.map(|s| [s.index, s.count]),
    });
    Provenance::new(layout::stage::EXTRACT, artifact::sha256_json(&config))
        .input("data", data_digest)
        .input("weights", weights_sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FeatureMeta {
        FeatureMeta {
            format: FEATURES_FORMAT,
            split: Split::Train,
            classes: vec!["cats".into(), "dogs".into()],
            files: vec!["cats/a.jpg".into(), "dogs/b.jpg".into()],
            settings: ExtractSettings {
                backbone: BackboneKind::Vgg16,
                part: FeaturePart::Features,
                target_size: [150, 150],
                interpolation: Interpolation::Nearest,
                preprocessing: Preprocessing::imagenet(),
                views: Some(ViewSettings {
                    count: 3,
                    augment: AugmentConfig::blog(),
                    seed: 42,
                }),
            },
            holds: "vgg16 block5_pool".into(),
            weights_sha256: "ab".repeat(32),
            feature_shape: [512, 4, 4],
            data_digest: "cd".repeat(32),
            shard: Some(ShardMeta {
                index: 2,
                count: 2,
                start: 1,
                end: 2,
            }),
        }
    }

    #[test]
    fn metadata_round_trip_with_readable_keys() {
        let m = sample();
        let raw = m.to_metadata();
        assert_eq!(raw["bottleneck.files"], r#"["cats/a.jpg","dogs/b.jpg"]"#);
        assert_eq!(raw["bottleneck.target_size"], "[150,150]");
        assert!(raw["bottleneck.preprocessing"].contains("normalize"));
        assert!(raw.contains_key("bottleneck.weights_sha256"));
        let back = FeatureMeta::from_metadata(&raw, Path::new("x")).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.rows(), 3);
        assert_eq!(back.image_range(), 1..2);
    }

    #[test]
    fn foreign_or_broken_metadata_is_named() {
        let p = Path::new("artifacts/bottleneck/train.safetensors");
        let err = FeatureMeta::from_metadata(&Metadata::new(), p).unwrap_err();
        assert!(
            err.to_string().contains("train.safetensors")
                && err
                    .to_string()
                    .contains("not a bottleneck features artifact"),
            "{err}"
        );
        let mut raw = sample().to_metadata();
        raw.insert("bottleneck.format".into(), "7".into());
        let err = FeatureMeta::from_metadata(&raw, p).unwrap_err().to_string();
        assert!(err.contains("format 7"), "{err}");
        let mut raw = sample().to_metadata();
        raw.insert("bottleneck.classes".into(), "[oops".into());
        let err = FeatureMeta::from_metadata(&raw, p).unwrap_err().to_string();
        assert!(err.contains("bottleneck.classes"), "{err}");
        let mut raw = sample().to_metadata();
        raw.remove("bottleneck.data_digest");
        assert!(FeatureMeta::from_metadata(&raw, p).is_err());
    }

    #[test]
    fn provenance_separates_files_settings_and_shards() {
        let s = sample().settings;
        let a = features_provenance(FeatureFile::Train, &s, None, "d", "w");
        assert_eq!(
            a,
            features_provenance(FeatureFile::Train, &s, None, "d", "w")
        );
        let shard = Shard { index: 1, count: 2 };
        for other in [
            features_provenance(FeatureFile::Validation, &s, None, "d", "w"),
            features_provenance(FeatureFile::Train, &s, Some(shard), "d", "w"),
            features_provenance(FeatureFile::Train, &s, None, "d2", "w"),
            features_provenance(FeatureFile::Train, &s, None, "d", "w2"),
            features_provenance(
                FeatureFile::Train,
                &ExtractSettings {
                    preprocessing: Preprocessing::rescale(1.0 / 255.0),
                    ..s.clone()
                },
                None,
                "d",
                "w",
            ),
        ] {
            assert!(a.difference(&other).is_some());
        }
    }

    #[test]
    fn paths_and_shapes() {
        let dir = Path::new("a/bottleneck");
        assert_eq!(
            feature_path(dir, FeatureFile::TrainAugmented, None),
            dir.join("train_augmented.safetensors")
        );
        assert_eq!(
            feature_path(
                dir,
                FeatureFile::Validation,
                Some(Shard { index: 2, count: 5 })
            ),
            dir.join("validation.shard-2-of-5.safetensors")
        );
        let mut s = sample().settings;
        assert_eq!(s.feature_shape().unwrap(), (512, 4, 4));
        s.target_size = [20, 150];
        assert!(
            s.feature_shape()
                .unwrap_err()
                .to_string()
                .contains("too small")
        );
    }
}
