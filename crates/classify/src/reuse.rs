//! Evaluation from cached features: the frozen backbone is not run again over photos whose
//! outputs a stage already stored.
//!
//! `extract` stores the backbone's features of both splits (`<artifacts>/bottleneck/`), and
//! the fine-tuner the frozen part's outputs on the validation split
//! (`<artifacts>/finetune/validation_frozen.safetensors`). A model artifact knows neither the
//! pipeline nor the artifacts root, so the files are looked for beside the model, in the
//! standard layout ([`FeatureLookup::Beside`]), or named (`--features FILE`).
//!
//! A file is read instead of running the backbone only when it holds exactly what the
//! network would compute: the part the model's head runs on (a top model: the backbone's
//! features; a fine-tuned model: the frozen part's output), of its backbone with its weights
//! (sha256), on images resized to its input size with its filter and preprocessed its way,
//! from the folder's very images (content digest, classes and files in row order), whole and
//! plain, with bytes that check out ([`features::matching`]). Any other folder, and test-time
//! augmentation (the mirrored photos are not cached), runs the network as before.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use features::{ExtractSettings, FeaturePart, Features, FeaturesError, Header};
use imagedata::{ImageFolder, Interpolation};
use models::{Architecture, ModelSpec};
use pipeline::layout;
use stage::FeatureSource;

use crate::error::Result;

/// Where evaluation looks for cached backbone outputs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FeatureLookup {
    /// Beside the model, in the standard layout (`<data.artifacts>/top`,
    /// `<data.artifacts>/bottleneck`, `<data.artifacts>/finetune`): for a top model
    /// `<model dir>/../bottleneck/validation.safetensors` and `train.safetensors`, for a
    /// fine-tuned model `<model dir>/validation_frozen.safetensors`.
    #[default]
    Beside,
    /// This features file only (`--features FILE`); a note says why when it does not match.
    File(PathBuf),
    /// Never: the network always runs over the images (`--no-cached-features`).
    Off,
}

/// What an evaluation reads: the checked header of features that stand for the backbone's
/// output on the folder, or nothing (and why, when that is worth a note).
#[derive(Debug, Clone)]
pub enum FeaturePlan {
    /// Read these features; run only the network after them.
    Cached(Box<Header>),
    /// Run the network over the images.
    Computed(Option<String>),
}

impl FeaturePlan {
    /// Where the evaluation's backbone outputs come from, as its report records it.
    pub fn source(&self) -> FeatureSource {
        match self {
            Self::Cached(header) => FeatureSource::Cached {
                path: header.path.clone(),
                made_by: made_by(header).into(),
                digest: header.digest.clone(),
            },
            Self::Computed(note) => FeatureSource::Computed { note: note.clone() },
        }
    }

    /// The digest of the features read (`None` when the network runs over the images).
    pub fn digest(&self) -> Option<&str> {
        match self {
            Self::Cached(header) => Some(&header.digest),
            Self::Computed(_) => None,
        }
    }
}

/// The stage that caches files holding `header`'s part: `extract` the backbone's features,
/// the fine-tuner the frozen part's outputs.
fn made_by(header: &Header) -> &'static str {
    match header.meta.settings.part {
        FeaturePart::Features => layout::stage::EXTRACT,
        FeaturePart::Frozen => layout::stage::FINETUNE,
    }
}

/// The part of the backbone the head of a model of `architecture` runs on (`None`: the model
/// has no backbone).
fn head_input(architecture: Architecture) -> Option<FeaturePart> {
    match architecture {
        Architecture::SmallCnn => None,
        Architecture::Top => Some(FeaturePart::Features),
        Architecture::Finetune => Some(FeaturePart::Frozen),
    }
}

/// The files [`FeatureLookup::Beside`] looks at for the model file `model_file` whose head
/// runs on `part`.
fn beside(model_file: &Path, part: FeaturePart) -> Vec<PathBuf> {
    let dir = model_file.parent().unwrap_or_else(|| Path::new("."));
    match part {
        FeaturePart::Features => {
            let bottleneck = dir
                .parent()
                .unwrap_or_else(|| Path::new(".."))
                .join("bottleneck");
            ["validation", "train"]
                .iter()
                .map(|stem| bottleneck.join(format!("{stem}.safetensors")))
                .collect()
        }
        FeaturePart::Frozen => vec![dir.join("validation_frozen.safetensors")],
    }
}

/// The reason in a features error, without the path and the extraction hint.
fn reason(e: &FeaturesError) -> String {
    match e {
        FeaturesError::Missing { .. } => "no such file".into(),
        FeaturesError::Unusable { reason, .. } | FeaturesError::Stale { reason, .. } => {
            reason.clone()
        }
        other => other.to_string(),
    }
}

/// The images of the labelled folder `data` with the model's `classes`, as evaluation reads
/// them (`None` when they cannot be scanned: evaluation then says why).
fn scan(data: &Path, classes: &[String]) -> Option<ImageFolder> {
    let found = imagedata::folder::list_class_dirs(data).ok()?;
    if found != classes {
        return None;
    }
    ImageFolder::scan_classes(data, classes).ok()
}

/// What a model with spec `spec` and resize filter `interpolation`, stored at `model_file`,
/// reads for evaluating on the labelled folder `data` (content digest `data_digest`, when
/// already known; computed otherwise, only when some file's settings match): the first file
/// `lookup` names that stands for its backbone's output on these images. With `tta` the
/// network runs over the images (and their mirrors), with a note when features matched.
pub fn plan(
    model_file: &Path,
    spec: &ModelSpec,
    interpolation: Interpolation,
    data: &Path,
    data_digest: Option<&str>,
    tta: bool,
    lookup: &FeatureLookup,
) -> FeaturePlan {
    let explicit = match lookup {
        FeatureLookup::Off => return FeaturePlan::Computed(None),
        FeatureLookup::File(path) => Some(path.clone()),
        FeatureLookup::Beside => None,
    };
    let not_used = |path: &Path, why: String| {
        format!(
            "{} not used: {why}; the network runs over the images",
            path.display()
        )
    };
    let (Some(part), Some(backbone)) = (head_input(spec.architecture), &spec.backbone) else {
        return FeaturePlan::Computed(explicit.map(|p| {
            not_used(
                &p,
                format!("the {} model has no pretrained backbone", spec.architecture),
            )
        }));
    };
    let (h, w) = spec.target_size;
    let settings = ExtractSettings {
        backbone: backbone.kind,
        part,
        target_size: [h as u32, w as u32],
        interpolation,
        preprocessing: spec.preprocessing,
        views: None,
    };
    let candidates = match &explicit {
        Some(path) => vec![path.clone()],
        None => beside(model_file, part),
    };
    // Headers first (cheap); the folder is scanned and digested only for files whose
    // settings match.
    let mut notes = Vec::new();
    let mut matching = Vec::new();
    for path in candidates {
        match Header::read_plain(&path) {
            Ok(header) => match header.settings_difference(&settings, &backbone.sha256) {
                None => matching.push(header),
                Some(why) => notes.push((path, why, false)),
            },
            // Beside the model, a file that is not there is nothing to mention.
            Err(FeaturesError::Missing { .. }) if explicit.is_none() => {}
            Err(e) => notes.push((path, reason(&e), false)),
        }
    }
    let mut found = None;
    if !matching.is_empty() {
        match scan(data, &spec.classes) {
            None => {
                for header in &matching {
                    notes.push((
                        header.path.clone(),
                        "the folder cannot be read as the model's classes".into(),
                        false,
                    ));
                }
            }
            Some(folder) => {
                let digest = match data_digest {
                    Some(d) => Ok(d.to_string()),
                    None => folder.content_digest(),
                };
                let files = folder.relative_names();
                for header in matching {
                    let why = match &digest {
                        Err(e) => Some(e.to_string()),
                        Ok(d) => header.images_difference(&spec.classes, &files, d),
                    };
                    let why = why.or_else(|| header.verify().err().map(|e| reason(&e)));
                    match why {
                        // Features of other images are the usual case (the other split):
                        // worth a note only when the file was named.
                        Some(why) => notes.push((header.path.clone(), why, true)),
                        None => {
                            found = Some(header);
                            break;
                        }
                    }
                }
            }
        }
    }
    match found {
        Some(header) if tta => FeaturePlan::Computed(Some(format!(
            "--tta averages each photo with its mirror, which {} does not hold (it caches the \
             plain photos); the network runs over the images",
            header.path.display()
        ))),
        Some(header) => FeaturePlan::Cached(Box::new(header)),
        None => {
            let note = notes
                .into_iter()
                .find(|(_, _, other_images)| explicit.is_some() || !other_images)
                .map(|(path, why, _)| not_used(&path, why));
            FeaturePlan::Computed(note)
        }
    }
}

/// What `plan` needs of the model artifact `file`, from its metadata only (no weights are
/// read): its spec and resize filter (the default when it records none, as
/// [`crate::load_model`] does). `None` when the file is not a model artifact; loading it then
/// says why.
pub(crate) fn read_spec(file: &Path) -> Option<(ModelSpec, Interpolation)> {
    let meta = artifact::read_metadata(file).ok()?;
    let spec = ModelSpec::from_metadata(&meta, file).ok()?;
    let interpolation = match meta.get(engine::INTERPOLATION_KEY) {
        Some(raw) => serde_json::from_str(raw).ok()?,
        None => Interpolation::default(),
    };
    Some((spec, interpolation))
}

/// [`plan`] for the model artifact `file`, read from its metadata (nothing cached is used
/// when it cannot be read: loading the model then says why).
pub(crate) fn plan_for_file(
    file: &Path,
    data: &Path,
    data_digest: &str,
    tta: bool,
    lookup: &FeatureLookup,
) -> FeaturePlan {
    match read_spec(file) {
        Some((spec, interpolation)) => plan(
            file,
            &spec,
            interpolation,
            data,
            Some(data_digest),
            tta,
            lookup,
        ),
        None => FeaturePlan::Computed(None),
    }
}

/// Cached features loaded for an evaluation: the rows `[N, C, h, w]` on the model's device
/// in the folder's row order, their labels, and the image files they stand for.
pub(crate) struct CachedRows {
    /// The rows.
    pub(crate) x: Tensor,
    /// Their class indices `[N]`.
    pub(crate) labels: Tensor,
    /// The image files, in row order (`data` joined with each file of the features).
    pub(crate) paths: Vec<PathBuf>,
}

/// Loads the features `header` describes onto `device` (their shapes and labels checked),
/// with the image paths of `data` their rows stand for.
pub(crate) fn load(header: &Header, data: &Path, device: &Device) -> Result<CachedRows> {
    let features = Features::load(header.clone(), device)?;
    let paths = header.meta.files.iter().map(|f| data.join(f)).collect();
    Ok(CachedRows {
        x: features.x,
        labels: features.labels,
        paths,
    })
}
