//! The extraction loop: decode and preprocess one batch of images while the backbone runs on
//! the previous one, and hand each batch's output to a sink (usually a streaming artifact
//! writer), so memory stays bounded whatever the number of images.
//!
//! Why not `flow_from_directory`: it decodes the whole folder into an in-memory cache first,
//! which pays off when epochs re-read the images; extraction reads each image exactly once, so
//! here images are decoded per batch (in parallel with rayon) and dropped as soon as the
//! backbone has seen them. At most two batches of pixels are alive at a time.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use artifact::{Metadata, StreamWriter};
use candle_core::{DType, Device, Tensor};
use engine::Interrupt;
use image::RgbImage;
use imagedata::rng::names;
use imagedata::{AugmentConfig, ImageDataGenerator, Limits, load_resized};
use indicatif::ProgressBar;
use models::Backbone;
use rayon::prelude::*;

use crate::error::{FeaturesError, Result};
use crate::meta::{ExtractSettings, FeaturePart};

/// A backbone and the settings that turn image files into one of its outputs.
#[derive(Debug, Clone)]
pub struct Extractor {
    backbone: Backbone,
    settings: ExtractSettings,
    feature_shape: (usize, usize, usize),
    generator: ImageDataGenerator,
    limits: Limits,
}

/// Which images to run: `files[images]`, each as [`ExtractSettings::rows_per_image`] rows.
///
/// `files` is the whole split, so an image's index (which seeds its augmented views) is the
/// same whether it is extracted alone, in a shard or in a full run.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// Every image of the split, in row order.
    pub files: &'a [PathBuf],
    /// The images to run.
    pub images: Range<usize>,
    /// Rows per forward batch.
    pub batch_size: usize,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStats {
    /// Rows computed (images × views).
    pub rows: usize,
    /// Wall-clock seconds, decoding included.
    pub seconds: f64,
}

impl RunStats {
    /// Rows per second.
    pub fn rows_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl Extractor {
    /// An extractor running `backbone`'s part `settings.part` on images prepared as
    /// `settings` says. Checks that the backbone is the settings' one, the image size and the
    /// augmentation.
    pub fn new(backbone: Backbone, settings: ExtractSettings) -> Result<Self> {
        if backbone.kind() != settings.backbone {
            return Err(FeaturesError::Settings(format!(
                "the settings are for the backbone `{}`, the backbone loaded is `{}`",
                settings.backbone,
                backbone.kind()
            )));
        }
        let feature_shape = settings.feature_shape()?;
        let augment = match &settings.views {
            Some(v) if v.count == 0 => {
                return Err(FeaturesError::Settings(
                    "augmented views: the view count must be at least 1".into(),
                ));
            }
            Some(v) => v.augment.clone(),
            None => AugmentConfig::default(),
        };
        let generator = ImageDataGenerator::new(augment, settings.preprocessing)
            .map_err(|e| FeaturesError::Settings(format!("bottleneck: {e}")))?;
        Ok(Self {
            backbone,
            settings,
            feature_shape,
            generator,
            limits: Limits::default(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ExtractSettings {
        &self.settings
    }

    /// The shape `(C, h, w)` of one output row.
    pub fn feature_shape(&self) -> (usize, usize, usize) {
        self.feature_shape
    }

    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        &self.backbone
    }

    /// The number of rows `job` produces.
    pub fn rows(&self, job: &Job) -> usize {
        job.images.len() * self.settings.rows_per_image()
    }

    /// Decodes, resizes, augments (for views) and preprocesses rows `rows` of `job` (row
    /// indices relative to the job) into a CPU batch `[n, 3, H, W]`.
    pub fn prepare(&self, job: &Job, rows: Range<usize>) -> Result<Tensor> {
        let k = self.settings.rows_per_image();
        let target = self.settings.target();
        let (h, w) = (target.height as usize, target.width as usize);
        let n = rows.len();
        if n == 0 {
            return Tensor::zeros((0, 3, h, w), DType::F32, &Device::Cpu)
                .map_err(FeaturesError::tensor("empty batch"));
        }
        let first = job.images.start + rows.start / k;
        let last = job.images.start + (rows.end - 1) / k;
        let files = job.files.get(first..=last).ok_or_else(|| {
            FeaturesError::Settings(format!(
                "images {first}..={last} are out of range ({} files)",
                job.files.len()
            ))
        })?;
        let decoded: Vec<RgbImage> = files
            .par_iter()
            .map(|f| load_resized(f, target, self.settings.interpolation, &self.limits))
            .collect::<std::result::Result<_, _>>()?;
        let plane = 3 * h * w;
        let mut data = vec![0f32; n * plane];
        data.par_chunks_mut(plane).enumerate().for_each(|(j, dst)| {
            let row = rows.start + j;
            let image = job.images.start + row / k;
            let src = decoded[image - first].as_raw();
            match &self.settings.views {
                None => self.generator.standardize_into(src, dst),
                Some(v) => {
                    let index = ((image as u64) << 32) | (row % k) as u64;
                    let mut rng = imagedata::rng::substream(v.seed, names::VIEWS, index);
                    let t = self
                        .generator
                        .random_transform(target.height, target.width, &mut rng);
                    self.generator
                        .transform_into(src, target.height, target.width, &t, dst);
                }
            }
        });
        Tensor::from_vec(data, (n, 3, h, w), &Device::Cpu)
            .map_err(FeaturesError::tensor("building an input batch"))
    }

    /// Runs the backbone's part on a batch `[n, 3, H, W]` (moved to the backbone's device).
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = x.to_device(self.backbone.device())?;
        match self.settings.part {
            FeaturePart::Features => self.backbone.features(&x),
            FeaturePart::Frozen => self.backbone.frozen(&x),
        }
    }

    /// Runs `job` in batches, calling `sink` with each batch's output `[n, C, h, w]` in row
    /// order, and advancing `progress` by the rows done. The next batch is decoded on a
    /// background thread while the backbone runs. `output` names the destination in
    /// messages; `interrupt`, when triggered, stops the run after the current batch with
    /// [`FeaturesError::Interrupted`].
    pub fn run(
        &self,
        job: &Job,
        output: &Path,
        mut sink: impl FnMut(Tensor) -> Result<()>,
        progress: &ProgressBar,
        interrupt: Option<&Interrupt>,
    ) -> Result<RunStats> {
        let started = Instant::now();
        let total = self.rows(job);
        let batch = job.batch_size.max(1);
        let batches: Vec<Range<usize>> = (0..total)
            .step_by(batch)
            .map(|lo| lo..(lo + batch).min(total))
            .collect();
        let k = self.settings.rows_per_image();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = sync_channel::<(Range<usize>, Result<Tensor>)>(1);
            scope.spawn(move || {
                for rows in batches {
                    let x = self.prepare(job, rows.clone());
                    let failed = x.is_err();
                    if tx.send((rows, x)).is_err() || failed {
                        break;
                    }
                }
            });
            for (rows, x) in rx {
                let x = x?;
                let first = job.images.start + rows.start / k;
                let y = self.forward(&x).map_err(FeaturesError::tensor(format!(
                    "{}: {} forward of a batch starting at {}",
                    output.display(),
                    self.settings.backbone,
                    job.files[first].display()
                )))?;
                sink(y)?;
                progress.inc(rows.len() as u64);
                if interrupt.is_some_and(Interrupt::is_triggered) {
                    return Err(FeaturesError::Interrupted {
                        path: output.to_path_buf(),
                    });
                }
            }
            Ok(())
        })?;
        Ok(RunStats {
            rows: total,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// Runs `job` and streams the outputs to a safetensors artifact at `path`: `features`
/// `[rows, C, h, w]` stored as `dtype`, then `labels` `[rows]` u32 (`labels` holds one entry
/// per file of the split; each image's label is repeated for its views). The file appears
/// atomically when complete; on any error nothing is left at `path`.
#[allow(clippy::too_many_arguments)]
pub fn extract_to_file(
    extractor: &Extractor,
    job: &Job,
    labels: &[u32],
    metadata: &Metadata,
    path: &Path,
    dtype: DType,
    progress: &ProgressBar,
    interrupt: Option<&Interrupt>,
) -> Result<RunStats> {
    if labels.len() != job.files.len() {
        return Err(FeaturesError::Settings(format!(
            "{} labels for {} files",
            labels.len(),
            job.files.len()
        )));
    }
    let rows = extractor.rows(job);
    let (c, h, w) = extractor.feature_shape();
    let mut writer = StreamWriter::create(
        path,
        &[
            ("features", dtype, vec![rows, c, h, w]),
            ("labels", DType::U32, vec![rows]),
        ],
        metadata,
    )?;
    let stats = extractor.run(
        job,
        path,
        |y| Ok(writer.append("features", &y)?),
        progress,
        interrupt,
    )?;
    let k = extractor.settings().rows_per_image();
    let row_labels: Vec<u32> = labels[job.images.clone()]
        .iter()
        .flat_map(|&l| std::iter::repeat_n(l, k))
        .collect();
    let labels = Tensor::from_vec(row_labels, rows, &Device::Cpu)
        .map_err(FeaturesError::tensor("labels"))?;
    writer.append("labels", &labels)?;
    writer.finish()?;
    Ok(stats)
}
