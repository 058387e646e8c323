//! The image data pipeline: decoding, resizing, class folders, the in-memory cache, Keras-style
//! augmentation and batching into candle tensors.
//!
//! - [`rng`]: deterministic random streams derived from one seed.
//! - [`decode`]: JPEG/PNG to 8-bit RGB with limits against decompression bombs.
//! - [`config`]: serde configuration types with Keras names ([`AugmentConfig`],
//!   [`Preprocessing`], [`Interpolation`], [`ClassMode`], [`TargetSize`]).
//! - [`resize`]: resizing to `target_size` (nearest or bilinear, SIMD).
//! - [`folder`]: class folders ([`ImageFolder`]) and their content digest.
//! - [`split`]: the `train`/`validation` split folders of a data folder ([`SplitData`]).
//! - [`dataset`]: the in-memory u8 cache ([`ImageSet`]), filled in parallel.
//! - [`transform`] and [`generator`]: Keras' `ImageDataGenerator` augmentation.
//! - [`flow`]: `flow` / `flow_from_directory` batches with prefetching and `save_to_dir`.
//! - [`convert`]: batches back to images, images to tensors.
//!
//! A typical training input:
//!
//! ```no_run
//! use imagedata::{
//!     AugmentConfig, ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator,
//!     Preprocessing, TargetSize,
//! };
//!
//! let generator = ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::rescale(1.0 / 255.0))?;
//! let (flow, _report) = generator.flow_from_directory(
//!     std::path::Path::new("data/train"),
//!     &DirectoryOptions {
//!         target_size: TargetSize::new(150, 150),
//!         class_mode: ClassMode::Binary,
//!         ..Default::default()
//!     },
//!     FlowOptions { batch_size: 16, seed: 42, ..Default::default() },
//!     None,
//! )?;
//! for epoch in 0..50 {
//!     for batch in flow.epoch(epoch) {
//!         let batch = batch?;
//!         // batch.images: [16, 3, 150, 150] f32, batch.labels: [16] u32
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

pub mod config;
pub mod convert;
pub mod dataset;
pub mod decode;
pub mod error;
pub mod flow;
pub mod folder;
pub mod generator;
pub mod resize;
pub mod rng;
pub mod split;
pub mod transform;

pub use config::{
    AugmentConfig, ClassMode, FillMode, Interpolation, Preprocessing, TargetSize, ZoomRange,
};
pub use convert::{batch_to_images, images_to_tensor};
pub use dataset::{ImageSet, LoadOptions, LoadReport, OnError, Progress};
pub use decode::{Limits, decode_rgb, load_rgb};
pub use error::{ConfigError, DataError};
pub use flow::{Batch, DirectoryOptions, Epoch, Flow, FlowOptions, SaveFormat, save_image};
pub use folder::ImageFolder;
pub use generator::ImageDataGenerator;
pub use resize::{decode_resized, fit_to, fit_within, load_resized, resize_rgb};
pub use split::{Split, SplitData};
pub use transform::Transform;
