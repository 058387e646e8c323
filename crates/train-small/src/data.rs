//! The training and validation images as batch sources.

use engine::FlowSource;
use imagedata::{
    Flow, FlowOptions, ImageDataGenerator, ImageSet, Interpolation, LoadOptions, OnError, Progress,
    SplitData, TargetSize,
};
use indicatif::{ProgressBar, ProgressStyle};
use stage::Result;

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
