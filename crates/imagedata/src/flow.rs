//! Batches: Keras' `flow(x, y)` and `flow_from_directory`, with per-epoch shuffling, seeded
//! augmentation, NCHW f32 candle tensors and background prefetching.
//!
//! Everything a batch contains is a function of `(seed, epoch, batch index)` only: the order of
//! epoch `k` comes from the stream `substream(seed, "shuffle", k)` and the transform of sample
//! `i` in epoch `k` from `substream(seed, "augment", k << 32 | i)`. So batches are the same
//! whether they are prepared in the background or not, whatever the thread timing, and a run
//! resumed at epoch `k` sees exactly what an uninterrupted run would have seen.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use image::{ImageFormat, RgbImage};
use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::config::{ClassMode, Interpolation, TargetSize};
use crate::dataset::{ImageSet, LoadOptions, LoadReport, OnError, Progress};
use crate::decode::Limits;
use crate::error::DataError;
use crate::folder::ImageFolder;
use crate::generator::ImageDataGenerator;
use crate::rng::{names, substream};

/// The format of images written by `save_to_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SaveFormat {
    /// PNG (Keras' default), lossless.
    #[default]
    Png,
    /// JPEG at quality 95, with the extension `jpeg` as Keras writes it.
    Jpeg,
}

impl SaveFormat {
    /// The file extension Keras uses (`png`, `jpeg`).
    pub fn extension(self) -> &'static str {
        match self {
            SaveFormat::Png => "png",
            SaveFormat::Jpeg => "jpeg",
        }
    }
}

/// Batching options shared by [`ImageDataGenerator::flow`] and
/// [`ImageDataGenerator::flow_from_directory`], with Keras' names and defaults (except `seed`,
/// which Keras leaves random and this crate never does).
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Images per batch; the last batch of an epoch holds the remainder.
    pub batch_size: usize,
    /// Reshuffle the samples at the start of every epoch.
    pub shuffle: bool,
    /// Seed of the shuffle and augmentation streams.
    pub seed: u64,
    /// Batches prepared ahead on a background thread (0: prepare each batch when asked).
    pub prefetch: usize,
    /// Also write every augmented image into this folder (created if missing).
    pub save_to_dir: Option<PathBuf>,
    /// File name prefix for `save_to_dir`.
    pub save_prefix: String,
    /// File format for `save_to_dir`.
    pub save_format: SaveFormat,
    /// Where batch tensors are created.
    pub device: Device,
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            batch_size: 32,
            shuffle: true,
            seed: 0,
            prefetch: 2,
            save_to_dir: None,
            save_prefix: String::new(),
            save_format: SaveFormat::Png,
            device: Device::Cpu,
        }
    }
}

/// How `flow_from_directory` finds, decodes and labels images (Keras' arguments of the same
/// names; `limits` and `on_error` are this crate's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryOptions {
    /// Every image is resized to this size when first decoded.
    pub target_size: TargetSize,
    /// The resampling filter for that resize.
    pub interpolation: Interpolation,
    /// How labels are produced; `binary` needs exactly two classes.
    pub class_mode: ClassMode,
    /// Use these classes, in this order, instead of every subfolder sorted.
    pub classes: Option<Vec<String>>,
    /// Limits against oversized images.
    pub limits: Limits,
    /// What to do with files that cannot be decoded.
    pub on_error: OnError,
}

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[n, 3, height, width]` f32, augmented and preprocessed.
    pub images: Tensor,
    /// `[n]` u32 class indices, or `None` when the flow has no labels.
    pub labels: Option<Tensor>,
    /// The sample index (into the flow's [`ImageSet`]) of each image.
    pub indices: Vec<usize>,
    /// The source file of each image (empty when the images came from memory).
    pub paths: Vec<PathBuf>,
    /// The epoch this batch belongs to.
    pub epoch: usize,
    /// The batch's position within its epoch.
    pub index: usize,
}

impl Batch {
    /// Number of images in the batch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether the batch is empty (never true for a produced batch).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

struct FlowInner {
    set: ImageSet,
    classes: Vec<String>,
    generator: ImageDataGenerator,
    options: FlowOptions,
}

/// An endless supply of epochs of batches over an [`ImageSet`]; cheap to clone.
#[derive(Clone)]
pub struct Flow {
    inner: Arc<FlowInner>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("samples", &self.inner.set.len())
            .field("size", &self.inner.set.size())
            .field("classes", &self.inner.classes)
            .field("batch_size", &self.inner.options.batch_size)
            .field("shuffle", &self.inner.options.shuffle)
            .field("seed", &self.inner.options.seed)
            .finish()
    }
}

impl ImageDataGenerator {
    /// Keras' `flow(x, y)`: batches over in-memory images (all of one size) with optional
    /// labels.
    pub fn flow(
        &self,
        images: Vec<RgbImage>,
        labels: Option<Vec<u32>>,
        options: FlowOptions,
    ) -> Result<Flow, DataError> {
        let set = ImageSet::from_images(images, labels)?;
        Flow::new(set, Vec::new(), self.clone(), options)
    }

    /// Keras' `flow_from_directory`: scans `dir` (one subfolder per class), decodes and resizes
    /// every image once, in parallel, calling `progress` as files complete, and returns the
    /// flow with a report of the files left out (with [`OnError::Skip`]).
    pub fn flow_from_directory(
        &self,
        dir: &Path,
        directory: &DirectoryOptions,
        options: FlowOptions,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<(Flow, LoadReport), DataError> {
        // Refuse bad options before the (slow) first pass.
        check_options(self, &options)?;
        directory
            .target_size
            .validate()
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        let folder = match &directory.classes {
            Some(classes) => ImageFolder::scan_classes(dir, classes)?,
            None => ImageFolder::scan(dir)?,
        };
        if directory.class_mode == ClassMode::Binary && folder.classes.len() != 2 {
            return Err(DataError::Dataset {
                path: dir.to_path_buf(),
                detail: format!(
                    "class_mode \"binary\" needs exactly 2 classes, found {}: {}",
                    folder.classes.len(),
                    folder.classes.join(", ")
                ),
            });
        }
        let load = LoadOptions {
            target_size: directory.target_size,
            interpolation: directory.interpolation,
            limits: directory.limits,
            on_error: directory.on_error,
        };
        let (mut set, report) =
            ImageSet::load(&folder.files, Some(&folder.labels), &load, progress)?;
        if directory.class_mode == ClassMode::None {
            set = set.without_labels();
        }
        let flow = Flow::new(set, folder.classes, self.clone(), options)?;
        Ok((flow, report))
    }
}

impl Flow {
    /// A flow over `set`, whose labels index `classes` (may be empty for unnamed labels).
    pub fn new(
        set: ImageSet,
        classes: Vec<String>,
        generator: ImageDataGenerator,
        options: FlowOptions,
    ) -> Result<Self, DataError> {
        check_options(&generator, &options)?;
        if set.is_empty() {
            return Err(DataError::Invalid("no images to flow".to_string()));
        }
        Ok(Flow {
            inner: Arc::new(FlowInner {
                set,
                classes,
                generator,
                options,
            }),
        })
    }

    /// Batches per epoch (`ceil(samples / batch_size)`).
    pub fn len(&self) -> usize {
        self.inner.set.len().div_ceil(self.inner.options.batch_size)
    }

    /// Whether an epoch has no batches (never true for a constructed flow).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of samples per epoch.
    pub fn samples(&self) -> usize {
        self.inner.set.len()
    }

    /// Class names, in label order (empty for `flow` over unnamed labels).
    pub fn classes(&self) -> &[String] {
        &self.inner.classes
    }

    /// The cached images.
    pub fn image_set(&self) -> &ImageSet {
        &self.inner.set
    }

    /// The generator (augmentation and preprocessing).
    pub fn generator(&self) -> &ImageDataGenerator {
        &self.inner.generator
    }

    /// The options.
    pub fn options(&self) -> &FlowOptions {
        &self.inner.options
    }

    /// The sample order of `epoch`: shuffled from the seed, or `0..samples` without shuffling.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        order(&self.inner, epoch)
    }

    /// Prepares batch `index` of `epoch` on the calling thread (images in parallel).
    pub fn batch(&self, epoch: usize, index: usize) -> Result<Batch, DataError> {
        if index >= self.len() {
            return Err(DataError::Invalid(format!(
                "batch {index} out of range: an epoch has {} batches",
                self.len()
            )));
        }
        make_batch(&self.inner, &self.order(epoch), epoch, index)
    }

    /// The batches of `epoch`, in order; with `prefetch > 0` they are prepared on a
    /// background thread while the caller works on the previous ones.
    pub fn epoch(&self, epoch: usize) -> Epoch {
        let batches = self.len();
        if self.inner.options.prefetch == 0 {
            return Epoch {
                source: Source::Inline {
                    inner: Arc::clone(&self.inner),
                    order: self.order(epoch),
                },
                epoch,
                next: 0,
                batches,
            };
        }
        let (tx, rx) = sync_channel(self.inner.options.prefetch);
        let inner = Arc::clone(&self.inner);
        let worker = std::thread::Builder::new()
            .name(format!("imagedata-epoch-{epoch}"))
            .spawn(move || {
                let order = order(&inner, epoch);
                for index in 0..batches {
                    let result = make_batch(&inner, &order, epoch, index);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        match worker {
            Ok(handle) => Epoch {
                source: Source::Background {
                    rx: Some(rx),
                    handle: Some(handle),
                },
                epoch,
                next: 0,
                batches,
            },
            // No thread to be had: prepare batches on the caller's thread instead.
            Err(_) => Epoch {
                source: Source::Inline {
                    inner: Arc::clone(&self.inner),
                    order: self.order(epoch),
                },
                epoch,
                next: 0,
                batches,
            },
        }
    }
}

enum Source {
    Inline {
        inner: Arc<FlowInner>,
        order: Vec<usize>,
    },
    Background {
        rx: Option<Receiver<Result<Batch, DataError>>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch; see [`Flow::epoch`]. Stops after the first error.
pub struct Epoch {
    source: Source,
    epoch: usize,
    next: usize,
    batches: usize,
}

impl Epoch {
    /// The epoch number.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Batches in this epoch.
    pub fn batches(&self) -> usize {
        self.batches
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.batches {
            return None;
        }
        let item = match &mut self.source {
            Source::Inline { inner, order } => make_batch(inner, order, self.epoch, self.next),
            Source::Background { rx, .. } => match rx.as_ref().map(|r| r.recv()) {
                Some(Ok(item)) => item,
                _ => Err(DataError::Invalid(
                    "the batch preparation thread stopped unexpectedly".to_string(),
                )),
            },
        };
        self.next = if item.is_err() {
            self.batches
        } else {
            self.next + 1
        };
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batches - self.next;
        (left, Some(left))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Source::Background { rx, handle } = &mut self.source {
            // Closing the channel makes the worker stop at its next send.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// Checks the batching options and the generator's configuration.
fn check_options(generator: &ImageDataGenerator, options: &FlowOptions) -> Result<(), DataError> {
    if options.batch_size == 0 {
        return Err(DataError::Invalid(
            "batch_size: must be at least 1, got 0".to_string(),
        ));
    }
    generator
        .augment
        .validate()
        .and_then(|_| generator.preprocessing.validate())
        .map_err(|e| DataError::Invalid(e.to_string()))
}

fn order(inner: &FlowInner, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..inner.set.len()).collect();
    if inner.options.shuffle {
        order.shuffle(&mut substream(
            inner.options.seed,
            names::SHUFFLE,
            epoch as u64,
        ));
    }
    order
}

/// The stream index of sample `sample` in epoch `epoch`.
fn sample_key(epoch: usize, sample: usize) -> u64 {
    ((epoch as u64) << 32) ^ sample as u64
}

fn make_batch(
    inner: &FlowInner,
    order: &[usize],
    epoch: usize,
    index: usize,
) -> Result<Batch, DataError> {
    let bs = inner.options.batch_size;
    let start = index * bs;
    let end = (start + bs).min(order.len());
    let indices = order[start..end].to_vec();
    let size = inner.set.size();
    let (h, w) = (size.height, size.width);
    let plane = 3 * size.pixels();
    let mut data = vec![0f32; indices.len() * plane];
    let generator = &inner.generator;
    let seed = inner.options.seed;
    data.par_chunks_mut(plane)
        .zip(indices.par_iter())
        .try_for_each(|(dst, &sample)| -> Result<(), DataError> {
            let key = sample_key(epoch, sample);
            let mut rng = substream(seed, names::AUGMENT, key);
            let transform = generator.random_transform(h, w, &mut rng);
            let src = inner.set.pixels(sample);
            match &inner.options.save_to_dir {
                None => generator.transform_into(src, h, w, &transform, dst),
                Some(dir) => {
                    let img = generator.apply_transform(&inner.set.image(sample), &transform);
                    let hash = substream(seed, "save", key).random_range(0..10_000u32);
                    let name = format!(
                        "{}_{}_{}.{}",
                        inner.options.save_prefix,
                        sample,
                        hash,
                        inner.options.save_format.extension()
                    );
                    save_image(&img, &dir.join(name), inner.options.save_format)?;
                    generator.standardize_into(img.as_raw(), dst);
                }
            }
            Ok(())
        })?;
    let device = &inner.options.device;
    let n = indices.len();
    let images = Tensor::from_vec(data, (n, 3, h as usize, w as usize), device)?;
    let labels = match inner.set.labels() {
        Some(all) => {
            let l: Vec<u32> = indices.iter().map(|&i| all[i]).collect();
            Some(Tensor::from_vec(l, n, device)?)
        }
        None => None,
    };
    let paths = if inner.set.paths().is_empty() {
        Vec::new()
    } else {
        indices
            .iter()
            .map(|&i| inner.set.paths()[i].clone())
            .collect()
    };
    Ok(Batch {
        images,
        labels,
        indices,
        paths,
        epoch,
        index,
    })
}

/// Writes `img` to `path` atomically (a temporary file in the same folder, then a rename), so
/// no half-written image is ever left behind. Creates the folder if needed.
pub fn save_image(img: &RgbImage, path: &Path, format: SaveFormat) -> Result<(), DataError> {
    let write_err = |detail: String| DataError::Write {
        path: path.to_path_buf(),
        detail,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| write_err(format!("cannot create the folder: {e}")))?;
    let mut bytes = Vec::new();
    match format {
        SaveFormat::Png => img
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| write_err(e.to_string()))?,
        SaveFormat::Jpeg => {
            let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95);
            img.write_with_encoder(encoder)
                .map_err(|e| write_err(e.to_string()))?
        }
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| write_err(format!("cannot create a temporary file: {e}")))?;
    std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| write_err(e.to_string()))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| write_err(e.to_string()))?;
    tmp.persist(path)
        .map_err(|e| write_err(e.error.to_string()))?;
    Ok(())
}
