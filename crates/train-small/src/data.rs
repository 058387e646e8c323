//! The training and validation images as batch sources.

use engine::FlowSource;
use extract::SplitData;
use imagedata::{
    ClassMode, Flow, FlowOptions, ImageDataGenerator, ImageSet, Interpolation, LoadOptions,
    OnError, Progress, TargetSize,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Result, TrainError};

/// The class mode used for `classes` under the setting `data.class_mode` (unset: binary for
/// two classes, categorical for more).
///
/// Two classes always train one sigmoid unit, even with `class_mode = "categorical"`: a
/// two-way softmax is the same model with one redundant logit, and model artifacts record one
/// unit for two classes. `binary` with other than two classes and `none` are refused.
pub fn resolve_class_mode(setting: Option<ClassMode>, classes: &[String]) -> Result<ClassMode> {
    match (setting, classes.len()) {
        (Some(ClassMode::None), _) => Err(TrainError::Settings(
            "data.class_mode = \"none\" gives no labels to train on; use \"binary\" or \
             \"categorical\" (or leave it unset)"
                .into(),
        )),
        (Some(ClassMode::Binary), n) if n != 2 => Err(TrainError::Settings(format!(
            "data.class_mode = \"binary\" needs exactly 2 classes, the training data has {n}: \
             {}",
            classes.join(", ")
        ))),
        (_, 2) => Ok(ClassMode::Binary),
        _ => Ok(ClassMode::Categorical),
    }
}

/// Decodes and resizes every image of `split` once (in parallel, with a progress bar on
/// stderr when `progress` is set and stderr is a terminal) and returns a labelled batch
/// source over them, with `generator`'s augmentation and preprocessing.
///
/// Any image that cannot be decoded is an error naming the file: training on a silently
/// smaller set would make its results incomparable.
pub fn load_flow(
    split: &SplitData,
    target_size: [u32; 2],
    interpolation: Interpolation,
    generator: ImageDataGenerator,
    options: FlowOptions,
    progress: bool,
) -> Result<FlowSource> {
    let load = LoadOptions {
        target_size: TargetSize::from(target_size),
        interpolation,
        on_error: OnError::Fail,
        ..LoadOptions::default()
    };
    let bar = if progress {
        let style = ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {pos:>6}/{len:6} images  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = ProgressBar::new(split.len() as u64).with_style(style);
        bar.set_prefix(format!("loading {}", split.split));
        bar
    } else {
        ProgressBar::hidden()
    };
    let report = |p: Progress| bar.set_position(p.done as u64);
    let loaded = ImageSet::load(&split.files, Some(&split.labels), &load, Some(&report));
    bar.finish_and_clear();
    let (set, _) = loaded?;
    let flow = Flow::new(set, split.classes.clone(), generator, options)?;
    Ok(FlowSource::new(flow)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn class_modes_follow_the_class_count() {
        assert_eq!(
            resolve_class_mode(None, &names(2)).unwrap(),
            ClassMode::Binary
        );
        assert_eq!(
            resolve_class_mode(None, &names(3)).unwrap(),
            ClassMode::Categorical
        );
        assert_eq!(
            resolve_class_mode(Some(ClassMode::Categorical), &names(2)).unwrap(),
            ClassMode::Binary
        );
        assert_eq!(
            resolve_class_mode(Some(ClassMode::Categorical), &names(4)).unwrap(),
            ClassMode::Categorical
        );
        let e = resolve_class_mode(Some(ClassMode::Binary), &names(3))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exactly 2 classes") && e.contains("c0, c1, c2"),
            "{e}"
        );
        let e = resolve_class_mode(Some(ClassMode::None), &names(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no labels"), "{e}");
    }
}
