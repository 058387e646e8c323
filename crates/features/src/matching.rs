//! Whether a features file can stand for running a backbone over a folder of images: what
//! `classify evaluate` and `classify calibrate` check before reading the features `extract`
//! (or the fine-tuner's validation cache) already holds instead of running the backbone again.
//!
//! A file stands for the backbone's output on a folder when it is a whole (not sharded) file
//! of plain rows (not augmented views), made by `extract`'s extraction loop, of the same part
//! of the same backbone with the same weights (sha256), on images resized to the same size
//! with the same filter and preprocessed the same way, from the same images (the folder's
//! content digest, its classes and its files in row order), and its bytes check out against
//! the digest it records ([`Header::verify`]).

use std::path::Path;

use artifact::{Freshness, check_fresh};
use imagedata::Split;

use crate::error::{FeaturesError, Result};
use crate::load::{Header, features_digest};
use crate::meta::{ExtractSettings, FeatureFile, features_provenance};

/// The plain (not augmented) features file of `split`: `train` or `validation`.
pub fn plain_file(split: Split) -> FeatureFile {
    match split {
        Split::Validation => FeatureFile::Validation,
        _ => FeatureFile::Train,
    }
}

impl Header {
    /// Reads the header of a whole features file of plain rows at `path`, of either split and
    /// either part: what `extract` writes (`bottleneck/{train,validation}.safetensors`) or the
    /// fine-tuner's validation cache (`finetune/validation_frozen.safetensors`). Refuses a
    /// missing file, one without the extraction's provenance, a shard and augmented views.
    /// Only the header is read: check what it holds with [`Header::settings_difference`] and
    /// [`Header::images_difference`], and its bytes with [`Header::verify`].
    pub fn read_plain(path: &Path) -> Result<Self> {
        let (meta, raw) = Self::read_extracted(path)?;
        let bad = |reason: String| FeaturesError::Unusable {
            path: path.to_path_buf(),
            reason,
        };
        if let Some(s) = meta.shard {
            return Err(bad(format!(
                "it is shard {}/{} only; join the shards with `extract merge`",
                s.index, s.count
            )));
        }
        if meta.settings.views.is_some() {
            return Err(bad("it holds augmented views, not the plain images".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: plain_file(meta.split),
            digest: features_digest(&raw),
            meta,
        })
    }

    /// What differs between the features and the output of `settings` (the part of the
    /// backbone, image size, resize filter and preprocessing, on plain images) with the
    /// weights whose sha256 is `weights_sha256`; `None` when nothing does.
    pub fn settings_difference(
        &self,
        settings: &ExtractSettings,
        weights_sha256: &str,
    ) -> Option<String> {
        let found = &self.meta.settings;
        let json = |p: &imagedata::Preprocessing| serde_json::to_string(p).unwrap_or_default();
        if found.backbone != settings.backbone {
            Some(format!(
                "it holds `{}` features, the model is built on `{}`",
                found.backbone, settings.backbone
            ))
        } else if found.part != settings.part {
            Some(format!(
                "it holds the {}, the model needs the {}",
                self.meta.holds,
                settings.describe()
            ))
        } else if !self
            .meta
            .weights_sha256
            .eq_ignore_ascii_case(weights_sha256)
        {
            Some(format!(
                "it was made with other {} weights (sha256 {}, the model's are {})",
                found.backbone,
                short(&self.meta.weights_sha256),
                short(weights_sha256)
            ))
        } else if found.target_size != settings.target_size {
            Some(format!(
                "it holds images of size {:?}, the model's input size is {:?}",
                found.target_size, settings.target_size
            ))
        } else if found.interpolation != settings.interpolation {
            Some(format!(
                "its images were resized with {:?}, the model's with {:?}",
                found.interpolation, settings.interpolation
            ))
        } else if found.preprocessing != settings.preprocessing {
            Some(format!(
                "its images were preprocessed with {}, the model's with {}",
                json(&found.preprocessing),
                json(&settings.preprocessing)
            ))
        } else if found.views != settings.views {
            Some("it holds augmented views, not the plain images".into())
        } else {
            None
        }
    }

    /// What differs between the images the features were made from and a folder with
    /// classes `classes`, files `files` (relative to the folder, `/`-separated, in row
    /// order) and content digest `data_digest` ([`imagedata::ImageFolder::content_digest`]);
    /// `None` when they are the same images.
    pub fn images_difference(
        &self,
        classes: &[String],
        files: &[String],
        data_digest: &str,
    ) -> Option<String> {
        let meta = &self.meta;
        if meta.data_digest != data_digest {
            Some(if meta.files == files {
                "it was extracted from other contents of the same file names".to_string()
            } else {
                format!(
                    "it was extracted from other images ({} files then, {} in the folder)",
                    meta.files.len(),
                    files.len()
                )
            })
        } else if meta.classes != classes {
            Some(format!(
                "its classes {:?} differ from {:?}",
                meta.classes, classes
            ))
        } else if meta.files != files {
            Some("its rows list other files than the folder".into())
        } else {
            None
        }
    }

    /// Checks that the file's provenance is the one its description implies (the extraction
    /// of these settings from these images with these weights) and that its bytes are those
    /// it was written with (the data digest it records).
    pub fn verify(&self) -> Result<()> {
        let meta = &self.meta;
        let expected = features_provenance(
            self.file,
            &meta.settings,
            None,
            &meta.data_digest,
            &meta.weights_sha256,
        );
        let reason = match check_fresh(&self.path, &expected)? {
            Freshness::UpToDate => return Ok(()),
            Freshness::Missing => "it is gone".to_string(),
            Freshness::Stale(why) => format!("its provenance or bytes do not check out ({why})"),
        };
        Err(FeaturesError::Unusable {
            path: self.path.clone(),
            reason,
        })
    }
}

/// The first 12 hex digits of a digest, for messages.
fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{FEATURES_FORMAT, FeatureMeta, FeaturePart, ShardMeta, ViewSettings};
    use candle_core::{Device, Tensor};
    use imagedata::{AugmentConfig, Interpolation, Preprocessing};
    use models::BackboneKind;

    fn settings() -> ExtractSettings {
        ExtractSettings {
            backbone: BackboneKind::Vgg16,
            part: FeaturePart::Features,
            target_size: [32, 32],
            interpolation: Interpolation::Nearest,
            preprocessing: Preprocessing::imagenet(),
            views: None,
        }
    }

    fn meta() -> FeatureMeta {
        FeatureMeta {
            format: FEATURES_FORMAT,
            split: Split::Validation,
            classes: vec!["a".into(), "b".into()],
            files: vec!["a/1.png".into(), "b/2.png".into()],
            settings: settings(),
            holds: "vgg16 block5_pool".into(),
            weights_sha256: "ab".repeat(32),
            feature_shape: [512, 1, 1],
            data_digest: "cd".repeat(32),
            shard: None,
        }
    }

    /// Writes a features file described by `meta` (zeros) with its provenance.
    fn write(path: &Path, meta: &FeatureMeta) {
        let rows = meta.rows();
        let x = Tensor::zeros((rows, 512, 1, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
        let l = Tensor::zeros(rows, candle_core::DType::U32, &Device::Cpu).unwrap();
        let mut metadata = meta.to_metadata();
        metadata.extend(
            features_provenance(
                plain_file(meta.split),
                &meta.settings,
                None,
                &meta.data_digest,
                &meta.weights_sha256,
            )
            .to_metadata(),
        );
        artifact::save(path, [("features", &x), ("labels", &l)], &metadata).unwrap();
    }

    #[test]
    fn a_matching_file_is_read_and_each_difference_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validation.safetensors");
        let m = meta();
        write(&path, &m);
        let h = Header::read_plain(&path).unwrap();
        assert_eq!(h.file, FeatureFile::Validation);
        h.verify().unwrap();
        let w = "ab".repeat(32);
        assert_eq!(h.settings_difference(&settings(), &w), None);
        assert_eq!(
            h.images_difference(&m.classes, &m.files, &m.data_digest),
            None
        );

        let other = |f: &dyn Fn(&mut ExtractSettings)| {
            let mut s = settings();
            f(&mut s);
            h.settings_difference(&s, &w).unwrap()
        };
        assert!(other(&|s| s.target_size = [64, 64]).contains("input size"));
        assert!(other(&|s| s.interpolation = Interpolation::Bilinear).contains("resized"));
        assert!(
            other(&|s| s.preprocessing = Preprocessing::rescale(1.0 / 255.0))
                .contains("preprocessed")
        );
        assert!(other(&|s| s.part = FeaturePart::Frozen).contains("needs the"));
        assert!(other(&|s| s.backbone = BackboneKind::EfficientNetLite0).contains("efficientnet"));
        let weights = h
            .settings_difference(&settings(), &"ef".repeat(32))
            .unwrap();
        assert!(weights.contains("other vgg16 weights"), "{weights}");
        let images = h
            .images_difference(&m.classes, &m.files, &"00".repeat(32))
            .unwrap();
        assert!(images.contains("other contents"), "{images}");
        let fewer = h
            .images_difference(&m.classes, &m.files[..1], &"00".repeat(32))
            .unwrap();
        assert!(fewer.contains("2 files then, 1"), "{fewer}");

        // Damaged bytes are refused by verify.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let h = Header::read_plain(&path).unwrap();
        let err = h.verify().unwrap_err().to_string();
        assert!(err.contains("do not check out"), "{err}");
    }

    #[test]
    fn shards_views_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.safetensors");
        assert!(matches!(
            Header::read_plain(&missing),
            Err(FeaturesError::Missing { .. })
        ));
        let shard = dir.path().join("shard.safetensors");
        let mut m = meta();
        m.shard = Some(ShardMeta {
            index: 1,
            count: 2,
            start: 0,
            end: 1,
        });
        write(&shard, &m);
        let err = Header::read_plain(&shard).unwrap_err().to_string();
        assert!(err.contains("shard 1/2"), "{err}");
        let views = dir.path().join("views.safetensors");
        let mut m = meta();
        m.settings.views = Some(ViewSettings {
            count: 1,
            augment: AugmentConfig::default(),
            seed: 1,
        });
        write(&views, &m);
        let err = Header::read_plain(&views).unwrap_err().to_string();
        assert!(err.contains("augmented views"), "{err}");
    }
}
