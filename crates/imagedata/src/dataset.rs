//! The in-memory cache of decoded, resized u8 images that every epoch reads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use image::RgbImage;
use rayon::prelude::*;

use crate::config::{Interpolation, TargetSize};
use crate::decode::Limits;
use crate::error::DataError;
use crate::resize::load_resized;

/// What to do with files that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Fail with an error naming the file (the default).
    #[default]
    Fail,
    /// Leave the file out and list it in [`LoadReport::skipped`].
    Skip,
}

/// How files are turned into cached images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// Every image is resized to this size.
    pub target_size: TargetSize,
    /// The resampling filter.
    pub interpolation: Interpolation,
    /// Limits against oversized images.
    pub limits: Limits,
    /// What to do with undecodable files.
    pub on_error: OnError,
}

/// Progress of a load: `done` of `total` files processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Files processed so far (decoded or failed).
    pub done: usize,
    /// Files in all.
    pub total: usize,
}

/// What a load left out.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Files that could not be decoded, with the reason, in input order (only with
    /// [`OnError::Skip`]).
    pub skipped: Vec<DataError>,
}

/// Decoded, resized images kept in memory as packed u8 RGB, all of one size, with optional
/// labels and the paths they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    size: TargetSize,
    pixels: Vec<u8>,
    len: usize,
    labels: Option<Vec<u32>>,
    paths: Vec<PathBuf>,
}

impl ImageSet {
    /// Builds a set from images that all have the same size (Keras' `flow(x, y)` input).
    ///
    /// `labels`, when given, must have one entry per image.
    pub fn from_images(images: Vec<RgbImage>, labels: Option<Vec<u32>>) -> Result<Self, DataError> {
        let first = images
            .first()
            .ok_or_else(|| DataError::Invalid("no images given".to_string()))?;
        let size = TargetSize::new(first.height(), first.width());
        if let Some((i, img)) = images
            .iter()
            .enumerate()
            .find(|(_, img)| img.width() != size.width || img.height() != size.height)
        {
            return Err(DataError::Invalid(format!(
                "all images must have the same size: image 0 is {}x{} (h x w), image {i} is {}x{}",
                size.height,
                size.width,
                img.height(),
                img.width()
            )));
        }
        check_labels(labels.as_deref(), images.len())?;
        let len = images.len();
        let mut pixels = Vec::with_capacity(len * size.pixels() * 3);
        for img in &images {
            pixels.extend_from_slice(img.as_raw());
        }
        Ok(ImageSet {
            size,
            pixels,
            len,
            labels,
            paths: Vec::new(),
        })
    }

    /// Decodes and resizes `files` in parallel (rayon), calling `progress` after each file.
    ///
    /// `labels`, when given, has one entry per file; skipped files drop their label too. With
    /// [`OnError::Fail`] every failure is named in the error (in input order, up to
    /// [`DataError::LISTED`], then counted); with [`OnError::Skip`] failures are listed in the
    /// report. Fails when no image at all could be decoded.
    pub fn load(
        files: &[PathBuf],
        labels: Option<&[u32]>,
        options: &LoadOptions,
        progress: Option<&(dyn Fn(Progress) + Sync)>,
    ) -> Result<(Self, LoadReport), DataError> {
        options
            .target_size
            .validate()
            .map_err(|e| DataError::Invalid(e.to_string()))?;
        check_labels(labels, files.len())?;
        if files.is_empty() {
            return Err(DataError::Invalid("no files given".to_string()));
        }
        let size = options.target_size;
        let stride = size.pixels() * 3;
        let total = files.len();
        let done = AtomicUsize::new(0);
        // One buffer per file, filled in parallel; failures keep their error.
        let results: Vec<Result<RgbImage, DataError>> = files
            .par_iter()
            .map(|path| {
                let r = load_resized(path, size, options.interpolation, &options.limits);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(cb) = progress {
                    cb(Progress { done: n, total });
                }
                r
            })
            .collect();
        let failures = results.iter().filter(|r| r.is_err()).count();
        let ok = total - failures;
        if (failures > 0 && options.on_error == OnError::Fail) || ok == 0 {
            let failed = results.into_iter().filter_map(Result::err).collect();
            return Err(DataError::undecodable(failed));
        }
        let mut pixels = Vec::with_capacity(ok * stride);
        let mut kept_labels = labels.map(|_| Vec::with_capacity(ok));
        let mut paths = Vec::with_capacity(ok);
        let mut report = LoadReport::default();
        for (i, result) in results.into_iter().enumerate() {
            match result {
                Ok(img) => {
                    pixels.extend_from_slice(img.as_raw());
                    paths.push(files[i].clone());
                    if let (Some(kept), Some(all)) = (kept_labels.as_mut(), labels) {
                        kept.push(all[i]);
                    }
                }
                Err(e) => report.skipped.push(e),
            }
        }
        Ok((
            ImageSet {
                size,
                pixels,
                len: ok,
                labels: kept_labels,
                paths,
            },
            report,
        ))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty (never true for a constructed set).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The size of every image.
    pub fn size(&self) -> TargetSize {
        self.size
    }

    /// Packed RGB bytes of image `index`.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn pixels(&self, index: usize) -> &[u8] {
        let stride = self.size.pixels() * 3;
        &self.pixels[index * stride..(index + 1) * stride]
    }

    /// Image `index` as an [`RgbImage`] (a copy).
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn image(&self, index: usize) -> RgbImage {
        RgbImage::from_raw(
            self.size.width,
            self.size.height,
            self.pixels(index).to_vec(),
        )
        .expect("cached image has the set's size")
    }

    /// The labels, when the set has them.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// The source paths (empty for sets built from in-memory images).
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Bytes of pixel data held.
    pub fn memory_bytes(&self) -> usize {
        self.pixels.len()
    }

    /// The same images without labels.
    pub fn without_labels(mut self) -> Self {
        self.labels = None;
        self
    }
}

fn check_labels(labels: Option<&[u32]>, n: usize) -> Result<(), DataError> {
    if let Some(l) = labels
        && l.len() != n
    {
        return Err(DataError::Invalid(format!(
            "{} labels for {n} images",
            l.len()
        )));
    }
    Ok(())
}
