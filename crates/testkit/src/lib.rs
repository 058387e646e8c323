//! Test support shared by the workspace's integration tests (a dev-dependency only).
//!
//! - [`shared`]: the shared data folder named by `LITTLEDATA_SHARED` (real photos, the VGG16
//!   weights, torchvision's reference outputs), with CI's rule: a test that needs it fails
//!   under CI when it is missing, and is skipped with a note elsewhere.
//! - [`files`]: listing a folder.
//! - [`tensors`]: a tensor's values, bits and bytes, and differences between tensors.
//! - [`cli`]: finding a workspace binary and checking how it ended.
//! - [`images`]: hand-made image files (a PNG header claiming any size).
//! - `fixtures` (feature `stages`): synthetic class folders, random VGG16 weights, pipelines
//!   and artifacts for the stage crates' tests.
//! - `hub` (feature `stages`): random weights of the hub backbones (ConvNeXt-Tiny, ResNet-50)
//!   and a local hf-hub cache holding them.

pub mod cli;
pub mod files;
#[cfg(feature = "stages")]
pub mod fixtures;
#[cfg(feature = "stages")]
pub mod hub;
pub mod images;
pub mod shared;
pub mod tensors;

pub use cli::workspace_binary;
pub use files::listing;
pub use shared::{
    kaggle_photos, link_cats_and_dogs, link_photos, reference_features, shared_dir, shared_weights,
    vgg16_weights,
};
pub use tensors::{bits, bytes, max_abs, max_abs_diff, values};
