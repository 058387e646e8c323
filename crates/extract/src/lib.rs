//! `extract`: a pretrained backbone run once over the training and validation photos, its
//! features cached as safetensors artifacts (the post's second method, part 1). The file
//! formats, the extraction loop, shards and merging live in the `features` library; this
//! crate is the stage: which files are stale, loading the backbone only when something must be
//! computed, and the report the binary prints ([`extract`]).
//!
//! Artifacts (under `<data.artifacts>/bottleneck/`): `train.safetensors`,
//! `validation.safetensors` and, with `bottleneck.augmented_views = K > 0`,
//! `train_augmented.safetensors`.

#![warn(missing_docs)]

pub mod stage;

pub use stage::{ExtractOptions, ExtractReport, FileReport, Outcome, extract, peak_memory_bytes};
